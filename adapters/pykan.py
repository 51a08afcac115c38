"""pykan (the reference KAN of Liu et al., ``kan.MultKAN``) behind the adapter interface.

pykan is imported lazily: it pulls in sympy, matplotlib and pandas (about 2 s), and listing
adapters must stay cheap.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from torch import nn

from adapters.base import (
    Adapter,
    AdapterError,
    AdapterUnavailableError,
    ModelSpec,
    isolated_rng,
    named_targets,
    package_version,
)

# Base functions pykan resolves by name itself; other names become torch modules (pykan
# accepts any callable as ``base_fun``).
_PYKAN_BASE_FUNS = frozenset({"silu", "identity", "zero"})


def _import_multkan() -> type[nn.Module]:
    try:
        from kan.MultKAN import MultKAN
    except Exception as exc:  # pykan can fail on its heavy deps too (matplotlib, sympy)
        raise AdapterUnavailableError(
            f"pykan cannot be imported ({type(exc).__name__}: {exc}); install it with "
            "'pip install pykan'"
        ) from exc
    return MultKAN


class PykanNet(nn.Module):
    """Thin wrapper so that ``model(x)`` and ``model.to(device, dtype)`` behave as usual.

    ``MultKAN.to`` takes a device only (``to(dtype=...)`` or ``to(device, dtype)`` fail), so the
    wrapper moves the wrapped model with ``nn.Module``'s own machinery and then re-syncs the
    ``device`` attributes pykan keeps for bookkeeping.
    """

    def __init__(self, kan: nn.Module) -> None:
        super().__init__()
        self.kan = kan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.kan(x)
        # MultKAN.forward keeps the last batch (cache_data, still attached to the caller's
        # graph when x requires grad; acts). Dropping them frees that memory and keeps the
        # model deep-copyable (a non-leaf tensor attribute makes copy.deepcopy raise).
        self.kan.cache_data = None
        self.kan.acts = None
        return y

    def _apply(self, fn: Any, recurse: bool = True) -> PykanNet:
        super()._apply(fn, recurse)
        device = self.kan.act_fun[0].coef.device
        self.kan.device = device
        for layer in [*self.kan.act_fun, *self.kan.symbolic_fun]:
            layer.device = device
        return self


class PykanAdapter(Adapter):
    """pykan's ``MultKAN``, contained so that it behaves like every other adapter.

    Containment decisions:

    * **No files.** pykan's constructor defaults to ``auto_save=True`` with
      ``ckpt_path='./model'`` (it creates the folder, writes ``history.txt`` and a checkpoint).
      We pass ``auto_save=False`` and a ``ckpt_path`` inside a temporary directory that is
      deleted as soon as the model exists. pykan methods that still write are never called
      here: ``refine``, ``prune_node``, ``prune_input`` (hence ``prune``) build a new model with
      a hard-coded ``auto_save=True`` whose next ``log_history`` writes to ``ckpt_path`` (with
      our removed path that fails loudly instead of littering the cwd); ``saveckpt``/``copy``
      write checkpoints, ``plot`` writes ``./figures`` and ``fit(save_fig=True)`` ``./video``.
    * **No global RNG changes.** The constructor reseeds ``torch``, ``numpy`` and ``random``; we
      build inside :func:`isolated_rng` and pass the same seed (mod 2**32, numpy's limit) to
      pykan, so the model depends on ``seed`` only and the caller's streams are restored.
    * **Speed mode without side effects.** ``model.speed()`` in 0.2.8 only sets
      ``symbolic_enabled=False``, ``save_act=False`` and ``auto_save=False``; we pass all three
      to the constructor instead (no ``torch.compile``).
    * **Only function-affecting trainable parameters.** Per layer pykan trains ``coef``
      (in, out, G+k), ``scale_base`` and ``scale_sp`` (in, out); ``grid`` and ``mask`` are
      frozen by pykan. The symbolic branch's ``affine`` (out, in, 4) is trainable in pykan but
      unused with ``symbolic_enabled=False`` (its ``mask`` is zero anyway), so we freeze it.
      ``node_scale/node_bias/subnode_scale/subnode_bias`` are used in every forward (identity
      at init) but pykan leaves them frozen (``affine_trainable=False``); we keep that default,
      and option ``affine_trainable=True`` makes all four trainable (then they count).

    pykan's forward stores the last batch on the model (``cache_data``, ``acts``); the wrapper
    drops both after each forward (see :class:`PykanNet`). pykan's ``update_grid_from_samples``
    recomputes them itself, so nothing here needs them.

    Options: ``noise_scale`` (float >= 0, pykan default 0.3: spline-coefficient noise at init),
    ``affine_trainable`` (bool, default False).
    """

    name = "pykan"
    family = "kan"
    option_keys = frozenset({"noise_scale", "affine_trainable"})

    # -- availability and provenance -------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        try:
            _import_multkan()
        except AdapterUnavailableError as exc:
            return str(exc)
        return None

    def provenance(self, model: nn.Module | None = None) -> dict[str, str]:
        return {"provider": "pykan", "version": package_version("pykan") or "unknown"}

    # -- the model spec --------------------------------------------------------------------
    def check_spec(self, spec: ModelSpec) -> None:
        """Every grid, order (k = 1..5) and range of a ModelSpec works in pykan; the base
        function is a name pykan resolves itself or one of the MLP's activations."""
        from adapters.mlp import ACTIVATIONS

        self._options(spec)
        self.check_choice("activation", spec.activation, _PYKAN_BASE_FUNS | set(ACTIVATIONS))

    def _options(self, spec: ModelSpec) -> tuple[float, bool]:
        self.check_options(spec)
        noise_scale = spec.options.get("noise_scale", 0.3)
        if isinstance(noise_scale, bool) or not isinstance(noise_scale, (int, float)):
            raise AdapterError(f"pykan: option noise_scale must be a number, got {noise_scale!r}")
        if noise_scale < 0:
            raise AdapterError(f"pykan: option noise_scale must be >= 0, got {noise_scale}")
        affine = spec.options.get("affine_trainable", False)
        if not isinstance(affine, bool):
            raise AdapterError(f"pykan: option affine_trainable must be a bool, got {affine!r}")
        return float(noise_scale), affine

    @staticmethod
    def _base_fun(spec: ModelSpec) -> str | nn.Module:
        if spec.activation in _PYKAN_BASE_FUNS:
            return spec.activation
        from adapters.mlp import ACTIVATIONS

        return ACTIVATIONS[spec.activation]()

    # -- building and counting -------------------------------------------------------------
    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        self.check_spec(spec)
        noise_scale, affine_trainable = self._options(spec)
        base_fun = self._base_fun(spec)
        MultKAN = _import_multkan()
        # pykan rewrites the width list in place ([n] -> [n, 0]): hand it a fresh one.
        width = list(spec.widths(in_dim, out_dim))
        with isolated_rng(seed), tempfile.TemporaryDirectory(prefix="kanbench-pykan-") as ckpt:
            kan = MultKAN(
                width=width,
                grid=spec.grid,
                k=spec.k,
                noise_scale=noise_scale,
                base_fun=base_fun,
                symbolic_enabled=False,
                affine_trainable=affine_trainable,
                grid_range=list(spec.grid_range),
                seed=seed % 2**32,
                save_act=False,
                auto_save=False,
                ckpt_path=ckpt,
                device=torch.device(device),
            )
        # The symbolic branch is skipped in forward: its affine tensors cannot change the output.
        for p in kan.symbolic_fun.parameters():
            p.requires_grad_(False)
        return PykanNet(kan).to(device=device, dtype=dtype)

    def param_count(self, spec: ModelSpec, in_dim: int, out_dim: int) -> int:
        """Sum over layers of ``n_in*n_out*(G+k+2)`` (coef + scale_base + scale_sp),
        plus ``4*n_out`` per layer (node/subnode scale and bias) with ``affine_trainable``."""
        self.check_spec(spec)
        _, affine_trainable = self._options(spec)
        widths = spec.widths(in_dim, out_dim)
        per_edge = spec.grid + spec.k + 2
        total = 0
        for a, b in zip(widths[:-1], widths[1:]):
            total += a * b * per_edge + (4 * b if affine_trainable else 0)
        return total

    # -- instrumentation -------------------------------------------------------------------
    @staticmethod
    def _kan(model: nn.Module) -> nn.Module:
        kan = model.kan if isinstance(model, PykanNet) else model
        if not hasattr(kan, "act_fun"):
            raise AdapterError(f"pykan: expected a model built by this adapter, got {type(model)}")
        return kan

    def spline_coefficients(self, model):
        """The ``coef`` tensor (in, out, G+k) of each KANLayer, input layer first."""
        return [layer.coef for layer in self._kan(model).act_fun]

    def init_targets(self, model):
        """Per KANLayer: ``scale_base`` (in, out) is the base branch's per-edge weight (pykan has
        no other), fans in and out; ``coef`` (in, out, G+k) the spline coefficients, fans
        ``in*(G+k)`` and ``out*(G+k)`` as for efficient-kan's (out, in, G+k) tensor (by role,
        not by layout); ``scale_sp`` (in, out) the spline scaler. Per MultKAN layer the node
        and subnode affine maps: ``node_scale_l``, ``subnode_scale_l`` and ``node_bias_l``,
        ``subnode_bias_l`` (frozen unless option affine_trainable)."""
        kan = self._kan(model)
        specs: list[tuple] = []
        for layer in kan.act_fun:
            n_in, n_out, n_bases = layer.coef.shape
            specs += [
                ("base_weight", layer.scale_base, n_in, n_out),
                ("spline_coefficients", layer.coef, n_in * n_bases, n_out * n_bases),
                ("spline_scaler", layer.scale_sp, None, None),
            ]
        for l in range(len(kan.act_fun)):
            specs += [
                ("node_scale", kan.node_scale[l], None, None),
                ("node_scale", kan.subnode_scale[l], None, None),
                ("bias", kan.node_bias[l], None, None),
                ("bias", kan.subnode_bias[l], None, None),
            ]
        return named_targets(model, specs)

    def has_regularization(self) -> bool:
        return False

    def regularization(self, model, l1=1.0, entropy=1.0):
        """None: pykan's ``get_reg`` is not available in this form.

        Its default metric ('edge_forward_spline_n') uses per-edge activation statistics that
        the forward records only with ``save_act=True`` (the slow path); with ``save_act=False``
        ``reg`` silently reduces to the coefficient terms, which are 0 at pykan's ``fit``
        defaults (``lamb_coef=lamb_coefdiff=0``). This hook also gets no batch to record them.
        """
        return None

    def update_grid(self, model, x):
        """pykan's ``update_grid_from_samples`` (grid_eps=0.02 blend of quantiles and uniform)."""
        with torch.no_grad():
            self._kan(model).update_grid_from_samples(x)
        return True
