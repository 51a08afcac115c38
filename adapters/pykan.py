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
from adapters.flops import (
    Flops,
    LayerWork,
    activation_flops,
    cox_de_boor_terms,
    flops_of,
    kanbefair_kan_flops,
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
    ``device`` attributes pykan keeps for bookkeeping. ``build_kwargs`` are the constructor
    arguments the model was built with (a grid refinement builds its successor from them).
    """

    def __init__(self, kan: nn.Module, build_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.kan = kan
        self.build_kwargs = build_kwargs
        #: training forwards record pykan's activation statistics (its regulariser reads them)
        self.record_activations = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # pykan's save_act path (std over the batch per edge) only where the regulariser needs
        # it: training forwards of a regularised run; evaluation stays on the fast path
        self.kan.save_act = self.record_activations and self.training
        y = self.kan(x)
        # the regulariser reads acts_scale_spline of this forward: every other record goes
        _drop_batch_records(self.kan, keep=("acts_scale_spline", "acts_scale",
                                            "subnode_actscale"))
        return y

    def _apply(self, fn: Any, recurse: bool = True) -> PykanNet:
        super()._apply(fn, recurse)
        _sync_device(self.kan)
        return self


#: what MultKAN.forward leaves on the model that holds a batch: ``cache_data`` and ``acts``
#: always (the input, still attached to the caller's graph when it requires grad), the rest on
#: its save_act path (per-edge values, and the std statistics its regulariser reads)
_BATCH_RECORDS = ("cache_data", "acts", "spline_preacts", "spline_postacts",
                  "spline_postsplines", "acts_premult", "edge_actscale", "acts_scale",
                  "acts_scale_spline", "subnode_actscale")


def _drop_batch_records(kan: nn.Module, keep: tuple[str, ...] = ()) -> None:
    """Drop the batch records (:data:`_BATCH_RECORDS`) but ``keep``: it frees that memory and
    keeps the model deep-copyable (a non-leaf tensor attribute makes copy.deepcopy raise)."""
    for name in _BATCH_RECORDS:
        if name not in keep:
            setattr(kan, name, None if name in ("cache_data", "acts") else [])


def _sync_device(kan: nn.Module) -> None:
    device = kan.act_fun[0].coef.device
    kan.device = device
    for layer in [*kan.act_fun, *kan.symbolic_fun]:
        layer.device = device


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
    spec_fields = frozenset(ModelSpec.model_fields)  # grid_schedule included: extend_grid

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
        build_kwargs = dict(
            width=list(spec.widths(in_dim, out_dim)), grid=spec.grid, k=spec.k,
            noise_scale=noise_scale, base_fun=base_fun, affine_trainable=affine_trainable,
            grid_range=list(spec.grid_range), seed=seed,
        )
        return PykanNet(self._multkan(build_kwargs, device), build_kwargs).to(
            device=device, dtype=dtype)

    @staticmethod
    def _multkan(build_kwargs: dict[str, Any], device: str | torch.device) -> nn.Module:
        """A contained MultKAN (see the class docstring) from :meth:`build`'s arguments."""
        MultKAN = _import_multkan()
        kwargs = dict(build_kwargs)
        kwargs["width"] = list(kwargs["width"])  # pykan rewrites it in place ([n] -> [n, 0])
        seed = kwargs.pop("seed")
        with isolated_rng(seed), tempfile.TemporaryDirectory(prefix="kanbench-pykan-") as ckpt:
            kan = MultKAN(
                **kwargs,
                symbolic_enabled=False,
                seed=seed % 2**32,
                save_act=False,
                auto_save=False,
                ckpt_path=ckpt,
                device=torch.device(device),
            )
        # The symbolic branch is skipped in forward: its affine tensors cannot change the output.
        for p in kan.symbolic_fun.parameters():
            p.requires_grad_(False)
        return kan

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

    def flops(self, spec: ModelSpec, in_dim: int, out_dim: int) -> Flops:
        """``MultKAN.forward`` (symbolic branch off) per layer ``a -> b``, ``n = G + k``:

        * per input (``on_input``): the base function (``FLOPS[act]``; pykan's "zero" is
          ``x * 0.``, 1) and the basis by Cox-de Boor (``B_batch``), once per input (not per
          edge): ``2(G + 2k)`` comparisons for degree 0 (their product is boolean: free), then
          per basis at each degree ``d = 1..k`` 7 ops (as efficient-kan) plus a ``nan_to_num``,
          ``8 * cox_de_boor_terms``; the knot differences are per batch;
        * the ``einsum`` of bases and coefficients: ``2abn`` (matmul, a ``bmm``);
        * per edge (after): ``scale_base * base + scale_sp * spline`` (3) and ``mask * y`` (1),
          ``4ab``; the sum over inputs ``(a - 1)b``;
        * per output node (after): ``+ 0.`` (the disabled symbolic branch), the subnode and
          node affine maps (``scale * x + bias``, 2 each): ``5b``. They run whether or not
          ``affine_trainable``."""
        self.check_spec(spec)
        g, k = spec.grid, spec.k
        base = 1 if spec.activation == "zero" else activation_flops(spec.activation)
        per_input = base + 2 * (g + 2 * k) + 8 * cox_de_boor_terms(g, k)
        widths = spec.widths(in_dim, out_dim)
        layers = [LayerWork(matmul=2 * a * b * (g + k), on_input=a * per_input,
                            after=4 * a * b + (a - 1) * b + 5 * b)
                  for a, b in zip(widths[:-1], widths[1:])]
        return flops_of(layers, nominal=kanbefair_kan_flops(widths, g, k, spec.activation))

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

    regularization_terms = frozenset({"l1", "entropy", "coef", "coefdiff"})

    def enable_regularization(self, model):
        if not isinstance(model, PykanNet):
            raise AdapterError(f"pykan: expected a model built by this adapter, got {type(model)}")
        model.record_activations = True

    def regularization(self, model, l1=1.0, entropy=1.0, coef=0.0, coefdiff=0.0):
        """pykan's own ``reg`` with the metric its ``fit`` uses by default
        ('edge_forward_spline_n'), on the statistics of the last training forward: per layer,
        ``l1`` x the sum of each edge's spline-output std over input std (+0.1), plus
        ``entropy`` x the row and column entropies of those scales; plus ``coef`` x the mean
        |coef| and ``coefdiff`` x the mean |difference of neighbouring coefs| per edge. These
        are ``fit``'s ``lamb_l1``, ``lamb_entropy``, ``lamb_coef`` and ``lamb_coefdiff``
        (its defaults: 1, 2, 0, 0); the weight outside is its ``lamb``. Needs
        :meth:`enable_regularization` before the forward."""
        kan = self._kan(model)
        if (l1 or entropy) and len(kan.acts_scale_spline) != len(kan.act_fun):
            raise AdapterError("pykan: its regulariser reads the activation statistics of the "
                               "last training forward; call enable_regularization(model) first")
        reg = kan.get_reg("edge_forward_spline_n", l1, entropy, coef, coefdiff)
        kan.acts_scale_spline = []  # attached to the graph: read once, then dropped
        return reg

    def extend_grid(self, model, new_grid, x=None):
        """pykan's own refinement (what ``MultKAN.refine`` does, without its checkpoint
        files): a model with ``new_grid`` intervals is built from the same arguments, and
        ``initialize_from_another_model`` interpolates each layer's grid from the old one and
        fits its coefficients by least squares to the old splines at the samples ``x``.
        Returns the largest per-edge activation deviation on ``x``."""
        if x is None:
            raise AdapterError("pykan: a grid refinement fits on samples; pass x")
        if not isinstance(model, PykanNet):
            raise AdapterError(f"pykan: expected a model built by this adapter, got {type(model)}")
        old = model.kan
        coef = old.act_fun[0].coef
        model.build_kwargs = {**model.build_kwargs, "grid": new_grid}
        new = self._multkan(model.build_kwargs, coef.device)
        nn.Module.to(new, dtype=coef.dtype)  # MultKAN.to takes a device only
        with torch.no_grad():
            old.save_act = new.save_act = True
            new.initialize_from_another_model(old, x)
            old(x)
            new(x)
            deviation = max(float((a - b).abs().max()) for a, b in
                            zip(old.spline_postacts, new.spline_postacts))
            new.save_act = False
        _drop_batch_records(new)
        model.kan = new
        return deviation

    def update_grid(self, model, x):
        """pykan's ``update_grid_from_samples`` (grid_eps=0.02 blend of quantiles and uniform)."""
        with torch.no_grad():
            self._kan(model).update_grid_from_samples(x)
        return True

    #: pykan's per-layer activation statistics (MultKAN attribute -> the statistic of its mean)
    _ACTIVATION_SCALES = {
        "subnode_actscale": "subnode_act_mean",
        "edge_actscale": "edge_act_mean",
        "acts_scale": "act_scale_mean",
        "acts_scale_spline": "act_scale_spline_mean",
    }

    def activation_statistics(self, model, x):
        """The means of pykan's activation scales on ``x`` (at least 2 rows: they are stds over
        the batch), from one ``save_act=True`` forward of the wrapped MultKAN without grad:
        ``subnode_act_mean`` (``subnode_actscale``: std of each subnode before its affine map),
        ``edge_act_mean`` (``edge_actscale``: std of each edge's output), ``act_scale_mean``
        (``acts_scale``: that std over the edge input's std + 0.1) and
        ``act_scale_spline_mean`` (``acts_scale_spline``: the same for the spline part, what
        the regulariser reads; equal to the former with the symbolic branch off).

        Each is the mean of every element of every layer's tensor (``torch.cat`` of the
        flattened tensors, then ``mean``): the study's "means of the lists over all layers'
        tensors" reads as one mean over all edges (nodes), so a wide layer weighs more than a
        narrow one; a mean of per-layer means would weigh layers equally instead.

        No side effects: parameters, ``training``, ``save_act`` and the global RNG (the forward
        draws nothing) are as before; the four statistics lists are restored to what the last
        training forward left (the regulariser may still read them), and the batch-sized
        lists the forward leaves are cleared, so the model holds no batch and deep-copies."""
        kan = self._kan(model)
        if x.ndim != 2 or len(x) < 2:
            raise AdapterError(f"pykan: activation statistics are stds over a batch; need a "
                               f"(B >= 2, in) input, got shape {tuple(x.shape)}")
        coef = kan.act_fun[0].coef
        missing = object()
        before = {name: getattr(kan, name, missing) for name in self._ACTIVATION_SCALES}
        save_act = kan.save_act
        try:
            kan.save_act = True
            with torch.no_grad():
                kan(x.to(device=coef.device, dtype=coef.dtype))
            return {stat: torch.cat([t.flatten() for t in getattr(kan, name)]).mean().item()
                    for name, stat in self._ACTIVATION_SCALES.items()}
        finally:
            kan.save_act = save_act
            _drop_batch_records(kan, keep=tuple(self._ACTIVATION_SCALES))  # restored below
            for name, value in before.items():
                if value is missing:
                    if hasattr(kan, name):
                        delattr(kan, name)
                else:
                    setattr(kan, name, value)
