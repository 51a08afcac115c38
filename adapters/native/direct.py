"""Compiled kernels called without torch.compile's per-call frame evaluation.

Every call of a ``torch.compile``'d function runs dynamo's frame evaluation and guard checks,
then the AOT runtime wrapper, before inductor's compiled code. On the small models the native
stack serves (the suites' tabular models, the [2, 5, 1] and [30, 8, 2] benchmarks) those
per-call layers are a large part of a train step: two compiled calls a step (forward and
backward), each a few kernels of tens of microseconds.

The stack's kernels are pure functions of their tensor arguments. So, for each graph dynamo
compiles, :class:`DirectCall` keeps the callable inductor returned and dynamo's record of where
each graph input comes from (an argument, or one of its sizes), and later calls whose arguments
agree in dtype, device, ``requires_grad`` and grad mode (and in every size, for a graph
specialised to its sizes) call that callable directly. Sizes and strides are still checked, by
the compiled graph's own assertions.

Safety: a graph is called directly only after one direct call returned exactly what dynamo
returned for the same arguments (same tensors, shapes, strides: dynamo may return values that
are not graph outputs, such as an input passed through, and such a graph is never called
directly); any exception in a direct call sends that graph's calls through dynamo for good;
arguments this cannot key (anything but tensors and hashable scalars), and calls under
autocast, always go through dynamo. What is computed never changes, only the path to it.
``KANBENCH_NATIVE_DIRECT=0`` turns it off.

It leans on two internals of torch: ``torch._inductor.compile_fx.compile_fx`` (inductor's own
backend; where it is missing, the kernels are compiled by plain ``torch.compile``) and the
``grapharg`` source records dynamo attaches to graph inputs (where they are missing or read
otherwise, every call goes through dynamo, as before).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

#: "0" calls every compiled kernel through dynamo
ENV_SWITCH = "KANBENCH_NATIVE_DIRECT"

#: dynamo's names for graph inputs: an argument, an item of ``*args``, or a size of either:
#: ``L['x']``, ``L['args'][3]``, ``L['grad_out'].size()[0]``
_SOURCE = re.compile(r"L\['(\w+)'\](?:\[(\d+)\])?(?:\.size\(\)\[(\d+)\])?")


def enabled() -> bool:
    """Whether compiled stack kernels may be called directly (not switched off)."""
    return os.environ.get(ENV_SWITCH, "1") not in ("0", "false", "no")


@functools.cache
def available() -> bool:
    """Whether the torch internal it compiles with is there (importing it imports inductor:
    ask only when compiling)."""
    try:
        from torch._inductor.compile_fx import compile_fx  # noqa: F401
    except ImportError:
        return False
    return True


def _source_name(node: Any) -> str | None:
    source = getattr(node.meta.get("grapharg"), "source", None)
    name = getattr(source, "name", None)
    name = name() if callable(name) else name
    return name if isinstance(name, str) else None


def _reader(name: str, params: list[str], varargs: str | None) -> Callable | None:
    """A function of the call's positional arguments returning the graph input dynamo named
    ``name``; None for a name it does not know."""
    match = _SOURCE.fullmatch(name)
    if match is None:
        return None
    arg, item, dim = match.group(1), match.group(2), match.group(3)
    if arg == varargs and item is not None:
        index = len(params) + int(item)
    elif arg in params and item is None:
        index = params.index(arg)
    else:
        return None
    if dim is None:
        return lambda args: args[index]
    d = int(dim)
    return lambda args: args[index].size(d)


def _keys(args: tuple) -> tuple[tuple, tuple] | None:
    """(key of a graph generic in sizes, the tensors' sizes): grad mode, then per argument
    its dtype, device and requires_grad (tensors) or itself (scalars). None where an argument
    is neither, or under autocast (dynamo traces its casts into the graph)."""
    if torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda"):
        return None
    meta: list = [torch.is_grad_enabled()]
    sizes = []
    for a in args:
        if isinstance(a, torch.Tensor):
            meta.append((a.dtype, a.device, a.requires_grad))
            sizes.append(a.shape)
        elif a is None or isinstance(a, (bool, int, float, str)):
            meta.append(a)
        else:
            return None
    return tuple(meta), tuple(sizes)


class DirectCall:
    """``fn`` compiled by inductor with ``options`` (dynamo given ``guard_filter_fn``), called
    directly where that is safe (module docstring). ``direct_calls`` counts the calls that
    went around dynamo."""

    def __init__(self, fn: Callable, options: dict, guard_filter_fn: Callable | None = None):
        code = fn.__code__
        self._params = list(code.co_varnames[:code.co_argcount])
        self._varargs = code.co_varnames[code.co_argcount] if code.co_flags & 0x04 else None
        self._options = options
        self._new: tuple | None = None  # what the backend saw of the graph dynamo just compiled
        self._graphs: dict = {}  # key -> (compiled, readers, single output, sizes check)
        self._refused: set = set()
        self.direct_calls = 0
        dynamo_options = {"guard_filter_fn": guard_filter_fn} if guard_filter_fn else None
        self._dynamo = torch.compile(fn, backend=self._compile, fullgraph=True, options=dynamo_options)

    def _compile(self, gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        """The backend: inductor's own, noting how each graph input is read from the call."""
        from torch._inductor.compile_fx import compile_fx

        compiled = compile_fx(gm, example_inputs, config_patches=self._options)
        readers, dynamic = [], False
        for node in gm.graph.nodes:
            if node.op != "placeholder":
                continue
            name = _source_name(node)
            reader = None if name is None else _reader(name, self._params, self._varargs)
            if reader is None:  # an input this cannot read: calls go through dynamo
                self._new = None
                return compiled
            readers.append(reader)
            dynamic = dynamic or ".size()" in name
        self._new = (compiled, tuple(readers), dynamic)
        return compiled

    def __call__(self, *args: Any) -> Any:
        keys = _keys(args)
        if keys is None:
            return self._dynamo(*args)
        generic, sizes = keys
        graph = self._graphs.get((generic, sizes)) or self._graphs.get(generic)
        if graph is not None and graph[3](sizes):
            compiled, readers, single, _ = graph
            try:
                out = compiled(*[read(args) for read in readers])
                self.direct_calls += 1
                return out[0] if single else tuple(out)
            except Exception as exc:  # e.g. strides the graph was not compiled for
                log.debug("native: a direct call failed (%s: %s); through dynamo from now on",
                          type(exc).__name__, exc)
                self._graphs = {k: g for k, g in self._graphs.items() if g is not graph}
                self._refused.update(((generic, sizes), generic))
        self._new = None
        out = self._dynamo(*args)
        new, self._new = self._new, None
        if new is not None:
            self._register(new, generic, sizes, args, out)
        return out

    def _register(self, new: tuple, generic: tuple, sizes: tuple, args: tuple, out: Any) -> None:
        """Keep the graph dynamo just compiled for direct calls if one direct call returns
        exactly what dynamo did."""
        compiled, readers, dynamic = new
        key = generic if dynamic else (generic, sizes)
        if key in self._refused:
            return
        try:
            same = _same(compiled(*[read(args) for read in readers]), out)
        except Exception:
            same = False
        if not same:
            self._refused.add(key)
            return
        single = not isinstance(out, (tuple, list))
        self._graphs[key] = (compiled, readers, single, _sizes_check(sizes, dynamic))


def _sizes_check(example: tuple, dynamic: bool) -> Callable[[tuple], bool]:
    """Whether a call's sizes may take the graph compiled for ``example``: any, for a graph
    specialised to its sizes (they are part of its key); for a graph generic in sizes, the
    same ranks and every size that differs from the example's at least 2 (dynamo compiles
    sizes 0 and 1 apart and may have assumed neither)."""
    if not dynamic:
        return lambda sizes: True

    def check(sizes: tuple) -> bool:
        if sizes == example:
            return True
        if len(sizes) != len(example):
            return False
        for now, then in zip(sizes, example):
            if len(now) != len(then) or any(a != b and a < 2 for a, b in zip(now, then)):
                return False
        return True

    return check


def _same(direct: Any, out: Any) -> bool:
    """Whether a direct call's graph outputs are exactly what dynamo returned."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if not isinstance(direct, (tuple, list)) or len(direct) != len(outs):
        return False
    for a, b in zip(direct, outs):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if (a.shape, a.dtype, a.device, a.stride()) != (b.shape, b.dtype, b.device, b.stride()):
            return False
        if not torch.equal(a, b):
            return False
    return True
