"""Name -> adapter registry: built-in adapters, user registrations, entry-point plugins
(group ``kanbench.adapters``) and plugins named by import path. A plugin that fails to load or
breaks the adapter contract on a probe model is kept aside with the reason (:func:`broken`)
instead of taking the others down."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from collections.abc import Callable
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
    "rational_kan": "adapters.rational_kan:RationalKANAdapter",
}

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

_registered: dict[str, Adapter] = {}
_broken: dict[str, str] = {}  # plugin (entry point name or import path) -> why it is unusable
_plugins_loaded = False


class BrokenPluginError(AdapterError):
    """A third-party adapter that cannot be used: it failed to load or broke the adapter
    contract on a probe model (:func:`adapters.contract.contract_problem`)."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"adapter plugin '{name}' is broken: {reason}")


def is_import_path(name: str) -> bool:
    """Whether ``name`` names an adapter by import path, ``package.module:Class``."""
    return bool(_IMPORT_PATH.match(name))


def register(adapter: Adapter | type[Adapter], *, replace: bool = False,
             name: str | None = None) -> Adapter:
    """Add an adapter (class or instance) under its ``name`` (or ``name``: a plugin's entry
    point or import path); returns the instance."""
    instance = adapter() if isinstance(adapter, type) else adapter
    if not isinstance(instance, Adapter):
        raise AdapterError(f"{adapter!r} is not an adapters.Adapter")
    own = getattr(instance, "name", None)
    if not isinstance(own, str) or not own:
        raise AdapterError(f"{type(instance).__name__} has no 'name'")
    if getattr(instance, "family", None) not in ("kan", "mlp"):
        raise AdapterError(f"adapter '{own}': family must be 'kan' or 'mlp'")
    key = name or own
    if not replace and (key in _registered or key in _BUILTIN):
        raise AdapterError(f"an adapter named '{key}' is already registered")
    _registered[key] = instance
    return instance


def _load_plugin(key: str, load: Callable[[], object]) -> None:
    """Load, register and probe one plugin; a failure marks it broken (never raises)."""
    from adapters.contract import contract_problem

    try:
        instance = register(load(), name=key)
    except Exception as exc:  # a broken plugin must not take the others down
        _broken[key] = f"{type(exc).__name__}: {exc}"
        log.warning("adapter plugin %s cannot be loaded: %s", key, _broken[key])
        return
    problem = contract_problem(instance)
    if problem is not None:
        del _registered[key]
        _broken[key] = problem
        log.warning("adapter plugin %s breaks the adapter contract: %s", key, problem)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _registered and ep.name not in _BUILTIN:
            _load_plugin(ep.name, ep.load)


def names() -> list[str]:
    """Every usable adapter name, sorted (broken plugins: :func:`broken`)."""
    _load_plugins()
    return sorted(set(_BUILTIN) | set(_registered))


def broken() -> dict[str, str]:
    """The plugins that cannot be used, with the reason: entry points, and the import paths
    tried so far."""
    _load_plugins()
    return dict(_broken)


def get(name: str) -> Adapter:
    """The adapter registered as ``name``, or named by an import path (``package.module:Class``,
    loaded and probed on first use); :class:`BrokenPluginError` for a broken plugin, and an
    unknown name lists the known ones."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        module_name, cls_name = _BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        _registered[name] = cls()
        return _registered[name]
    _load_plugins()
    if name not in _registered and name not in _broken and is_import_path(name):
        _load_plugin(name, lambda: pkgutil.resolve_name(name))
    if name in _registered:
        return _registered[name]
    if name in _broken:
        raise BrokenPluginError(name, _broken[name])
    raise UnknownAdapterError(
        f"unknown adapter '{name}'; known adapters: {', '.join(names())} (or a plugin's import "
        f"path, package.module:Class)"
    )
