"""Model implementations behind one interface, reached through a registry.

    import adapters
    adapters.names()                 # ["efficient_kan", "inkan", "mlp", "native", "pykan", ...]
    a = adapters.get("native")
    model = a.build(adapters.ModelSpec(hidden=[8]), in_dim=30, out_dim=2, seed=0, device="cpu")

Third-party adapters register with :func:`register` or through the ``kanbench.adapters``
entry-point group (each entry point names an :class:`Adapter` subclass or instance).
"""

from __future__ import annotations

from adapters.base import (
    Adapter,
    AdapterError,
    AdapterUnavailableError,
    ModelSpec,
    UnknownAdapterError,
    isolated_rng,
)
from adapters.registry import get, names, register

__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterUnavailableError",
    "ModelSpec",
    "UnknownAdapterError",
    "get",
    "isolated_rng",
    "names",
    "register",
]
