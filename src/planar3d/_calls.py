"""The call a converted network was verified for, and the guard that refuses any other.

`convert` checks the converted network on one call, the example's: which arguments it passes
(positionally or by keyword), the values of those that are not tensors (a flag such as
`return_features=True`), and the rank of each tensor. The converted root keeps its own forward,
which another call would run through code no check has seen (another branch, another input).
So the root carries a `VerifiedCall`, a forward pre-hook that binds each call to forward's
signature (passing an argument by keyword or giving a default value explicitly is the same
call) and raises `UnsupportedModuleError`, naming the first argument that differs, on any other
call.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ._state import original_type, type_name
from .errors import UnsupportedModuleError

__all__ = ["VerifiedCall"]


def _described(value: Any) -> Any:
    """What of an argument a call is verified for: a tensor's rank, any other value itself
    (containers element by element)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dim())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_described(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _described(v)) for k, v in value.items()))
    return ("value", value)


def _shown(described: Any) -> str:
    if described is None:
        return "nothing"
    kind, detail = described
    if kind == "tensor":
        return f"a {detail}-D tensor"
    if kind == "value":
        return repr(detail)
    return f"a {kind}"


def _arguments(module: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any] | str | None:
    """Argument name -> `_described` value, defaults included; why the call does not bind to
    forward's signature (a str); None when forward has no signature to read."""
    try:
        signature = inspect.signature(original_type(module).forward)
    except (TypeError, ValueError):
        return None
    try:
        bound = signature.bind(module, *args, **kwargs)
    except TypeError as error:
        return str(error)
    bound.apply_defaults()
    return {name: _described(value) for name, value in list(bound.arguments.items())[1:]}


class VerifiedCall:
    """Forward pre-hook of a converted root: refuses calls other than the verified one (see
    the module docstring). It holds plain values only, so converted networks copy and pickle.

    Args:
        module: the converted root.
        args, kwargs: the verified call, as the converted network receives it (volumes).
    """

    def __init__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.type_name = type_name(module)
        arguments = _arguments(module, args, kwargs)
        self.arguments = arguments if isinstance(arguments, dict) else None

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.arguments is None:
            return
        called = _arguments(module, args, kwargs)
        if isinstance(called, str):
            raise TypeError(f"converted {self.type_name}: {called}")
        for name in dict.fromkeys([*self.arguments, *called]):
            want, got = self.arguments.get(name), called.get(name)
            if want != got:
                raise UnsupportedModuleError(
                    "", self.type_name,
                    f"it was converted and checked for calls with {name}={_shown(want)}; this "
                    f"call passes {name}={_shown(got)}, which would run code no check has seen",
                    "convert the 2D network for this call: pass this call's 2D inputs to "
                    "planar3d.convert as example_input (a batch of images, or a tuple of the "
                    "positional inputs) and example_kwargs (the keyword inputs)",
                )
