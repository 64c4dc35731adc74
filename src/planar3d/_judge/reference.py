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
  reduction of a per-slice tensor is pooled over slices.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from .._axis import unfold
from .._modes import eval_mode, train_mode

__all__ = ["Capture", "Reference", "as_volumes", "covers_plane", "expected_output",
           "global_pool_kind", "merge_slices", "reference_run", "run_3d"]


def merge_slices(t: torch.Tensor, slices: int, reduction: str) -> torch.Tensor:
    """(V * S, ...) -> (V, ...): the S slices of each volume pooled with `reduction`."""
    grouped = t.reshape(t.shape[0] // slices, slices, *t.shape[1:])
    return getattr(grouped, reduction)(1)


def expected_output(want: torch.Tensor, got: torch.Tensor, *, volumes: int, axis: int
                    ) -> torch.Tensor:
    """What a converted output `got` must equal given the reference's tensor `want`: a per-slice
    map (V * S, C, H, W) unfolded into volumes, anything else as it is."""
    if want.dim() >= 4 and got.dim() == want.dim() + 1 and want.shape[0] % volumes == 0:
        return unfold(want, volumes, axis)
    return want


def covers_plane(x: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether a 2D window op on `x` that returned `out` pooled the whole plane (one output
    position from several input positions)."""
    return out.shape[-2:] == (1, 1) and x.shape[-2] * x.shape[-1] > 1


_REDUCTIONS = {"mean": "mean", "amax": "amax", "amin": "amin", "adaptive_avg_pool2d": "mean",
               "adaptive_max_pool2d": "amax", "avg_pool2d": "mean", "max_pool2d": "amax"}


def global_pool_kind(fn, args, kwargs, out) -> str | None:
    """How a 2D call on a (B, C, H, W) tensor pools every position of the plane, as the head
    pool does: "mean", "amax", "amin", or None for any other call. These are the calls whose
    head rewrite pools the planar axis too (`out`: the call's 2D result)."""
    name = getattr(fn, "__name__", "")
    reduction = _REDUCTIONS.get(name)
    x = args[0] if args else None
    if reduction is None or not isinstance(x, torch.Tensor) or x.dim() != 4:
        return None
    if name.startswith("adaptive"):
        return reduction
    if name in ("avg_pool2d", "max_pool2d"):
        return reduction if isinstance(out, torch.Tensor) and covers_plane(x, out) else None
    dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dims is None:
        return None
    dims = {d % 4 for d in ((dims,) if isinstance(dims, int) else dims)}
    return reduction if len(dims) >= 2 and 2 in dims else None


# For "as-is" sites (code that pooled the slices as it is, e.g. timm's `x.flatten(1, -2)` then
# `x.mean(1)` over tokens): the first reduction of a per-slice tensor is the pool.
_AS_IS_POOLS = {"mean": "mean", "sum": "sum", "amax": "amax", "max": "amax", "amin": "amin",
                "min": "amin", "adaptive_avg_pool2d": "mean", "adaptive_max_pool2d": "amax",
                "avg_pool2d": "mean", "max_pool2d": "amax", "adaptive_avg_pool1d": "mean",
                "adaptive_max_pool1d": "amax"}


class _PoolSlicesInCode(TorchFunctionMode):
    """Inside the own code of "code" and "as-is" sites, global pools of per-slice tensors are
    pooled over the slices of each volume too."""

    def __init__(self, images: int, slices: int) -> None:
        super().__init__()
        self.images, self.slices = images, slices
        self.kinds: list[str] = []  # the innermost running site's kind, or "child"

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        kind = self.kinds[-1] if self.kinds else "child"
        x = args[0] if args else None
        if kind == "child" or not isinstance(out, torch.Tensor) or not (
                isinstance(x, torch.Tensor) and x.shape[:1] == (self.images,)):
            return out
        if kind == "code":
            reduction = global_pool_kind(func, args, kwargs, out)
        else:
            per_slice = out.dim() >= 1 and out.shape[0] == self.images and x.dim() >= 3
            reduction = _AS_IS_POOLS.get(getattr(func, "__name__", "")) if per_slice else None
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
    """The inputs of a 2D call made volumes: every per-image map of the example batch
    (`batch` images) becomes `volumes` volumes of its images as slices."""
    def up(t):
        if isinstance(t, torch.Tensor) and t.dim() >= 4 and t.shape[0] == batch:
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

    for path, kind in sites.items():
        module = model2d.get_submodule(path)
        if kind in ("code", "as-is"):
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
