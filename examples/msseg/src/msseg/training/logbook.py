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

When a run resumes, `finish_best` completes a ``best.pt`` that an interrupted save left behind
(in the run's folder), and `adopt_run` gives a new folder the run's checkpoints.

A folder that holds a run with a saved epoch (a `CHECKPOINTS` file) is only trained into again
when asked: `check_run_folder` refuses otherwise, before any work, and `clear_run` removes the
old run when it is to be replaced. A run stopped before its first epoch was saved leaves only a
record (an empty history.csv): it is started again without flags. Resuming in a run's folder
from a checkpoint older than its last.pt is refused, since the run would cut the later epochs.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from pathlib import Path
from typing import Any

from msseg.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from msseg.training.checkpoint import saved_epoch

__all__ = ["CHECKPOINTS", "COLUMNS", "RUN_FILES", "TrainingLog", "adopt_run",
           "check_run_folder", "clear_run", "finish_best"]

log = logging.getLogger(__name__)

COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_dice_working", "lr", "seconds")
# The files of a run, in the order `clear_run` removes them (the commit point first).
RUN_FILES = ("last.pt", "best.pt", "history.csv", "curves.png", "tensorboard", "validation.json",
             "report.html")
CHECKPOINTS = ("last.pt", "best.pt")  # a run that has one saved an epoch


def check_run_folder(out_dir: str | Path, *, resume: str | Path | None = None,
                     overwrite: bool = False) -> None:
    """Refuse to train into a folder that holds a run, unless continuing it or replacing it.

    Args:
        out_dir: the run folder (need not exist).
        resume: the checkpoint a resumed run starts from; one inside `out_dir` continues that
            run there (it must not be older than the folder's last.pt).
        overwrite: replace the run in `out_dir` (then `clear_run` it before writing).
    Raises:
        FileExistsError: `out_dir` holds a saved epoch and neither applies (the message lists
            its files and the flags).
        ValueError: `overwrite` together with a `resume` checkpoint inside `out_dir`, or a
            `resume` checkpoint inside `out_dir` older than its last.pt.
    """
    out_dir = Path(out_dir)
    inside = resume is not None and Path(resume).resolve().parent == out_dir.resolve()
    if overwrite and inside:
        raise ValueError(f"--overwrite would delete {resume}, the checkpoint to resume from; "
                         f"pass --resume to continue the run in {out_dir}, or --overwrite "
                         f"without --resume to start it again")
    if inside:
        _check_newest(out_dir / "last.pt", Path(resume))
        return
    found = [name for name in RUN_FILES if (out_dir / name).exists()]
    saved = [name for name in CHECKPOINTS if name in found]
    if not saved or overwrite:
        return
    raise FileExistsError(
        f"{out_dir}: holds a training run already ({', '.join(found)}); pass --resume "
        f"{out_dir / saved[0]} to continue it, --overwrite to replace it, or choose another "
        f"--out")


def _check_newest(last: Path, resume: Path) -> None:
    """Refuse to resume, in the run's folder, from a checkpoint older than its last.pt."""
    if not last.exists() or last.resolve() == resume.resolve():
        return
    newest, older = saved_epoch(last), saved_epoch(resume)
    if newest is None or older is None or newest <= older:
        return
    raise ValueError(
        f"{last}: holds epoch {newest}, newer than {resume} (epoch {older}); resuming from it "
        f"in this folder would replace epochs {older + 1}-{newest}: resume from {last}, or "
        f"continue from {resume} into a new folder (-o NEW)")


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


def finish_best(out_dir: str | Path, checkpoint: dict, source: str | Path) -> None:
    """Complete a ``best.pt`` that an interrupted save left behind `checkpoint` (the state a run
    resumes from, read from `source`): when that state is its own best epoch, ``best.pt`` gets
    its bytes; when an earlier epoch was best and ``best.pt`` does not hold it, a warning says
    so (it is written again at the next improvement).
    """
    best = Path(out_dir) / "best.pt"
    epoch, best_epoch = checkpoint["epoch"], checkpoint["best_epoch"]
    if best_epoch == 0:
        return
    held = saved_epoch(best)
    if held == best_epoch:
        return
    if best_epoch == epoch:
        atomic_write_bytes(best, Path(source).read_bytes())
        log.info("%s: completed from %s (epoch %d; a save had been interrupted)", best, source,
                 epoch)
        return
    log.warning("%s: holds %s, but the run's best epoch is %d; it is written again when the "
                "validation loss next improves", best,
                "nothing readable" if held is None else f"epoch {held}", best_epoch)


def adopt_run(out_dir: str | Path, checkpoint: dict, source: str | Path) -> None:
    """Continue a run in a new folder: ``last.pt`` gets the bytes of `source` (the state the run
    resumes from, `checkpoint`), and ``best.pt`` the run's best epoch (`source` itself when that
    is its best, else the ``best.pt`` beside `source` when it holds that epoch; otherwise a
    warning says it is written again at the next improvement).
    """
    out_dir, source = Path(out_dir), Path(source)
    data = source.read_bytes()
    atomic_write_bytes(out_dir / "last.pt", data)
    epoch, best_epoch = checkpoint["epoch"], checkpoint["best_epoch"]
    best = source.with_name("best.pt")
    if best_epoch and best_epoch == epoch:
        atomic_write_bytes(out_dir / "best.pt", data)
    elif best_epoch and saved_epoch(best) == best_epoch:
        atomic_write_bytes(out_dir / "best.pt", best.read_bytes())
    elif best_epoch:
        log.warning("%s: epoch %d, the run's best, is not beside %s; %s is written when the "
                    "validation loss next improves", source, best_epoch, source.name,
                    out_dir / "best.pt")
    log.info("continuing the run of %s (epoch %d) in %s", source, epoch, out_dir)


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
