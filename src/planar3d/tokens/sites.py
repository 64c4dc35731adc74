"""Where a token model's depth layers go, found from the records of the example run.

By what modules do, never by their class:

- the network has *tokens* when a module returns per-image token sequences (B, L, C);
- its *first convolution* is the Conv2d the example run called first: the patch embedding of a
  vision transformer, the stem of a hybrid. When it cuts patches (kernel = stride, no padding)
  it becomes the tubelet under `depth="pool"`; the depth position embedding is added to its
  output (a map: its channel dim is unambiguous), else to the output of the first module that
  turns images into token sequences;
- an *attending* module is one whose own code computed attention weights (`CallRecord.attends`).
  Its depth attention goes beside the innermost module, itself or an ancestor, that takes a
  per-image token sequence or map and returns one of the same shape (so that the branch can be
  added): a ViT's `Attention`; for attention over window partitions (SAM, hieradet), the block
  that partitions. Attending modules without such a module (pooling attention that changes
  the token count, class attention) get no depth attention, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .._record import CallRecord, CallRecords, tensors
from .._tree import join

__all__ = ["AttentionSite", "DepthSites", "find_depth_sites"]


@dataclass(frozen=True)
class AttentionSite:
    """A module a depth attention branch goes beside.

    Attributes:
        path: the module's path.
        rank: the rank of its per-slice input (3: token sequences; 4: maps or grids).
        channel_dim: the channel dim of that input (-1, or 1 for NCHW maps).
        channels: the number of channels.
        qkv: the path of its fused q/k/v projection (a Linear C -> 3C), if it has one.
        num_heads: the heads of that projection's attention (1 when it says none).
    """

    path: str
    rank: int
    channel_dim: int
    channels: int
    qkv: str | None
    num_heads: int


@dataclass(frozen=True)
class DepthSites:
    """Where a network's depth layers go (see the module docstring).

    Attributes:
        tokens: the network has per-image token sequences.
        first_conv: the path of its first convolution, or None.
        token_embedding: the path of the first module turning images into token sequences,
            and its token width.
        attention: the modules a depth attention goes beside.
        skipped: (path, reason) of attending modules that get none.
    """

    tokens: bool = False
    first_conv: str | None = None
    token_embedding: tuple[str, int] | None = None
    attention: tuple[AttentionSite, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


def _first_tensor(tree):
    found = tensors(tree)
    return found[0] if found else None


def _shape_kept(record: CallRecord, batch: int) -> bool:
    """Whether the call takes a per-image token sequence or map and returns one of its shape."""
    x, y = _first_tensor((record.args, record.kwargs)), _first_tensor(record.output)
    return (x is not None and y is not None and x.dim() in (3, 4) and x.shape[0] == batch
            and y.shape == x.shape)


def _channels(module: nn.Module) -> int | None:
    """The channel count a module's first channel-mixing layer or norm takes."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
        if isinstance(m, nn.Conv2d):
            return m.in_channels
        if isinstance(m, nn.LayerNorm):
            return m.normalized_shape[-1]
    return None


def _attention_site(path: str, module: nn.Module, record: CallRecord) -> AttentionSite | None:
    x = _first_tensor((record.args, record.kwargs))
    channels = _channels(module)
    if channels is None:
        return None
    if x.shape[-1] == channels:
        channel_dim = -1
    elif x.dim() == 4 and x.shape[1] == channels:
        channel_dim = 1
    else:
        return None
    fused = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)
             and m.in_features == channels and m.out_features == 3 * channels]
    qkv, heads = None, 1
    if len(fused) == 1:
        name = fused[0][0]
        qkv = join(path, name)
        owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
        count = getattr(owner, "num_heads", None)
        if isinstance(count, int) and count > 0 and channels % count == 0:
            heads = count
    return AttentionSite(path, x.dim(), channel_dim, channels, qkv, heads)


def find_depth_sites(model2d: nn.Module, records: CallRecords) -> DepthSites:
    """The depth sites of `model2d` (the 2D network), from the records of its example run."""
    batch = records.batch
    called = []
    for path, module in model2d.named_modules():
        record = records.at(path)
        if record is not None:
            called.append((record.order, path, module, record))
    called.sort(key=lambda item: item[0])
    tokens = any(t.dim() == 3 and t.shape[0] == batch
                 for *_, record in called for t in tensors(record.output))
    first_conv = next((p for _, p, m, _ in called if isinstance(m, nn.Conv2d)), None)
    token_embedding = next(
        ((p, t.shape[-1]) for _, p, _, r in called
         if (x := _first_tensor((r.args, r.kwargs))) is not None and x.dim() == 4
         and x.shape[0] == batch
         for t in tensors(r.output) if t.dim() == 3 and t.shape[0] == batch), None)
    by_path = {p: (m, r) for _, p, m, r in called}
    sites: dict[str, AttentionSite] = {}
    skipped = []
    for _, path, _, record in called:
        if not record.attends:
            continue
        target = path
        while target not in by_path or not _shape_kept(by_path[target][1], batch):
            if not target:
                break
            target = target.rpartition(".")[0]
        site = _attention_site(target, *by_path[target]) if target in by_path and (
            _shape_kept(by_path[target][1], batch)) else None
        if site is None:
            skipped.append((path, "no module around it keeps the shape of its per-image "
                                  "tokens or map (its attention changes their number)"))
        else:
            sites.setdefault(target, site)
    return DepthSites(tokens, first_conv, token_embedding, tuple(sites.values()), tuple(skipped))
