"""Test oracles for the properties in docs/design.md, independent of planar3d's own machinery.

- `slice_outputs`: every module's output on the 2D network run on the folded slices, and on the
  converted network run on the volume, by module path (same names in both).
- `head_reference`: the 2D network applied with the head pool seeing the features of all slices
  pooled together: inside the head-pool module's own code, every global/adaptive pooling op first
  reduces the slices of each volume with the same reduction (mean or max), and a class-token
  selection `x[:, i]` of token sequences first averages the slices; a head module that pools a
  set of positions (attention pooling) runs on the positions of all slices of each volume.
- `stacked_reference`: docs/design.md P0 for a whole network: the 2D network on the N·D slices
  stacked as one batch (head pool as above), its outputs laid out as the 3D network must return
  them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

_MEAN = {F.adaptive_avg_pool2d, torch.Tensor.mean, torch.mean, F.avg_pool2d}
_MAX = {F.adaptive_max_pool2d, torch.Tensor.amax, torch.amax, torch.Tensor.max, torch.max,
        F.max_pool2d}


def fold_volume(x: torch.Tensor) -> torch.Tensor:
    """(N, C, D, H, W) -> (N*D, C, H, W)."""
    n, c, d, h, w = x.shape
    return x.transpose(1, 2).reshape(n * d, c, h, w)


def _capture(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, object], object]:
    outputs: dict[str, object] = {}

    def keep_first(name):
        def hook(module, args, out):
            if name not in outputs:  # cloned: later in-place ops must not change the record
                outputs[name] = tree_map(
                    lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, out)
        return hook

    handles = [m.register_forward_hook(keep_first(name)) for name, m in model.named_modules()]
    try:
        with torch.no_grad():
            final = model(x)
    finally:
        for h in handles:
            h.remove()
    return outputs, final


def slice_mismatches(model2d: nn.Module, model3d: nn.Module, volume: torch.Tensor,
                     *, rtol: float = 1e-4, only_slice: int | None = None,
                     noise: float | None = None) -> list[str]:
    """P1 at every module: paths whose 3D output is not the 2D output slice by slice.

    With `only_slice`, the volume must be depth-constant and only that slice is compared with
    the 2D network run on one slice (P2 in the interior, for modes with thick kernels).

    With `noise`, each module's tolerance also includes how far the 2D network's own output
    there moves when its input is perturbed by `noise` (relative): the floor for modes whose
    kernels sum in a different order (inflate), which deep randomised networks amplify.
    """
    n, d = volume.shape[0], volume.shape[2]
    images = fold_volume(volume) if only_slice is None else volume[:, :, only_slice]
    out2, _ = _capture(model2d, images)
    floor: dict[str, list[float]] = {}
    if noise is not None:
        generator = torch.Generator().manual_seed(7)
        delta = torch.randn(images.shape, generator=generator, dtype=images.dtype)
        moved, _ = _capture(model2d, images + noise * images.abs().max() * delta)
        for path, o2 in moved.items():
            pairs = zip(*([t for t in tree_flatten(o)[0] if isinstance(t, torch.Tensor)]
                          for o in (out2.get(path), o2)))
            floor[path] = [(a - b).abs().max().item() if a.is_floating_point()
                           and a.shape == b.shape else 0.0 for a, b in pairs]
    out3, _ = _capture(model3d, volume)
    problems = []
    for path, o2 in out2.items():
        if path not in out3:
            continue
        t2 = [t for t in tree_flatten(o2)[0] if isinstance(t, torch.Tensor)]
        t3 = [t for t in tree_flatten(out3[path])[0] if isinstance(t, torch.Tensor)]
        if len(t2) != len(t3):
            continue
        floors = floor.get(path, [])
        for i, (a, b) in enumerate(zip(t2, t3)):
            if a.dim() == 3 and b.dim() == 4:  # token sequences: (N, D, L, C)
                want = a if only_slice is not None else a.reshape(b.shape)
                got = b[:, only_slice] if only_slice is not None else b
                if want.shape != got.shape:
                    problems.append(f"{path}: shape {tuple(b.shape)} fits no slice layout of "
                                    f"{tuple(a.shape)}")
                    continue
                err, scale = _relative(want, got)
                if err > rtol * scale + (floors[i] if i < len(floors) else 0.0):
                    problems.append(f"{path}: max error {err:.3g} (scale {scale:.3g})")
                continue
            if b.dim() != 5 or a.dim() != 4:
                continue
            if only_slice is not None:
                if a.shape[0] != n:
                    continue
                # the depth dim: 2 in (N, C, D, H, W), elsewhere in channels-last code
                options = [b.select(k, only_slice) for k in (2, 1, 3, 4) if b.shape[k] == d]
                options = [o for o in options if o.shape == a.shape]
                reference = a
            else:
                if a.shape[0] != n * d:
                    continue
                grouped = a.reshape(n, d, *a.shape[1:])
                options = [grouped.movedim(1, k) for k in (2, 1, 3, 4)]
                options = [o for o in options if o.shape == b.shape]
                reference = None
            if not options:
                problems.append(f"{path}: shape {tuple(b.shape)} fits no slice layout of "
                                f"{tuple(a.shape)}")
                continue
            if reference is None:
                err, scale = min(_relative(o, b) for o in options)
            else:
                err, scale = min(_relative(reference, o) for o in options)
            if err > rtol * scale + (floors[i] if i < len(floors) else 0.0):
                problems.append(f"{path}: max error {err:.3g} (scale {scale:.3g})")
    return problems


def _relative(want: torch.Tensor, got: torch.Tensor) -> tuple[float, float]:
    scale = want.abs().max().item() + 1e-12
    return (want - got).abs().max().item(), scale


class _MergeSlices(TorchFunctionMode):
    """Pools in the own code of the innermost running module, when it is a head, merge the
    slices first (`running`: one flag per running module, innermost last)."""

    def __init__(self, slices: int, images: int):
        super().__init__()
        self.slices, self.images = slices, images
        self.running: list[bool] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.running and self.running[-1] and (func in _MEAN or func in _MAX
                                                  or _selects_a_token(func, args)):
            x = args[0]
            if isinstance(x, torch.Tensor) and x.dim() >= 3 and x.shape[0] == self.images:
                grouped = x.reshape(-1, self.slices, *x.shape[1:])
                merged = grouped.amax(1) if func in _MAX else grouped.mean(1)
                args = (merged, *args[1:])
        return func(*args, **kwargs)


def _selects_a_token(func, args) -> bool:
    """`x[:, i]` on token sequences (B, L, C): the class token."""
    return (func is torch.Tensor.__getitem__ and args[0].dim() == 3 and isinstance(args[1], tuple)
            and len(args[1]) == 2 and args[1][0] == slice(None) and isinstance(args[1][1], int))


def _joined(slices: int, position_dim: int):
    """Forward pre-hook: the per-slice positions of each volume laid end to end."""
    def hook(module, args):
        x = args[0]
        grouped = x.reshape(-1, slices, *x.shape[1:]).movedim(1, position_dim)
        return (grouped.flatten(position_dim, position_dim + 1), *args[1:])
    return hook


def head_reference(model2d: nn.Module, volume: torch.Tensor,
                   head_path: str | Sequence[str] | None, *, grad: bool = False,
                   joined: dict[str, int] | None = None):
    """2D network on the folded slices, the slices pooled together inside the code of
    `head_path` (one path, several, or None for no pooling across slices). Children of a head
    module run unchanged unless they are heads themselves. `joined`: head modules (path ->
    position dim) that run on the positions of all slices of each volume laid end to end.
    `grad`: keep the autograd graph."""
    paths = [head_path] if isinstance(head_path, str) else list(head_path or ())
    mode = _MergeSlices(volume.shape[2], volume.shape[0] * volume.shape[2])
    heads = [model2d.get_submodule(p) for p in paths]
    joins = [(model2d.get_submodule(p), dim) for p, dim in (joined or {}).items()]

    def enter(is_head):
        def hook(*_):
            mode.running.append(is_head)
        return hook

    def leave(*_):
        mode.running.pop()

    handles = [module.register_forward_pre_hook(_joined(volume.shape[2], dim))
               for module, dim in joins]
    for module in model2d.modules():
        handles += [module.register_forward_pre_hook(enter(any(module is h for h in heads))),
                    module.register_forward_hook(leave)]
    try:
        with torch.set_grad_enabled(grad), mode:
            return model2d(fold_volume(volume))
    finally:
        for h in handles:
            h.remove()


class NoPlanarMeaning(ValueError):
    """A 2D output that P0 cannot lay out as a volume output (per-slice vectors, no head pool)."""


def unfold_output(t: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """One output of the 2D network on N·D stacked slices, as the 3D network returns it:
    (N·D, ..., H, W) -> (N, ..., D, H, W), token sequences (N·D, L, C) -> (N, D, L, C); an
    output already pooled over the slices, (N, ...), as it is."""
    if t.dim() >= 3 and t.shape[0] == n * d:
        return t.reshape(n, d, *t.shape[1:]).movedim(1, -3)
    if t.dim() >= 1 and t.shape[0] == n:
        return t
    raise NoPlanarMeaning(
        f"the 2D network returns {tuple(t.shape)} on {n * d} stacked slices: a per-slice "
        "result that is not a feature map, and no head pool merges the slices")


def stacked_reference(model2d: nn.Module, volume: torch.Tensor,
                      head_path: str | Sequence[str] | None, *, grad: bool = False):
    """P0: what a planar-converted `model2d` must return on `volume` (N, C, D, H, W).

    The 2D network runs on the N·D slices stacked as one batch, in its current train/eval mode;
    with `head_path`, the global pools in that module's code pool the slices of each volume
    together. Every output is laid out by `unfold_output`.

    Raises:
        NoPlanarMeaning: if an output has no volume layout.
    """
    n, d = volume.shape[0], volume.shape[2]
    out = head_reference(model2d, volume, head_path, grad=grad)
    return tree_map(lambda t: unfold_output(t, n, d) if isinstance(t, torch.Tensor) else t, out)


def head_sites(report, model2d: nn.Module, images: torch.Tensor
               ) -> tuple[list[str], dict[str, int]]:
    """(modules whose own code pools the planar axis away, head modules run on the positions of
    all slices (path -> position dim)), per the conversion report, among those the 2D model
    calls on `images` in eval mode (auxiliary heads run in train mode)."""
    called: set[str] = set()
    handles = [m.register_forward_pre_hook(lambda mod, args, n=n: called.add(n))
               for n, m in model2d.named_modules()]
    try:
        with no_grad_eval(model2d):
            model2d(images)
    finally:
        for h in handles:
            h.remove()
    paths = [e.path for e in report.entries if e.path in called and (
        e.action in ("head pool", "head rewritten")
        or (e.action == "slice code" and e.detail.startswith("holds the head pool")))]
    joined = {e.path: int(re.search(r"\(dim (\d+)\)", e.detail).group(1))
              for e in report.entries if e.action == "all slices" and e.path in called}
    # a root whose own code pools tokens (x.flatten(1, -2).mean(1)) merges slices by itself
    return paths or [e.path for e in report.entries
                     if e.path == "" and e.detail.startswith("contains the head pool")], joined


@contextlib.contextmanager
def no_grad_eval(*models: nn.Module):
    flags = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, f in zip(models, flags):
            m.train(f)
