"""Exact-type registry of converters (as torch.ao.quantization looks modules up).

A converter is `fn(module, ctx) -> nn.Module`: it receives a 2D module and a
`ConversionContext` and returns the module to put in its place. Lookup is by *exact* type, so a
subclass that overrides `forward` (timm's Conv2dSame, StdConv2d, BatchNormAct2d...) never
silently gets its parent's converter; such modules go through planar3d's generic path (their
forward is checked on a probe volume, then kept, rewritten or folded).

Two ready-made converters cover most layers:
- `keep`: the module works on volumes as it is (elementwise and channel-wise layers);
- `fold`: the module runs slice by slice on the folded volume (exact planar semantics).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from torch import nn

from .context import ConversionContext
from .layers.fold import fold_module

__all__ = ["Converter", "default_converters", "fold", "keep", "register_converter"]

Converter = Callable[[nn.Module, ConversionContext], nn.Module]

_DEFAULTS: dict[type, Converter] = {}
# the converters planar3d itself registers (converters.py), by exact type
_BUILTIN: dict[type, Converter] = {}
# planar3d's converters for classes of optional libraries, by "package.module.Class" name
_BUILTIN_BY_NAME: dict[str, Converter] = {}


def keep(module: nn.Module, ctx: ConversionContext) -> nn.Module:
    """Converter for layers that act the same on (N, C, D, H, W) as on each slice."""
    return module


def fold(module: nn.Module, ctx: ConversionContext) -> nn.Module:
    """Converter that runs the 2D module slice by slice (exact planar semantics, any mode).

    In a classifier's head the folded module also passes already pooled 4-D inputs through.
    """
    return fold_module(module, axis=ctx.axis, passthrough=ctx.region == "head")


def register_converter(
    module_type: type, converter: Converter | None = None, *, replace: bool = False
):
    """Register `converter` for modules whose type is exactly `module_type`.

    Usable as a decorator: ``@register_converter(MyConv)``. Registered converters are used by
    every later `planar3d.convert` call; to use one for a single call, pass
    ``converters={MyConv: fn}`` to `convert` instead.

    Args:
        module_type: an `nn.Module` subclass.
        converter: `fn(module, ctx) -> nn.Module`.
        replace: allow replacing an existing registration.
    Returns:
        The converter (so the decorator form returns the function unchanged).
    Raises:
        TypeError: if `module_type` is not an nn.Module subclass or `converter` is not callable.
        ValueError: if `module_type` already has a converter and `replace` is False.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if converter is None:
        return lambda fn: register_converter(module_type, fn, replace=replace)
    if not callable(converter):
        raise TypeError(f"converter must be callable as fn(module, ctx), got {converter!r}")
    if module_type in _DEFAULTS and not replace:
        raise ValueError(
            f"{module_type.__qualname__} already has a converter "
            f"({getattr(_DEFAULTS[module_type], '__qualname__', _DEFAULTS[module_type])}); "
            f"pass replace=True to override it"
        )
    _DEFAULTS[module_type] = converter
    return converter


def default_converters() -> dict[type, Converter]:
    """A copy of the registered converters, keyed by exact module type."""
    _resolve_by_name()
    return dict(_DEFAULTS)


def register_builtin(module_type: type | str, converter: Converter) -> None:
    """Register one of planar3d's own converters (see `is_builtin`). A class of an optional
    library is named "package.module.Class" and registered once its package is imported."""
    if isinstance(module_type, str):
        _BUILTIN_BY_NAME[module_type] = converter
        return
    register_converter(module_type, converter)
    _BUILTIN[module_type] = converter


def _resolve_by_name() -> None:
    for name, converter in list(_BUILTIN_BY_NAME.items()):
        module_name, _, attr = name.rpartition(".")
        module = sys.modules.get(module_name)
        if module is None:
            continue
        del _BUILTIN_BY_NAME[name]
        cls = getattr(module, attr, None)
        if isinstance(cls, type) and cls not in _DEFAULTS:
            register_builtin(cls, converter)


def is_builtin(module_type: type, converter: Converter) -> bool:
    """Whether `converter` is planar3d's own converter for `module_type`: its results are
    right by construction, while a user's converter gets its result probed."""
    return _BUILTIN.get(module_type) is converter
