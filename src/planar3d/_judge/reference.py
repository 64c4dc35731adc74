"""The reference a planar-converted network must compute, as code (docs/design.md, P0).

The 2D network runs on the N·D slices stacked as one batch; at each head-pool site the slices of
each volume are pooled together (the head pool pools D, H and W), and the rest of the head runs
on one row per volume. Spatial outputs are unfolded back to (N, C, D, H, W).

Head-pool sites are where the converted network pools the planar axis away:
- "mean" / "amax": a module (an adaptive pool in the head) whose output is pooled over slices;
- "code": a module whose rewritten code pools globally (`F.adaptive_avg_pool2d`,
  `x.mean((2, 3))`, a GeM's `F.avg_pool2d(x, x.shape[-2:])`): the result of each such call is
  pooled over slices;
- "as-is": a module whose own code pooled the slices as it is: the result of the first
  reduction of a per-slice tensor is pooled over slices;
- "slice code": a module whose own code runs on the stacked slices (`layers.slice_code`): the
  result of each op that pools the positions of a per-slice tensor (`pools.slice_pool_kind`: a
  reduction over tokens, a global pool of maps, a class-token selection) is merged over slices;
- "all slices <dim>": a module that pools a set of positions (attention pooling) runs on the
  positions of all slices of each volume, laid end to end along its inputs' dim <dim>
  (`layers.all_slices`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from .._axis import TOKEN_RANK, unfold
from .._modes import eval_mode, train_mode
from .pools import AS_IS_POOLS, global_pool_kind, merge_slices, slice_pool_kind

__all__ = ["ALL_SLICES", "Capture", "Reference", "as_volumes", "expected_output", "reference_run",
           "run_3d"]

# the kind of a head-pool site run on the positions of all slices, followed by its position dim
ALL_SLICES = "all slices "


def expected_output(want: torch.Tensor, got: torch.Tensor, *, volumes: int, axis: int
                    ) -> torch.Tensor:
    """What a converted output `got` must equal given the reference's tensor `want`: a per-slice
    map (V * S, C, H, W) or token sequence (V * S, L, C) unfolded into volumes, anything else as
    it is."""
    if (want.dim() >= TOKEN_RANK and got.dim() == want.dim() + 1
            and want.shape[0] % volumes == 0):
        return unfold(want, volumes, axis)
    return want


class _PoolSlicesInCode(TorchFunctionMode):
    """Inside the own code of "code", "as-is" and "slice code" sites, global pools of per-slice
    tensors are pooled over the slices of each volume too."""

    def __init__(self, images: int, slices: int) -> None:
        super().__init__()
        self.images, self.slices = images, slices
        self.kinds: list[str] = []  # the innermost running site's kind, or "child"

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        kind = self.kinds[-1] if self.kinds else "child"
        x = args[0] if args else None
        if kind == "child" or not (isinstance(x, torch.Tensor)
                                   and x.shape[:1] == (self.images,)):
            return out
        if kind == "slice code":
            reduction = slice_pool_kind(func, args, kwargs, out)
            if reduction is None:
                return out
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            return merge_slices(out, self.slices, reduction, x=x,
                                dim=dim if isinstance(dim, int) else None)
        if not isinstance(out, torch.Tensor):
            return out
        if kind == "code":
            reduction = global_pool_kind(func, args, kwargs, out)
        else:
            per_slice = out.dim() >= 1 and out.shape[0] == self.images and x.dim() >= 3
            reduction = AS_IS_POOLS.get(getattr(func, "__name__", "")) if per_slice else None
        if reduction is None:
            return out
        return merge_slices(out, self.slices, reduction)


class Capture:
    """The first call's inputs and outputs of every module, by path, and the modules being
    called when a forward fails (innermost last)."""

    def __init__(self, model: nn.Module) -> None:
        self.inputs: dict[str, object] = {}
        self.outputs: dict[str, object] = {}
        self.order: list[str] = []
        self.stack: list[str] = []
        self.handles = []
        for name, module in model.named_modules():
            self.handles += [module.register_forward_pre_hook(self._pre(name), with_kwargs=True),
                             module.register_forward_hook(self._post(name))]

    def _pre(self, name):
        def hook(module, args, kwargs):
            self.stack.append(name)
            if name not in self.inputs:
                self.inputs[name] = _clone((args, kwargs))
        return hook

    def _post(self, name):
        def hook(module, args, output):
            if self.stack and self.stack[-1] == name:
                self.stack.pop()
            if name not in self.outputs:
                self.outputs[name] = _clone(output)
                self.order.append(name)
        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _clone(tree):
    return tree_map(lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, tree)


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool):
    with torch.no_grad(), (train_mode(model) if training else eval_mode(model)):
        yield


def as_volumes(tree, *, batch: int, volumes: int, axis: int):
    """The inputs of a 2D call made volumes: every per-image map or token sequence of the example
    batch (`batch` images) becomes `volumes` volumes of its images as slices."""
    def up(t):
        if isinstance(t, torch.Tensor) and t.dim() >= TOKEN_RANK and t.shape[0] == batch:
            return unfold(t, volumes, axis)
        return t

    return tree_map(up, tree)


def reference_run(model2d: nn.Module, args: tuple, kwargs: dict, *, batch: int, volumes: int,
                  sites: dict[str, str], training: bool, capture: Capture | None = None):
    """The 2D network's outputs on the stacked slices (its inputs `args`, `kwargs` hold
    `batch` images; volume v holds images v*S .. v*S+S-1), with every head-pool site pooling the
    slices of each volume together."""
    slices = batch // volumes
    code = _PoolSlicesInCode(batch, slices)
    # new containers: some forwards append to a list they are given (torchvision's FPN blocks)
    args, kwargs = tree_map(lambda leaf: leaf, (args, kwargs))
    handles = []

    def pooled(reduction):
        def hook(module, args, out):
            if isinstance(out, torch.Tensor) and out.shape[:1] == (batch,):
                return merge_slices(out, slices, reduction)
            return out
        return hook

    def push(kind):
        def hook(*_):
            code.kinds.append(kind)
        return hook

    def pop(*_):
        code.kinds.pop()

    def joined(dim):
        def hook(module, args, kwargs):
            def join(t):
                if isinstance(t, torch.Tensor) and t.shape[:1] == (batch,):
                    grouped = t.reshape(volumes, slices, *t.shape[1:]).movedim(1, dim)
                    return grouped.flatten(dim, dim + 1)
                return t
            return tree_map(join, (args, kwargs))
        return hook

    for path, kind in sites.items():
        module = model2d.get_submodule(path)
        if kind.startswith(ALL_SLICES):
            dim = int(kind.removeprefix(ALL_SLICES))
            handles.append(module.register_forward_pre_hook(joined(dim), with_kwargs=True))
        elif kind in ("code", "as-is", "slice code"):
            handles += [module.register_forward_pre_hook(push(kind), prepend=True),
                        module.register_forward_hook(pop, prepend=True)]
            for name, child in module.named_modules():
                if name:
                    handles += [child.register_forward_pre_hook(push("child"), prepend=True),
                                child.register_forward_hook(pop, prepend=True)]
        else:
            handles.append(module.register_forward_hook(pooled(kind), prepend=True))
    try:
        with _mode(model2d, training), code:
            return model2d(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        if capture is not None:
            capture.close()


@dataclass(frozen=True, eq=False)
class Reference:
    """What a converted network must compute (docs/design.md P0), as a function of the 2D
    inputs of a call: `reference(args, kwargs, batch=B, training=...)` runs `reference_run`.

    Attributes:
        model2d: the 2D network (never changed: train-mode runs give buffers and flags back).
        volumes: how many volumes the images of a call are the slices of.
        sites: the head-pool sites, path -> kind (see the module docstring); with none, the
            reference is the 2D network's own output on the stacked slices.
    """

    model2d: nn.Module
    volumes: int
    sites: dict[str, str] = field(default_factory=dict)

    def __call__(self, args: tuple, kwargs: dict, *, batch: int, training: bool,
                 capture: Capture | None = None):
        return reference_run(self.model2d, args, kwargs, batch=batch, volumes=self.volumes,
                             sites=self.sites, training=training, capture=capture)


def run_3d(model3d: nn.Module, args: tuple, kwargs: dict, *, training: bool,
           capture: Capture | None = None):
    """The converted network's outputs on volume inputs (in train mode: derandomized, buffers
    and flags restored)."""
    try:
        with _mode(model3d, training):
            return model3d(*args, **kwargs)
    finally:
        if capture is not None:
            capture.close()
