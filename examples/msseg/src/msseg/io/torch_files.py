"""The one reader of torch files (checkpoints, encoder weights): tensors and plain values only,
and every way a file can be wrong is one line naming it.

    state = read_torch_file("vgg16.pth", role="encoder weights", fix="pass a state_dict ...")

`torch.load(weights_only=True)` never runs code from a file, but its errors for a file that is
not what was expected are many and unhelpful (a text file gives ``KeyError: 101`` or a note on
unsafe loading; an empty one ``EOFError``). This reader looks at the file first: a folder, an
empty file, and a file that begins like neither of torch's formats (a zip archive, or a pickle)
are named for what they are: text, an ONNX model, something else. What torch then refuses is
a damaged file or one holding Python objects other than tensors and plain values, which could
run code and is never loaded.

Public API:
    TorchFileError
    read_torch_file(path, *, role, fix, map_location="cpu", mmap=False) -> object
"""

from __future__ import annotations

import codecs
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["TorchFileError", "read_torch_file"]

_ZIP = b"PK\x03\x04"  # torch.save's format since 1.6
_PICKLE = 0x80  # the PROTO opcode that begins a pickle of protocol 2 or later (torch's legacy)
_ONNX = (b"\x08", b"tf2onnx", b"pytorch", b"onnx")  # ir_version field, then a producer name
_GZIP = b"\x1f\x8b"  # a gzip stream (.nii.gz)
_NIFTI = (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c")  # sizeof_hdr 348, either byte order


class TorchFileError(ValueError):
    """A torch file cannot be used; the message names the file, the problem and the fix."""


def read_torch_file(path: str | Path, *, role: str, fix: str,
                    map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure as one `TorchFileError`.

    Args:
        path: the file.
        role: what the file should be, e.g. "checkpoint" or "encoder weights" (in messages).
        fix: what to do instead, the end of every message.
        map_location: where tensors go.
        mmap: map tensors from the file instead of reading them (zip files only).
    Returns:
        What the file holds (tensors and plain values).
    Raises:
        FileNotFoundError: `path` does not exist.
        TorchFileError: a folder, an empty file, a file that is not a torch file (text, an ONNX
            model, ...), one that is truncated or damaged, or one holding Python objects other
            than tensors and plain values (refused, never run).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {role} not found; {fix}")
    if path.is_dir():
        raise TorchFileError(f"{path}: {role} is a folder, expected a file; {fix}")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head:
        raise TorchFileError(f"{path}: {role} is empty (0 bytes); {fix}")
    kind = _kind(path, head)
    if kind is not None:
        raise TorchFileError(f"{path}: {role} is not a torch file (it begins {kind}); {fix}")
    try:
        with warnings.catch_warnings():  # torch's notes on odd files: the errors below say more
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True,
                              mmap=mmap and head.startswith(_ZIP))
    except pickle.UnpicklingError as error:
        if "weights only" not in str(error).lower():
            raise _damaged(path, role, fix, error) from None
        raise TorchFileError(
            f"{path}: refused: it holds Python objects other than tensors and plain values, "
            f"which could run code when loaded, so it was not loaded; {fix}") from None
    except Exception as error:  # torch.load's errors for a damaged file are of many types
        raise _damaged(path, role, fix, error) from None


def _kind(path: Path, head: bytes) -> str | None:
    """How a file that is not a torch file begins, in words; None for a zip or a pickle."""
    if head.startswith(_ZIP) or head[0] == _PICKLE:
        return None
    if path.suffix.lower() == ".onnx" or (head.startswith(_ONNX[0]) and any(
            name in head for name in _ONNX[1:])):
        return "like an ONNX model; ONNX files are encoder weights, for --weights"
    if head.startswith(_GZIP):
        return "like a gzip file: a .nii.gz scan?"
    if head[:4] in _NIFTI:
        return "like a NIfTI image: a scan?"
    try:  # a character cut at the end of `head` is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        text = None
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "with text"
    return f"with the bytes {head[:8].hex(' ')}"


def _damaged(path: Path, role: str, fix: str, error: BaseException) -> TorchFileError:
    reason = (str(error).strip().splitlines() or [""])[0].split(". ")[0][:200]  # 1st sentence
    return TorchFileError(f"{path}: cannot be read as {_article(role)} {role} "
                          f"({type(error).__name__}: {reason}): truncated or damaged; {fix}")


def _article(role: str) -> str:
    return "an" if role[:1].lower() in "aeiou" else "a"
