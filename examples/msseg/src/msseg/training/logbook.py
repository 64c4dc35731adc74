"""A run folder's record: history.csv, TensorBoard scalars (if installed), curves.png, and the
rule that a run never overwrites another one by accident.

``val_dice_working`` is the validation Dice over the validation slabs or windows, decided in the
working space (resampled, overlapping windows counted once each); the Dice on the scans' own
grids is measured for the best checkpoint (`msseg.workflows.validation`).

The history lives in every checkpoint, and ``last.pt`` is written before the record each epoch
(`msseg.training.checkpoint.save_epoch`): history.csv and curves.png follow from it. On resume
both are rewritten from the checkpoint (dropping rows of epochs it never saw). After every epoch
they are rewritten whole through `msseg.io.atomic`, so a killed run never leaves a torn row or a
half-drawn figure.

A folder that holds a run (any of `RUN_FILES`) is only trained into again when asked:
`check_run_folder` refuses otherwise, before any work, and `clear_run` removes the old run when
it is to be replaced.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

from msseg.io.atomic import atomic_path, atomic_write_text

__all__ = ["COLUMNS", "RUN_FILES", "TrainingLog", "check_run_folder", "clear_run"]

COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_dice_working", "lr", "seconds")
# The files of a run, in the order `clear_run` removes them (the commit point first).
RUN_FILES = ("last.pt", "best.pt", "history.csv", "curves.png", "tensorboard", "validation.json",
             "report.html")


def check_run_folder(out_dir: str | Path, *, resume: str | Path | None = None,
                     overwrite: bool = False) -> None:
    """Refuse to train into a folder that holds a run, unless continuing it or replacing it.

    Args:
        out_dir: the run folder (need not exist).
        resume: the checkpoint a resumed run starts from; one inside `out_dir` continues that
            run there.
        overwrite: replace the run in `out_dir` (then `clear_run` it before writing).
    Raises:
        FileExistsError: `out_dir` holds a run and neither applies (the message lists its files
            and the flags).
        ValueError: `overwrite` together with a `resume` checkpoint inside `out_dir`.
    """
    out_dir = Path(out_dir)
    inside = resume is not None and Path(resume).resolve().parent == out_dir.resolve()
    if overwrite and inside:
        raise ValueError(f"--overwrite would delete {resume}, the checkpoint to resume from; "
                         f"pass --resume to continue the run in {out_dir}, or --overwrite "
                         f"without --resume to start it again")
    found = [name for name in RUN_FILES if (out_dir / name).exists()]
    if not found or overwrite or inside:
        return
    raise FileExistsError(
        f"{out_dir}: holds a training run already ({', '.join(found)}); pass --resume "
        f"{out_dir / 'last.pt'} to continue it, --overwrite to replace it, or choose another "
        f"--out")


def clear_run(out_dir: str | Path) -> list[Path]:
    """Remove the run files of `out_dir` (`RUN_FILES`), the checkpoint first; returns them."""
    removed = []
    for name in RUN_FILES:
        path = Path(out_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


class TrainingLog:
    """Writes one row per epoch to `out_dir/history.csv`, `out_dir/tensorboard/` and
    `out_dir/curves.png`.

    Args:
        out_dir: the run folder (created).
        history: rows already recorded (from a checkpoint when resuming); history.csv and
            curves.png are rewritten from them at once.
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
        if self.history:
            self._plot()
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
