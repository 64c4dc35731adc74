"""A rewritten forward: a module's own code traced by torch.fx, its calls routed through rules.

A module's *own* forward (every submodule a leaf) is traced once per train/eval flag; every
functional call (`call_function`, `call_method` turned into a function call, and submodule calls
as `call_submodule(submodule, ...)`) is replaced by a guard that runs the call as written, or
the rule the table gives it in this kind of rewrite (`contract`, `table`). The module then
becomes an instance of `Rewritten<Type>`, a subclass of its own class whose forward runs the
generated code for the current train/eval flag. Copies and pickles re-trace on first use, so
converted models deepcopy, pickle and load like any other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache

from torch import fx, nn

from .._mode_kernels import ModeKernels
from .._state import (
    clear_derived,
    copy_derived,
    original_type,
    reduce_derived,
    state,
    type_name,
)
from ..errors import UnsupportedModuleError
from .contract import NoPlanarMeaning, Site, call_submodule, label_of, runs_on_any_input, volumes
from .table import KINDS, Kind

__all__ = ["is_rewritten", "rewrite", "rewrite_body_forward", "rewrite_head_forward",
           "rewrite_kind", "set_kernels", "unrewrite"]


class _OwnCodeTracer(fx.Tracer):
    """Traces only the module's own forward: every submodule is a leaf."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _method_caller(name: str) -> Callable:
    def call(self, *args, **kwargs):
        return getattr(self, name)(*args, **kwargs)

    call.__name__ = name
    return call


def _guard(kind: Kind, site: Site, key: object, label: str, fn: Callable) -> Callable:
    """`fn` as written when no volume is among its inputs, else its rule in `kind`."""
    rule = kind.rules.get(key)
    if fn is call_submodule and rule is None:
        return fn
    any_input = runs_on_any_input(rule)

    def guarded(*args, **kwargs):
        if not any_input and not volumes(args, kwargs):
            return fn(*args, **kwargs)
        try:
            if rule is None:
                raise NoPlanarMeaning(f"`{label}` on a volume")
            return rule(site, fn, args, kwargs)
        except NoPlanarMeaning as error:
            refusal = kind.refuse(site, label, error)
            if refusal is error:
                raise
            raise refusal from None

    guarded.__name__ = "planar3d_" + "".join(c if c.isalnum() else "_" for c in label)
    return guarded


def _compile(module: nn.Module, kind: Kind, site: Site, label: str, flags: dict
             ) -> tuple[Callable, list[str]]:
    graph = _OwnCodeTracer().trace(module, concrete_args=flags or None)
    touched: list[str] = []
    for node in list(graph.nodes):
        if node.op == "call_function":
            name = label_of(node.target)
            node.target = _guard(kind, site, node.target, name, node.target)
            touched.append(name)
        elif node.op == "call_method":
            name = f"Tensor.{node.target}"
            node.op = "call_function"
            node.target = _guard(kind, site, name, name, _method_caller(node.target))
            touched.append(name)
        elif node.op == "call_module":
            with graph.inserting_before(node):
                submodule = graph.get_attr(node.target)
            node.op = "call_function"
            node.args = (submodule, *node.args)
            node.target = _guard(kind, site, call_submodule, f"module {node.target}",
                                 call_submodule)
    graph.lint()
    code = graph.python_code(root_module="self")
    namespace = dict(code.globals)
    exec(compile(code.src, f"<planar3d {label}>", "exec"), namespace)
    return namespace["forward"], touched


_FLAG_TYPES = (bool, int, float, str)


@cache
def _signature(base: type) -> inspect.Signature:
    return inspect.signature(base.forward)


@cache
def _flag_defaults(base: type) -> dict[str, object]:
    """forward() parameters with plain-value defaults (pre_logits=False...): traced per value."""
    signature = _signature(base)
    return {name: p.default for name, p in signature.parameters.items()
            if isinstance(p.default, _FLAG_TYPES)}


def _trace(module: nn.Module, base: type, training: bool, flags: dict) -> tuple[Callable, list]:
    record = state(module)
    site = Site(module, record.axis, record.path)
    current, mode = module.__class__, module.training
    module.__class__ = base  # trace the class's own forward
    try:
        module.training = training
        return _compile(module, KINDS[record.rewrite], site,
                        f"{record.rewrite} {record.path or 'root'}", flags)
    finally:
        module.__class__, module.training = current, mode


