"""What every decision of one conversion reads and writes."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .._plan import Plan
from .._record import CallRecords
from ..context import ConversionContext
from ..registry import Converter

__all__ = ["TRAIN_ONLY", "Session", "short"]

# said of a module the example run reaches in train mode only
TRAIN_ONLY = " (reached in train mode only)"


@dataclass
class Session:
    """One conversion's settings, its 2D network, the records of the example run, and the plan
    being written.

    Attributes:
        ctx: the conversion's settings (mode, axis, depth policy); the walk decides in planar
            terms, whatever the mode.
        registry: converters by exact module type.
        pristine: the 2D network, never changed (folded modules are copies of its modules).
        records: the records of the example run.
        plan: what has been decided so far.
        volumes: how many volumes probes arrange the example's images into.
    """

    ctx: ConversionContext
    registry: dict[type, Converter]
    pristine: nn.Module
    records: CallRecords
    plan: Plan
    volumes: int

    @property
    def axis(self) -> int:
        return self.ctx.axis

    @property
    def batch(self) -> int:
        return self.records.batch

    def source(self, path: str) -> nn.Module:
        """The 2D module at `path`."""
        return self.pristine.get_submodule(path)


def short(reason: str, limit: int = 160) -> str:
    """`reason` on one line, cut to `limit` characters."""
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."
