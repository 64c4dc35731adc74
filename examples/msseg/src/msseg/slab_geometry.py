"""How overlapping slabs tile a cube: the one rule, checked in one place.

A cube of `size` slices (axis 0, sagittal) is cut into slabs of `slab` consecutive slices whose
starts are `step` apart; they must tile it exactly, so (size - slab) is a multiple of step and
step <= slab (no slice left out). The paper's 256 / 16 / 8 gives 31 slabs. The training config,
the slab Dataset, slab cutting and recomposition all ask this object.

    geometry = SlabGeometry(size=256, slab=16, step=8)
    geometry.count, geometry.starts[-1]        # 31, 240
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

__all__ = ["SlabGeometry"]


@dataclass(frozen=True)
class SlabGeometry:
    """Slabs of `slab` slices every `step` slices over `size` slices.

    Raises:
        ValueError: a non-positive value, slab > size, step > slab, or slabs that do not tile
            `size` exactly; the message names the numbers and sizes or steps that would work.
    """

    size: int  # slices along the slab axis (the cube edge S)
    slab: int = 16  # slices per slab = network input depth
    step: int = 8  # distance between slab starts (overlap = slab - step)

    def __post_init__(self) -> None:
        for name in ("size", "slab", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer; found {value!r}")
            object.__setattr__(self, name, int(value))
        size, slab, step = self.size, self.slab, self.step
        if slab > size:
            raise ValueError(f"slab={slab} is larger than the volume (size={size}); use "
                             f"slab <= {size} or a size >= {slab}.")
        if step > slab:
            raise ValueError(f"step={step} is larger than slab={slab}, so slices between slabs "
                             f"would never be predicted; use step <= {slab} (the paper uses "
                             f"step = slab / 2).")
        span = size - slab
        if span % step:
            lower = slab + (span // step) * step
            steps = [s for s in range(slab, 0, -1) if span % s == 0][:4]
            raise ValueError(
                f"(size - slab) must be a multiple of step so slabs tile the volume exactly; "
                f"found size={size}, slab={slab}, step={step}: {size} - {slab} = {span}, "
                f"{span} % {step} = {span % step}. Use size={lower} or {lower + step}, or step "
                f"in {steps}."
            )

    @property
    def count(self) -> int:
        """Number of slabs: (size - slab) / step + 1."""
        return (self.size - self.slab) // self.step + 1

    @property
    def starts(self) -> list[int]:
        """First slice of every slab: [0, step, 2 * step, ..., size - slab]."""
        return [i * self.step for i in range(self.count)]
