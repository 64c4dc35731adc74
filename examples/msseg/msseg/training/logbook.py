"""Per-epoch training records: history.csv, TensorBoard scalars (if installed), curves.png.

The history lives in every checkpoint; on resume the CSV is rewritten from it (dropping rows of
epochs the checkpoint never saw) and then appended to, epoch by epoch.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "TrainingLog"]

COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_dice", "lr", "seconds")


class TrainingLog:
    """Writes one row per epoch to `out_dir/history.csv`, `out_dir/tensorboard/` and
    `out_dir/curves.png`.

    Args:
        out_dir: the run folder (created).
        history: rows already recorded (from a checkpoint when resuming).
        tensorboard: also log to TensorBoard when the `tensorboard` package is importable.
    """

    def __init__(self, out_dir: str | Path, *, history: list[dict[str, Any]],
                 tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "history.csv"
        self.png_path = self.out_dir / "curves.png"
        self.history = [dict(row) for row in history]
        with open(self.csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.history)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        """Record one epoch (`row` has the keys of COLUMNS) and redraw the curves."""
        self.history.append(dict(row))
        with open(self.csv_path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=COLUMNS).writerow(row)
        if self.writer is not None:
            for key in ("train_loss", "val_loss", "val_dice", "lr", "seconds"):
                self.writer.add_scalar(key, row[key], row["epoch"])
            self.writer.flush()
        self._plot()

    def _plot(self) -> None:
        from matplotlib.figure import Figure  # no pyplot: renders with Agg, no global state

        epochs = [r["epoch"] for r in self.history]
        fig = Figure(figsize=(10, 3.8))
        ax_loss, ax_dice = fig.subplots(1, 2)
        ax_loss.plot(epochs, [r["train_loss"] for r in self.history], "o-", label="train")
        ax_loss.plot(epochs, [r["val_loss"] for r in self.history], "o-", label="validation")
        ax_loss.set(xlabel="epoch", ylabel="BCE − Dice + 1", title="loss")
        ax_loss.legend()
        ax_dice.plot(epochs, [r["val_dice"] for r in self.history], "o-", color="tab:green")
        ax_dice.set(xlabel="epoch", ylabel="Dice", title="validation Dice", ylim=(0, 1))
        for ax in (ax_loss, ax_dice):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        tmp = self.png_path.with_name(f".{self.png_path.name}.tmp.png")
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, self.png_path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
