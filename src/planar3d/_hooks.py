"""The model's own forward hooks while `convert` runs it.

Probes run single modules on recorded inputs, which is not a call of the network: hooks with
side effects would see calls the network never made (timm's feature hooks store what they see
until the network's forward collects it, and would hand back features of a probe). So while the
network is recorded and probed, its hooks are paused; the end-to-end check, which runs whole
networks, runs them with their hooks. Hook dicts keep their identity throughout, so handles keep
working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["has_hooks", "hooks_paused", "hooks_running", "restore_hooks"]

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks")
_state = {"paused": False}


class _Pausable:
    """A hook that does nothing while hooks are paused."""

    def __init__(self, hook) -> None:
        self.hook = hook

    def __call__(self, *args, **kwargs):
        if _state["paused"]:
            return None
        return self.hook(*args, **kwargs)


def _hook_dicts(model: nn.Module) -> Iterator[dict]:
    for module in model.modules():
        for name in _HOOK_DICTS:
            hooks = getattr(module, name, None)
            if hooks:
                yield hooks


@contextlib.contextmanager
def hooks_paused(*models: nn.Module):
    """Pause the forward hooks the models hold now (hooks registered inside run as usual).

    On exit, call `restore_hooks` on every model that may hold copies of the paused hooks
    (converted modules, folded copies); the models given are restored here.
    """
    for model in models:
        for hooks in _hook_dicts(model):
            for key, hook in list(hooks.items()):
                if not isinstance(hook, _Pausable):
                    hooks[key] = _Pausable(hook)
    previous, _state["paused"] = _state["paused"], True
    try:
        yield
    finally:
        _state["paused"] = previous
        for model in models:
            restore_hooks(model)


@contextlib.contextmanager
def hooks_running():
    """Let paused hooks run (the end-to-end check runs whole networks)."""
    previous, _state["paused"] = _state["paused"], False
    try:
        yield
    finally:
        _state["paused"] = previous


def has_hooks(model: nn.Module) -> bool:
    """Whether any module of `model` has forward hooks or pre-hooks of its own."""
    return any(True for _ in _hook_dicts(model))


def restore_hooks(model: nn.Module) -> None:
    """Give every hook of `model` paused by `hooks_paused` back as it was."""
    for hooks in _hook_dicts(model):
        for key, hook in list(hooks.items()):
            if isinstance(hook, _Pausable):
                hooks[key] = hook.hook
