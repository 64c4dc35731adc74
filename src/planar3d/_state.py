"""What planar3d did to a module, kept on the module as one documented record.

A folded module (`fold.py`), a rewritten one (`_rewrite`), a slice-code one (`slice_code.py`)
and a head run on all slices (`all_slices.py`) are instances of a class derived from their 2D
class (`Folded<Type>`, `Rewritten<Type>`, `SliceCode<Type>`, `AllSlices<Type>`); a module given
a depth layer (`tokens`) derives once more from whichever class it had. The root of a converted
network holds its conversion report. Everything planar3d keeps on a module for that is one
attribute, `module._planar3d`, holding a `PlanarState`: it deep-copies and pickles with the
module (its cache of traced forwards excepted), and it is read and written through the functions
here. A module of a derived class copies and pickles as its 2D class does, then is derived again
(`copy_derived`, `reduce_derived`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["PlanarState", "clear_derived", "copy_derived", "original_type", "reduce_derived",
           "state", "state_of", "type_name"]

_ATTRIBUTE = "_planar3d"


@dataclass
class PlanarState:
    """planar3d's record on one module.

    Attributes:
        base: the module's 2D class while its class is derived from it (folded or rewritten),
            else None.
        axis: the planar axis (tensor dim 2, 3 or 4) its derived forward works along.
        passthrough: a folded module that also runs inputs without volumes as they are (a
            slice-wise layer of a classifier's head).
        rewrite: for a rewritten module, which rules its traced forward follows ("body",
            "head"); else "".
        path: where a rewritten module sits in the network (its rules' messages name it).
        kernels: how the `F.conv2d` calls of a body-rewritten module convolve, a
            `_mode_kernels.ModeKernels` (None: planar).
        report: on the root of a converted network, its `report.ConversionReport`.
        traced: a rewritten module's traced forwards, by train/eval flag and flag arguments;
            a cache that copies and pickles leave behind (they trace again on first use).
        head_pool: a slice-code module whose own code holds a classifier's head pool, which
            merges the slices (`layers.slice_code`).
        lifted: the dotted paths, relative to a slice-code module, of the descendants it gives
            volumes (converted 3D modules); the others run on its per-slice tensors.
        image_size: for a slice-code module whose inputs are the network's images, the
            in-plane size of the slices it was converted on (for a clear error on others).
        position_dim: for a head module run on the positions of all slices
            (`layers.all_slices`), the per-slice dim they are laid end to end along.
        depth_sites: on the root of a converted network, where depth layers go
            (`tokens.sites.DepthSites`), for `thicken`.
    """

    base: type | None = None
    axis: int = 2
    passthrough: bool = False
    rewrite: str = ""
    path: str = ""
    # typed Any: their modules stand above this one, which every layer imports
    kernels: Any = None
    report: Any = None
    traced: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    head_pool: bool = False
    lifted: frozenset[str] = frozenset()
    image_size: tuple[int, int] | None = None
    position_dim: int = 1
    depth_sites: Any = None

    def __deepcopy__(self, memo: dict) -> PlanarState:
        new = PlanarState()
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            if name != "traced":
                setattr(new, name, copy.deepcopy(value, memo))
        return new

    def __getstate__(self) -> dict:
        # the base class is given again on load, by the derived class made for the loaded
        # module (a torch.fx GraphModule's class is made per instance, and does not pickle)
        return {**self.__dict__, "base": None, "traced": {}}


def state_of(module: nn.Module) -> PlanarState | None:
    """planar3d's record on `module`, None when it has none."""
    return module.__dict__.get(_ATTRIBUTE)


def state(module: nn.Module) -> PlanarState:
    """planar3d's record on `module`, made empty if it has none (a folded or rewritten module
    always has one)."""
    if _ATTRIBUTE not in module.__dict__:
        module.__dict__[_ATTRIBUTE] = PlanarState()
    return module.__dict__[_ATTRIBUTE]


def clear_derived(module: nn.Module) -> None:
    """Give `module` back its 2D class and forget what made it derived (the report stays)."""
    record = module.__dict__.pop(_ATTRIBUTE, None)
    if record is None:
        return
    if record.base is not None:
        module.__class__ = record.base
    if record.report is not None:
        state(module).report = record.report


def original_type(module: nn.Module) -> type:
    """The class a module had before planar3d gave it a derived class of its own (folded or
    rewritten modules keep their 2D class as a base); else its class."""
    record = state_of(module)
    return record.base if record is not None and record.base is not None else type(module)


def type_name(module: nn.Module) -> str:
    """The class name of the 2D module behind a converted one (folded, rewritten...)."""
    return original_type(module).__name__


@contextlib.contextmanager
def _as_original(module: nn.Module, as_class: type | None = None):
    """`module` as an instance of its original class (or of `as_class`)."""
    cls = type(module)
    module.__class__ = as_class or original_type(module)
    try:
        yield module
    finally:
        module.__class__ = cls


def copy_derived(module: nn.Module, memo: dict, remake: Callable[[nn.Module], nn.Module], *,
                 as_class: type | None = None) -> nn.Module:
    """`copy.deepcopy` of a module of a derived class: a copy made by its original class's own
    deepcopy (a torch.fx GraphModule builds a class of its own for each copy), then remade.
    `as_class`: copy as this class instead (the derived class a class was derived from again,
    which remakes itself)."""
    with _as_original(module, as_class):
        copied = copy.deepcopy(module, memo)
    record = state_of(module)
    if record is not None and state_of(copied) is None:  # a GraphModule copy keeps only its own
        copied.__dict__[_ATTRIBUTE] = copy.deepcopy(record, memo)
    return remake(copied)


def reduce_derived(module: nn.Module, protocol: int, remake: Callable, *args,
                   as_class: type | None = None) -> tuple:
    """`__reduce_ex__` of a module of a derived class: pickled as its original class (or
    `as_class`, as for `copy_derived`) pickles itself (a GraphModule as its code), then remade
    with `remake(module, *args)` on load."""
    with _as_original(module, as_class):
        reduced = module.__reduce_ex__(protocol)
    return _remade, (reduced, remake, args)


def _remade(reduced: tuple, remake: Callable, args: tuple) -> nn.Module:
    rebuild, rebuild_args, *rest = reduced
    module = rebuild(*rebuild_args)
    saved = rest[0] if rest else None
    if saved is not None:
        if hasattr(module, "__setstate__"):
            module.__setstate__(saved)
        else:
            module.__dict__.update(saved)
    return remake(module, *args)
