"""Per-epoch training records: history.csv, TensorBoard scalars (if installed), curves.png.

``val_dice_working`` is the validation Dice over the validation slabs or windows, decided in the
working space (resampled, overlapping windows counted once each); the Dice on the scans' own
grids is measured for the best checkpoint (`msseg.evaluation.validation`).

The history lives in every checkpoint; on resume the CSV starts again from it (dropping rows of
epochs the checkpoint never saw). After every epoch history.csv and curves.png are rewritten
whole through `msseg.io.atomic`, so a killed run never leaves a torn row or a half-drawn figure.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from msseg.io.atomic import atomic_path, atomic_write_text

__all__ = ["COLUMNS", "TrainingLog"]

COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_dice_working", "lr", "seconds")


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
        self._write_csv()
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
        self._write_csv()
        if self.writer is not None:
            for key in ("train_loss", "val_loss", "val_dice_working", "lr", "seconds"):
                self.writer.add_scalar(key, row[key], row["epoch"])
            self.writer.flush()
        self._plot()

    def _write_csv(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.csv_path, text.getvalue())

    def _plot(self) -> None:
        from matplotlib.figure import Figure  # no pyplot: renders with Agg, no global state
        from matplotlib.ticker import MaxNLocator

        epochs = [r["epoch"] for r in self.history]
        fig = Figure(figsize=(10, 3.8))
        ax_loss, ax_dice = fig.subplots(1, 2)
        ax_loss.plot(epochs, [r["train_loss"] for r in self.history], "o-", label="train")
        ax_loss.plot(epochs, [r["val_loss"] for r in self.history], "o-", label="validation")
        ax_loss.set(xlabel="epoch", ylabel="BCE − Dice + 1", title="loss")
        ax_loss.legend()
        ax_dice.plot(epochs, [r["val_dice_working"] for r in self.history], "o-",
                     color="tab:green")
        ax_dice.set(xlabel="epoch", ylabel="Dice", title="validation Dice (working space)",
                    ylim=(0, 1))
        for ax in (ax_loss, ax_dice):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        fig.tight_layout()
        with atomic_path(self.png_path) as temporary:
            fig.savefig(temporary, dpi=100, format="png")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
