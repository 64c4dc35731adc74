"""The one exception planar3d raises when a network cannot be converted exactly."""

from __future__ import annotations

__all__ = ["UnsupportedModuleError"]


class UnsupportedModuleError(RuntimeError):
    """A module cannot be converted with the guarantees of the requested mode.

    planar3d never returns a converted network that silently computes something else: when a
    module's 3D behaviour cannot be made to satisfy its mode's property (docs/design.md P1-P4), this
    error names the module's path, its type, why, and what to do about it.

    Attributes:
        path: dotted path of the module inside the converted model ("" for the root).
        module_type: the module's class name.
        reason: what was found.
        fix: how to make conversion succeed.
    """

    def __init__(self, path: str, module_type: str, reason: str, fix: str) -> None:
        self.path = path
        self.module_type = module_type
        self.reason = reason
        self.fix = fix
        where = path or "<root>"
        # a reason of several lines (one per attempt) puts the fix on a line of its own
        end = "\nFix:" if "\n" in reason else ". Fix:"
        super().__init__(f"cannot convert {where} ({module_type}): {reason}{end} {fix}")
