"""Name -> adapter registry: built-in adapters, user registrations and entry-point plugins."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from adapters.base import Adapter, AdapterError, UnknownAdapterError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kanbench.adapters"

# Built-in adapters by name -> "module:Class". Modules are imported on first use so that
# listing names never imports a heavy implementation (pykan pulls in sympy and matplotlib).
_BUILTIN = {
    "mlp": "adapters.mlp:MLPAdapter",
    "pykan": "adapters.pykan:PykanAdapter",
    "efficient_kan": "adapters.efficient_kan:EfficientKANAdapter",
    "native": "adapters.native:NativeAdapter",
    "inkan": "adapters.inkan:InkanAdapter",
    "fastkan": "adapters.fastkan:FastKANAdapter",
    "chebyshev_kan": "adapters.ikan_families:ChebyshevKANAdapter",
    "fourier_kan": "adapters.ikan_families:FourierKANAdapter",
    "jacobi_kan": "adapters.ikan_families:JacobiKANAdapter",
    "taylor_kan": "adapters.ikan_families:TaylorKANAdapter",
    "wavelet_kan": "adapters.ikan_families:WaveletKANAdapter",
}

_registered: dict[str, Adapter] = {}
_plugins_loaded = False


def register(adapter: Adapter | type[Adapter], *, replace: bool = False) -> Adapter:
    """Add an adapter (class or instance) under its ``name``; returns the instance."""
    instance = adapter() if isinstance(adapter, type) else adapter
    if not isinstance(instance, Adapter):
        raise AdapterError(f"{adapter!r} is not an adapters.Adapter")
    name = getattr(instance, "name", None)
    if not isinstance(name, str) or not name:
        raise AdapterError(f"{type(instance).__name__} has no 'name'")
    if getattr(instance, "family", None) not in ("kan", "mlp"):
        raise AdapterError(f"adapter '{name}': family must be 'kan' or 'mlp'")
    if not replace and (name in _registered or name in _BUILTIN):
        raise AdapterError(f"an adapter named '{name}' is already registered")
    _registered[name] = instance
    return instance


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _registered or ep.name in _BUILTIN:
            continue
        try:
            obj = ep.load()
            instance = register(obj)
            if instance.name != ep.name:
                log.warning("plugin entry point %s registers adapter %s", ep.name, instance.name)
        except Exception as exc:  # a broken plugin must not take the built-ins down
            log.warning("could not load adapter plugin %s (%s): %s", ep.name, ep.value, exc)


def names() -> list[str]:
    """Every known adapter name, sorted."""
    _load_plugins()
    return sorted(set(_BUILTIN) | set(_registered))


def get(name: str) -> Adapter:
    """The adapter registered as ``name``; an unknown name lists the known ones."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        module_name, cls_name = _BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        _registered[name] = cls()
        return _registered[name]
    _load_plugins()
    if name in _registered:
        return _registered[name]
    raise UnknownAdapterError(
        f"unknown adapter '{name}'; known adapters: {', '.join(names())}"
    )
