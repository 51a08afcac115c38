"""InKAN (PyPI ``inkan``): uniform cubic B-spline KAN layers, the fastest public B-spline KAN.

Its own parameterisation, not efficient-kan's: cubic splines only (``k`` must be 3), no spline
scaler, and one packed weight per layer ``(out, in*(G+3) + in)`` = ``[spline | base]``, so
``in*out*(G+4)`` parameters per layer. Initialisation is inkan's (truncated normal, std 0.1).

Options (``ModelSpec.options``):

* ``compile_basis`` - ``"auto"`` (default), ``True`` or ``False``. inkan evaluates its basis with
  ``torch.compile``; "auto" tries that and falls back to inkan's eager basis if the first
  forward fails to compile (e.g. no C++ compiler). ``model.compiled_basis`` records which one
  ran and :meth:`InkanAdapter.provenance` of the model reports it (``"unknown"`` until the
  first forward of a model built with the compiled basis).
* ``basis_mode`` (``"local"`` or ``"dense"``) and ``contraction`` (``"auto"``, ``"dense"`` or
  ``"direct"``): passed to ``inkan.KANLayer``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from adapters.base import (
    Adapter,
    AdapterError,
    AdapterUnavailableError,
    ModelSpec,
    compile_warm_up,
    isolated_rng,
    named_targets,
    package_version,
)
from adapters.flops import Flops, LayerWork, activation_flops, flops_of, kanbefair_kan_flops

log = logging.getLogger(__name__)

_DEFAULTS = {"compile_basis": "auto", "basis_mode": "local", "contraction": "auto"}
#: FLOPs of inkan's ``_piecewise_eval`` per basis value: where(u <= 2, u, 4 - u) (3),
#: clamp_min, s - 1, clamp_min (3), s*s*s (2), 1 + v(3 + v(3 - 3v)) (6), where(s <= 1, ..) (2), / 6
PIECEWISE_FLOPS = 17

_CHOICES = {
    "compile_basis": ("auto", True, False),
    "basis_mode": ("local", "dense"),
    "contraction": ("auto", "dense", "direct"),
}


class InkanNet(nn.Module):
    """inkan ``KANLayer`` s in sequence, with the compiled-basis fallback of the adapter."""

    def __init__(self, layers: list[nn.Module], compile_requested: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        #: True while the compiled basis is in use (None: not yet run)
        self.compiled_basis: bool | None = None if compile_requested else False

    def _use_eager_basis(self) -> None:
        from inkan import layer as inkan_layer

        for layer in self.layers:
            layer._basis_fn = inkan_layer._BASIS_FNS[(layer.basis_mode, False)]
        self.compiled_basis = False

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled_basis is None:  # first call with the compiled basis: may not compile
            try:
                y = self._run(x)
            except Exception as exc:  # torch.compile failures come in many types
                log.warning("inkan: compiled basis unavailable (%s); using the eager basis", exc)
                self._use_eager_basis()
                return self._run(x)
            self.compiled_basis = True
            return y
        return self._run(x)


class InkanAdapter(Adapter):
    name = "inkan"
    family = "kan"
    option_keys = frozenset(_DEFAULTS)

    def unavailable_reason(self) -> str | None:
        try:
            import inkan  # noqa: F401
        except Exception as exc:
            return f"inkan cannot be imported ({type(exc).__name__}: {exc}); pip install inkan"
        return None

    def provenance(self, model: nn.Module | None = None) -> dict[str, str]:
        """inkan's version; of a model also whether its compiled basis ran (``compiled_basis``:
        "true", "false", or "unknown" before its first forward)."""
        prov = {"provider": "inkan", "version": package_version("inkan") or "unknown"}
        if model is not None:
            if not isinstance(model, InkanNet):
                raise AdapterError(f"inkan: expected an InkanNet, got {type(model)}")
            prov["compiled_basis"] = {None: "unknown", True: "true", False: "false"}[model.compiled_basis]
        return prov

    def check_spec(self, spec: ModelSpec) -> None:
        from adapters.mlp import ACTIVATIONS

        self.check_options(spec)
        if spec.k != 3:
            raise AdapterError(
                f"adapter 'inkan': unsupported k={spec.k}; inkan supports cubic splines only (k=3)"
            )
        self.check_choice("activation", spec.activation, ACTIVATIONS)
        for key, value in spec.options.items():
            self.check_choice(f"option {key}", value, _CHOICES[key])

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        self.check_spec(spec)
        opts = {**_DEFAULTS, **spec.options}
        reason = self.unavailable_reason()
        if reason is not None:
            raise AdapterUnavailableError(f"adapter 'inkan' cannot run: {reason}")
        from inkan import KANLayer

        from adapters.mlp import ACTIVATIONS

        want = opts["compile_basis"]
        compile_requested = want is True or (want == "auto" and hasattr(torch, "compile"))
        widths = spec.widths(in_dim, out_dim)
        with isolated_rng(seed):
            layers = [
                KANLayer(
                    a,
                    b,
                    grid_size=spec.grid,
                    spline_order=3,
                    base_activation=ACTIVATIONS[spec.activation],
                    grid_range=tuple(spec.grid_range),
                    compile_basis=compile_requested,
                    basis_mode=opts["basis_mode"],
                    contraction=opts["contraction"],
                )
                for a, b in zip(widths[:-1], widths[1:])
            ]
        return InkanNet(layers, compile_requested).to(device=device, dtype=dtype)

    def warm_up(self, model, x, steps=None):
        """Compile inkan's basis (when requested) before the clock starts."""
        if model.compiled_basis is False:
            return False
        compile_warm_up(model, x)
        return True

    def param_count(self, spec, in_dim, out_dim):
        # packed weight per layer: in*(G+3) spline coefficients + in base weights per output
        self.check_spec(spec)
        widths = spec.widths(in_dim, out_dim)
        return sum(a * b * (spec.grid + 3 + 1) for a, b in zip(widths[:-1], widths[1:]))

    def flops(self, spec: ModelSpec, in_dim: int, out_dim: int) -> Flops:
        """``KANLayer._forward_1d_dense`` / ``_forward_1d_direct`` per layer ``a -> b``,
        ``n = G + 3`` (``compile_basis`` fuses the basis, same arithmetic):

        * per input (``on_input``): the base activation ``FLOPS[act]``, and the basis from
          ``t0 = (x - start) * inv_h`` (2): basis_mode "local" (and the direct contraction,
          which always evaluates locally) floors it (1; the span index is integer), forms the 4
          local positions (``t0 - span`` once, then minus each offset: 5) and evaluates the
          piecewise cubic on them (17 each, :data:`PIECEWISE_FLOPS`): 76, scattered (free) into
          the dense basis;
          basis_mode "dense" forms all ``n`` positions (``n``) and evaluates them: ``2 + 18n``;
        * contraction "dense": one ``F.linear`` of ``[basis | act(x)]`` with the packed
          weight, ``2ab(n + 1)`` (matmul); "direct": the 4 active coefficients per input
          gathered and weighted, ``4ab`` multiplies, summed over inputs and bases,
          ``(4a - 1)b`` (gather), plus the base ``F.linear`` ``2ab`` (matmul) and the final add
          ``b`` (after). "auto" is direct where ``b <= 16`` and ``n >= 32`` (inkan's rule)."""
        self.check_spec(spec)
        opts = {**_DEFAULTS, **spec.options}
        n = spec.grid + 3
        act = activation_flops(spec.activation)
        widths = spec.widths(in_dim, out_dim)
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            mode = opts["contraction"]
            direct = mode == "direct" or (mode == "auto" and b <= 16 and n >= 32)
            local = direct or opts["basis_mode"] == "local"
            basis = 2 + 1 + 1 + 4 + 4 * PIECEWISE_FLOPS if local else 2 + n + n * PIECEWISE_FLOPS
            if direct:
                layers.append(LayerWork(matmul=2 * a * b, gather=4 * a * b + (4 * a - 1) * b,
                                        on_input=a * (act + basis), after=b))
            else:
                layers.append(LayerWork(matmul=2 * a * b * (n + 1), on_input=a * (act + basis)))
        return flops_of(layers, nominal=kanbefair_kan_flops(widths, spec.grid, 3, spec.activation))

    def spline_coefficients(self, model):
        """Each layer's spline block ``weight[:, :in*(G+3)]`` of its packed weight
        ``(out, in*(G+3) + in)`` (inkan's only parameter: spline coefficients first, the ``in``
        base weights per output last), as a view written in place by a shock: the coefficients
        of every B-spline KAN, without the base weights."""
        return [t.tensor for t in self.init_targets(model) if t.role == "spline_coefficients"]

    def init_targets(self, model):
        """Each layer's packed weight ``(out, in*(G+3) + in)`` as two targets, views of it: the
        spline block ``[:, :in*(G+3)]`` (fans ``in*(G+3)`` and ``out*(G+3)``, as every B-spline
        KAN's coefficients) and the base block ``[:, in*(G+3):]`` (fans in and out). inkan has
        no spline scaler and no bias."""
        if not isinstance(model, InkanNet):
            raise AdapterError(f"inkan: expected an InkanNet, got {type(model)}")
        specs = []
        for layer in model.layers:
            n_in, n_out, n_bases = layer.in_features, layer.out_features, layer.n_bases
            n = n_in * n_bases
            if getattr(layer, "dim", 1) != 1 or layer.weight.shape != (n_out, n + n_in):
                raise AdapterError(f"inkan: unexpected packed weight {tuple(layer.weight.shape)}")
            with torch.no_grad():  # plain views, to be written in place
                specs += [
                    ("spline_coefficients", layer.weight[:, :n], n, n_out * n_bases),
                    ("base_weight", layer.weight[:, n:], n_in, n_out),
                ]
        return named_targets(model, specs)
