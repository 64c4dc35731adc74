"""Checksums: the one place msseg hashes what it writes and reads, always sha256 in hex.

- `file_digest`: the bytes of a file (the cache keys scans by content, and checks its arrays).
- `values_digest`: the contents of nested dicts, lists and tuples of tensors, numpy arrays and
  plain values (checkpoints carry it, so corrupted weights cannot load unnoticed). Tensors count
  with their dtype, shape and bytes; the walk follows the containers' order, which pickling
  (`torch.save`) keeps.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["file_digest", "values_digest"]

_CHUNK = 1 << 22
_PLAIN = (str, int, float, bool, type(None))


def file_digest(path: str | Path, *, role: str = "file") -> str:
    """sha256 of a file's bytes.

    Args:
        path: the file.
        role: what the file is, for the error message (e.g. "FLAIR").
    Raises:
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {role} file not found; check the data folder.")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def values_digest(values: Any) -> str:
    """sha256 of nested containers of tensors, numpy arrays and plain values.

    Args:
        values: dicts (keys in order), lists, tuples, `torch.Tensor` (any device and dtype),
            `numpy.ndarray`, str, int, float, bool, None.
    Raises:
        TypeError: a value of another type (the message names it).
    """
    digest = hashlib.sha256()
    _feed(digest, values)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, dict):
        digest.update(b"{%d" % len(value))
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(b"[%d" % len(value) if isinstance(value, list) else b"(%d" % len(value))
        for item in value:
            _feed(digest, item)
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"A{array.dtype.str}{array.shape}".encode())
        digest.update(array.view(np.uint8).reshape(-1) if array.size else b"")
    elif isinstance(value, _PLAIN):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    elif type(value).__module__.startswith("torch") and hasattr(value, "untyped_storage"):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.numel():
            import torch

            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    else:
        raise TypeError(f"cannot checksum a {type(value).__name__}; expected tensors, arrays "
                        f"and plain values in dicts, lists and tuples")
