"""The one walk that rebuilds a module tree: children are replaced by what a visitor returns."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["join", "rebuild", "replace_children"]


def join(path: str, name: str) -> str:
    """The dotted path of child `name` of the module at `path` ("" is the root)."""
    return f"{path}.{name}" if path else name


def replace_children(module: nn.Module, path: str,
                     visit: Callable[[nn.Module, str], nn.Module]) -> None:
    """Set each child of `module` (at `path`) to `visit(child, child_path)` where that differs.

    The children are listed before any is replaced, as torch.ao.quantization's swap does.
    """
    for name, child in list(module.named_children()):
        new = visit(child, join(path, name))
        if new is not child:
            setattr(module, name, new)


def rebuild(module: nn.Module, visit: Callable[[nn.Module, str], nn.Module | None],
            path: str = "") -> nn.Module:
    """Pre-order rebuild: `visit(module, path)` returns a replacement, or None to keep the
    module and go on with its children. Returns the (possibly new) root."""
    new = visit(module, path)
    if new is not None:
        return new
    replace_children(module, path, lambda child, p: rebuild(child, visit, p))
    return module
