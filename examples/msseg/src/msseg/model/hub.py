"""Whether timm's ImageNet weights can be had, answered at once.

`timm.create_model(..., pretrained=True)` on a machine without network spends about a minute
retrying the model hub before it fails with a chain of tracebacks. `check_pretrained_available`
answers first: weights already in the local hub caches are fine; otherwise one connection to the
hub (at most `TIMEOUT_S` seconds, skipped when a proxy is configured, since only the proxy knows
the way) must succeed, or a `ConnectionError` says to pass ``--weights FILE``.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["TIMEOUT_S", "check_pretrained_available"]

TIMEOUT_S = 3.0
_HUB = "https://huggingface.co"
_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def check_pretrained_available(name: str, *, timeout: float = TIMEOUT_S) -> None:
    """Return when timm can get ImageNet weights for `name`; raise at once when it cannot.

    Args:
        name: a timm model name ("vgg16", "mobilenetv2_100", ...).
        timeout: seconds to wait for the hub to answer.
    Raises:
        ConnectionError: the weights are not cached and the hub cannot be reached.
    """
    if _cached(name) or any(os.environ.get(v) for v in _PROXIES):
        return
    host = urlparse(os.environ.get("HF_ENDPOINT", _HUB)).hostname or "huggingface.co"
    if _reachable(host, timeout):
        return
    raise ConnectionError(
        f"--pretrained: timm's ImageNet weights for {name!r} are not on this machine and the "
        f"model hub ({host}) cannot be reached; download the 2D checkpoint where there is a "
        f"network and pass it with --weights FILE (weights=FILE)")


def _cached(name: str) -> bool:
    """True when the hub's or torch's cache already holds `name`'s default weights."""
    try:
        import torch
        from huggingface_hub import try_to_load_from_cache
        from timm.models import get_pretrained_cfg
    except ImportError:
        return False
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return False
    if cfg.hf_hub_id:
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else _WEIGHT_FILES
        if any(isinstance(try_to_load_from_cache(cfg.hf_hub_id, f), str) for f in files):
            return True
    url_file = Path(urlparse(cfg.url).path).name if cfg.url else ""
    return bool(url_file) and (Path(torch.hub.get_dir()) / "checkpoints" / url_file).is_file()


def _reachable(host: str, timeout: float) -> bool:
    """True when a TCP connection to `host`:443 opens within `timeout` seconds (name lookup
    included: it runs in a thread, since a lookup ignores socket timeouts)."""
    opened: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)
