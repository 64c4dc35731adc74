"""The contract of every rewrite rule.

In a rewritten forward (`forward`), each functional call goes through a guard that looks at the
call's tensors when it runs. A call with no (N, C, D, H, W) volume among its inputs runs as
written. Otherwise the rule that the table (`table`) gives for the call in this kind of rewrite
runs instead:

    rule(site, fn, args, kwargs) -> what the call means on volumes

`site` is where the call runs (the rewritten module, its planar axis, its path) and `fn` the
original callable. A rule raises `NoPlanarMeaning` when the call has no meaning on volumes, and
so does the guard for a call that has no rule; the kind of rewrite decides what that failure
becomes (`table.Kind.refuse`). A rule marked `on_any_input` runs whether or not a volume is
among the inputs (submodule calls, random draws).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

__all__ = ["NoPlanarMeaning", "Rule", "Site", "call_submodule", "is_volume", "label_of",
           "on_any_input", "runs_on_any_input", "volumes"]


class NoPlanarMeaning(RuntimeError):
    """A functional call in a rewritten forward has no meaning on volumes."""


@dataclass(frozen=True, eq=False)
class Site:
    """Where a rewritten call runs.

    Attributes:
        module: the rewritten module whose own forward makes the call.
        axis: the planar axis (tensor dim 2, 3 or 4).
        path: the module's path in the network (for messages).
    """

    module: nn.Module
    axis: int
    path: str


Rule = Callable[[Site, Callable, tuple, dict], Any]


def call_submodule(submodule: nn.Module, *args, **kwargs):
    """A call of a submodule in a traced forward (the graph's `call_module` nodes)."""
    return submodule(*args, **kwargs)


def label_of(target) -> str:
    """How messages and the conversion report name a traced call's function."""
    name = getattr(target, "__name__", None) or repr(target)
    module = getattr(target, "__module__", "") or ""
    return f"{module}.{name}" if module and not module.startswith("_") else name


def is_volume(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 5


def volumes(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The (N, C, D, H, W) volumes among a call's inputs."""
    return [t for t in tree_flatten((args, kwargs))[0] if is_volume(t)]


def on_any_input(rule: Rule) -> Rule:
    """Mark `rule` to run whether or not a volume is among the call's inputs."""
    rule.on_any_input = True  # type: ignore[attr-defined]
    return rule


def runs_on_any_input(rule: Rule | None) -> bool:
    return getattr(rule, "on_any_input", False)
