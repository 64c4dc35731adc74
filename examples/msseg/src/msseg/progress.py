"""Progress: a bar on a terminal; in a log file or a pipe, a line at least every minute.

    for record in progress_bar(records, desc="preprocess", unit="scan", enabled=show):
        ...
    progress = StepProgress(len(loader), desc="epoch 3/100", unit="image", enabled=show)
    for batch in loader:
        ...
        progress.step(len(batch), loss=lambda: loss.item())    # read only when shown
    progress.close()

A job that runs without a terminal (a batch scheduler, ``nohup``, a pipe into ``tee``) gets no
bar, so `StepProgress` logs one line instead every `LOG_EVERY_S` seconds, and once after the
first step: the step, the loss, the images per second and the time left for this loop, e.g.
``epoch 3/100: step 40/842, loss 0.8123, 4.2 image/s, 11 min left``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tqdm import tqdm

__all__ = ["LOG_EVERY_S", "StepProgress", "format_duration", "progress_bar"]

T = TypeVar("T")
LOG_EVERY_S = 60.0  # without a terminal: the longest time between two progress lines
log = logging.getLogger(__name__)


def progress_bar(iterable: Iterable[T], *, desc: str, unit: str = "it", enabled: bool = True,
                 **options: Any) -> tqdm:
    """A tqdm bar over `iterable` on stderr, drawn only if `enabled` and stderr is a terminal.

    Args:
        iterable: what to iterate over.
        desc, unit: the bar's label and unit.
        enabled: False hides the bar whatever the terminal (e.g. on DDP ranks other than 0).
        options: further tqdm options (leave, dynamic_ncols, ...).
    """
    # tqdm's disable=None: off when its stream is not a terminal
    return tqdm(iterable, desc=desc, unit=unit, disable=None if enabled else True, **options)


def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.4 h``: a duration as people read it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class StepProgress:
    """The progress of one loop of steps (module docstring).

    Args:
        total: the steps of the loop.
        desc: what the loop is, first in every line (e.g. "epoch 3/100").
        unit: what a step processes, counted for the rate (e.g. "image").
        enabled: False shows nothing (e.g. DDP ranks other than 0).
        terminal: draw a bar instead of log lines (default: whether stderr is a terminal).
        every_s: seconds between log lines.
        clock: the time source (seconds).
    """

    def __init__(self, total: int, *, desc: str, unit: str = "item", enabled: bool = True,
                 terminal: bool | None = None, every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self._clock = clock
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar = (tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)
                     if enabled and terminal else None)
        self._lines = enabled and not terminal
        self.steps = self.items = 0
        self._start = clock()
        self._last_line: float | None = None

    def step(self, items: int, *, loss: Callable[[], float] | None = None) -> None:
        """One step done, of `items` units; `loss` is called only when it is shown."""
        self.steps += 1
        self.items += items
        now = self._clock()
        if self._bar is not None:
            self._bar.update(1)
            if loss is not None and (self.steps == 1 or self.steps % 10 == 0):
                self._bar.set_postfix(loss=f"{loss():.4f}")
        elif self._lines and (self._last_line is None or now - self._last_line >= self.every_s):
            self._last_line = now
            log.info("%s", self.line(loss() if loss is not None else None, now=now))

    def line(self, loss: float | None, *, now: float) -> str:
        """The log line for the state after the latest step."""
        elapsed = max(now - self._start, 1e-9)
        left = elapsed / self.steps * (self.total - self.steps)
        parts = [f"{self.desc}: step {self.steps}/{self.total}",
                 *([f"loss {loss:.4f}"] if loss is not None else []),
                 f"{self.items / elapsed:.1f} {self.unit}/s", f"{format_duration(left)} left"]
        return ", ".join(parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
