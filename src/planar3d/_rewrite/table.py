"""The rewrite rules in one table: what each functional call means on volumes, per kind of
rewrite.

- "body" (`body`): per-slice meaning, for modules of the per-slice body in every mode;
- "head" (`head`): the head pool, for modules of a classifier's head.

A row gives, for a group of calls (functions by object, tensor methods as "Tensor.<name>"), the
rule of each kind; a kind without a rule for a call gives it no meaning on volumes, except a
submodule call (`contract.call_submodule`), which then runs as it is. Later rows override
earlier ones. A new kind of rewrite is a new column and its `Kind`; a new call, a new row.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import body, head
from .contract import NoPlanarMeaning, Rule, Site, call_submodule, label_of
from .ops import (
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_METHODS,
    RANDOM_FUNCTIONS,
    RANDOM_METHODS,
    REDUCE_FUNCTIONS,
    REDUCE_METHODS,
    WINDOW_FUNCTIONS,
)

__all__ = ["KINDS", "Kind"]


@dataclass(frozen=True)
class Kind:
    """One kind of rewrite.

    Attributes:
        rules: call (function, or "Tensor.<method>") -> rule.
        refuse: what a call without meaning on volumes raises instead of `NoPlanarMeaning`
            (given the site, the call's label and the error).
    """

    rules: dict[object, Rule]
    refuse: Callable[[Site, str, NoPlanarMeaning], Exception]


_COLUMNS: dict[str, dict[object, Rule]] = {"body": {}, "head": {}}


def _row(calls: Iterable[object], **rules: Rule) -> None:
    for call in calls:
        for kind, rule in rules.items():
            _COLUMNS[kind][call] = rule


def _methods(names: Iterable[str]) -> list[str]:
    return [f"Tensor.{name}" for name in names]


# calls -> the rule of each kind
_row(ELEMENTWISE_FUNCTIONS, body=body.elementwise, head=head.unchanged)
_row(_methods(ELEMENTWISE_METHODS), body=body.elementwise, head=head.unchanged)
_row([*REDUCE_FUNCTIONS, *_methods(REDUCE_METHODS)], body=body.reduce)
_row(WINDOW_FUNCTIONS, body=body.per_slice)
_row([torch.mean, "Tensor.mean"], head=head.reduce("mean"))
_row([torch.amax, "Tensor.amax"], head=head.reduce("amax"))
_row([torch.amin, "Tensor.amin"], head=head.reduce("amin"))
_row([F.adaptive_avg_pool2d], head=head.adaptive(F.adaptive_avg_pool3d))
_row([F.adaptive_max_pool2d], head=head.adaptive(F.adaptive_max_pool3d))
_row([F.avg_pool2d], head=head.window("mean"))
_row([F.max_pool2d], head=head.window("amax"))
_row([F.lp_pool2d, F.interpolate], head=head.per_slice)
_row([F.pad], body=body.pad, head=head.per_slice)
_row([torch.permute, "Tensor.permute"], body=body.permute)
_row([torch.transpose, "Tensor.transpose"], body=body.transpose)
_row([torch.cat, torch.concat], body=body.along_dim(1), head=head.leading_dim_arg(1, 0))
_row([torch.split, torch.chunk, "Tensor.split", "Tensor.chunk"],
     body=body.along_dim(2), head=head.leading_dim_arg(2, 0))
_row([torch.softmax, F.softmax, F.log_softmax, "Tensor.softmax"], body=body.along_dim(1))
_row([F.normalize], body=body.along_dim(2, default=1))
_row([F.conv2d], body=body.conv2d)
_row([F.linear], body=body.last_dims(lambda args, kwargs: 1))
_row([F.layer_norm],
     body=body.last_dims(lambda args, kwargs: len(kwargs.get("normalized_shape", args[1]))))
_row([operator.getitem], body=body.getitem, head=head.leading_dims_only)
_row([getattr, "Tensor.size", "Tensor.dim"], body=body.shape, head=head.shape)
_row([call_submodule], body=body.submodule)
for _call in (*RANDOM_FUNCTIONS, *_methods(RANDOM_METHODS)):
    _row([_call], body=body.random_draw(_call if isinstance(_call, str) else label_of(_call)))

KINDS: dict[str, Kind] = {
    "body": Kind(_COLUMNS["body"], body.refuse),
    "head": Kind(_COLUMNS["head"], head.refuse),
}
