"""Model implementations behind one interface, reached through a registry.

    import adapters
    adapters.names()                 # ["efficient_kan", "inkan", "mlp", "native", "pykan", ...]
    a = adapters.get("native")       # one instance per process: it keeps no per-model state
    spec = adapters.ModelSpec(hidden=[8])
    a.check_spec(spec)               # AdapterError for a value this adapter cannot honour
    model = a.build(spec, in_dim=30, out_dim=2, seed=0, device="cpu")
    a.provenance(model)              # {"provider": ..., "version": ..., "compiled_kernel": ...}
    a.flops(spec, 30, 2)             # Flops(nominal=..., impl=..., ...) per sample, no model built

Third-party adapters register with :func:`register`, through the ``kanbench.adapters``
entry-point group (each entry point names an :class:`Adapter` subclass or instance) or by import
path in a suite (``adapter: "mypkg.models:MyAdapter"``); a broken one is listed by
:func:`broken` with the reason.

Names are resolved lazily: importing ``adapters.spec`` (the torch-free :class:`ModelSpec`, which
the run record uses) does not import torch or any implementation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Adapter": "adapters.base",
    "AdapterError": "adapters.base",
    "AdapterUnavailableError": "adapters.base",
    "UnknownAdapterError": "adapters.base",
    "BrokenPluginError": "adapters.registry",
    "InitTarget": "adapters.base",
    "Flops": "adapters.flops",
    "isolated_rng": "adapters.base",
    "ModelSpec": "adapters.spec",
    "broken": "adapters.registry",
    "get": "adapters.registry",
    "names": "adapters.registry",
    "register": "adapters.registry",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from adapters.base import (
        Adapter,
        AdapterError,
        AdapterUnavailableError,
        InitTarget,
        UnknownAdapterError,
        isolated_rng,
    )
    from adapters.flops import Flops
    from adapters.registry import BrokenPluginError, broken, get, names, register
    from adapters.spec import ModelSpec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'adapters' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
