"""Progress bars: shown on a terminal, never in a log file or a pipe.

    for record in progress_bar(records, desc="preprocess", unit="scan", enabled=show):
        ...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

__all__ = ["progress_bar"]

T = TypeVar("T")


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