class _RewrittenMixin:
    """Forward of rewritten modules: the traced code for the train/eval flag and the values of
    plain-value arguments such as `pre_logits` (traced on first use of each combination)."""

    def forward(self, *args, **kwargs):
        record = state(self)
        base = original_type(self)
        bound = _signature(base).bind(self, *args, **kwargs)
        defaults = _flag_defaults(base)
        flags = {name: bound.arguments.get(name, value) for name, value in defaults.items()}
        key = (self.training, tuple(flags.items()))
        traced = record.traced
        if key not in traced:
            traced[key] = _trace(self, base, self.training, flags)[0]
        rest = {k: v for k, v in bound.arguments.items() if k != "self" and k not in flags}
        return traced[key](self, **rest)

    def _get_name(self) -> str:
        return f"Rewritten[{type_name(self)}]"

    def __deepcopy__(self, memo):
        return copy_derived(self, memo, _rewritten_again)

    def __reduce_ex__(self, protocol):
        return reduce_derived(self, protocol, _rewritten_again)


@cache
def _rewritten_class(base: type) -> type:
    return type("Rewritten" + base.__name__, (_RewrittenMixin, base), {"__module__": __name__})


def _rewritten_again(module: nn.Module) -> nn.Module:
    """A copy of a rewritten module, made as its original class: rewritten again (its code is
    traced again on first use)."""
    base = type(module)
    module.__class__ = _rewritten_class(base)
    state(module).base = base
    return module


def is_rewritten(module: nn.Module) -> bool:
    return isinstance(module, _RewrittenMixin)


def rewrite_kind(module: nn.Module) -> str | None:
    """"body" or "head" for a rewritten module (which rewrite gave it its forward), else None."""
    return state(module).rewrite if is_rewritten(module) else None


def rewrite(module: nn.Module, *, kind: str, axis: int, path: str) -> list[str]:
    """Give `module` (in place) a traced forward whose calls follow the rules of `kind` ("body",
    "head": see `table`).

    The forward is traced now for eval and train mode with the default values of plain-value
    arguments; other values are traced when first used.

    Returns:
        Names of the functional calls found in the forward.
    Raises:
        Whatever torch.fx raises when the forward cannot be traced.
    """
    base = original_type(module) if is_rewritten(module) else type(module)
    record = state(module)
    record.rewrite, record.axis, record.path = kind, axis, path
    flags = _flag_defaults(base)
    traced = {}
    touched: list[str] = []
    for training in (False, True):
        traced[(training, tuple(flags.items()))], touched = _trace(module, base, training, flags)
    module.__class__ = _rewritten_class(base)
    record.base, record.traced = base, traced
    return touched


def unrewrite(module: nn.Module) -> None:
    """Give `module` back its class's forward."""
    clear_derived(module)


def rewrite_body_forward(module: nn.Module, *, axis: int, path: str) -> list[str]:
    """Give `module` (in place) a traced forward in which 2D functional code acts per slice
    (`body`). `set_kernels` chooses how its `F.conv2d` calls convolve (default planar: per
    slice). A call with no per-slice meaning raises `NoPlanarMeaning` when it runs.

    Returns:
        Names of the functional calls that are now guarded.
    Raises:
        Exception: whatever torch.fx raises when the forward cannot be traced.
    """
    return rewrite(module, kind="body", axis=axis, path=path)


def rewrite_head_forward(module: nn.Module, *, axis: int, path: str) -> list[str]:
    """Give `module` (in place) a traced forward whose functional pooling is the head pool
    (`head`); a call with no planar meaning raises `UnsupportedModuleError` when it runs.

    Returns:
        The functional calls that now go through guards (for the conversion report).
    Raises:
        UnsupportedModuleError: if the forward cannot be traced.
    """
    try:
        return rewrite(module, kind="head", axis=axis, path=path)
    except Exception as error:
        raise UnsupportedModuleError(
            path, type(module).__name__,
            f"its forward needs rewriting (it applies 2D-only functional code to volumes) but "
            f"cannot be traced by torch.fx ({type(error).__name__}: {error})",
            f"register a converter for {type(module).__name__} (planar3d.register_converter)",
        ) from error


def set_kernels(module: nn.Module, kernels: ModeKernels) -> None:
    """Make the `F.conv2d` calls of a body-rewritten module use `kernels` (a mode's)."""
    if rewrite_kind(module) == "body":
        state(module).kernels = kernels
