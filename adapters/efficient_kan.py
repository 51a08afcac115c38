"""efficient-kan (Blealtan's ``KANLinear``) behind the adapter interface.

efficient-kan is not on PyPI. The original package ``efficient_kan`` is used when it is
importable; otherwise the layer comes from PyPI ``ikan`` (``ikan/KAN.py``), which carries the
same ``KANLinear`` code with smaller default scales. Either way the layer is built with
efficient-kan's own defaults passed explicitly, so both providers build the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn

from adapters.base import (
    Adapter,
    AdapterError,
    AdapterUnavailableError,
    ModelSpec,
    bspline_edge_targets,
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

INSTALL_HINT = (
    "install the original with 'pip install git+https://github.com/Blealtan/efficient-kan' "
    "or the PyPI fallback with 'pip install ikan'"
)

# efficient-kan's KANLinear defaults (ikan's differ: scale_noise=0.01, scale_base=0.3,
# scale_spline=0.1); grid size, order, activation and range come from the ModelSpec.
EFFICIENT_KAN_DEFAULTS: dict[str, object] = {
    "scale_noise": 0.1,
    "scale_base": 1.0,
    "scale_spline": 1.0,
    "enable_standalone_scale_spline": True,
    "grid_eps": 0.02,
}


@dataclass(frozen=True)
class _Provider:
    name: str
    version: str
    layer_cls: type[nn.Module]


def _load_ikan_kan() -> ModuleType:
    """ikan's ``KAN.py`` module, without executing the ``ikan`` package ``__init__`` (see
    :func:`adapters.ikan_families.load_ikan_file`: it changes the working directory, prints,
    and pulls in triton and timm; on a CPU-only torch without triton it fails outright)."""
    from adapters.ikan_families import load_ikan_file

    return load_ikan_file("KAN")


class EfficientKANNet(nn.Module):
    """One ``KANLinear`` per consecutive width pair; ``provider`` and ``provider_version`` name
    the package whose layer built it."""

    def __init__(self, layers: list[nn.Module], provider: str, provider_version: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.provider = provider
        self.provider_version = provider_version

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            # KANLinear reshapes with .view, which needs contiguous input.
            x = layer(x.contiguous())
        return x


class EfficientKANAdapter(Adapter):
    """efficient-kan's ``KANLinear`` stacked into a network.

    Containment decisions:

    * The provider (original ``efficient_kan`` first, else ``ikan``) is chosen once per adapter
      instance and cached; each model records the provider that built it, and
      :meth:`provenance` names it.
    * ``ikan``'s package import changes the process cwd and prints; only its ``KAN.py`` is
      loaded (see :func:`_load_ikan_kan`).
    * Every layer gets efficient-kan's defaults explicitly (:data:`EFFICIENT_KAN_DEFAULTS`),
      never the provider's own defaults.
    * Initialisation draws from the global torch RNG, so it runs inside :func:`isolated_rng`.

    Trainable per layer: ``base_weight`` (out, in), ``spline_weight`` (out, in, G+k) and
    ``spline_scaler`` (out, in); ``grid`` is a buffer.
    """

    name = "efficient_kan"
    family = "kan"

    def __init__(self) -> None:
        self._provider: _Provider | None = None
        self._failure: str | None = None

    # -- availability and provenance -------------------------------------------------------
    def _resolve(self) -> _Provider:
        # Decided once: a run must not switch providers half way (resolution is idempotent,
        # so a race between threads only repeats it).
        if self._provider is None and self._failure is None:
            errors = []
            try:
                from efficient_kan import KANLinear

                version = package_version("efficient-kan") or package_version("efficient_kan")
                self._provider = _Provider("efficient_kan", version or "unknown", KANLinear)
            except Exception as exc:
                errors.append(f"efficient_kan: {type(exc).__name__}: {exc}")
            if self._provider is None:
                try:
                    layer_cls = _load_ikan_kan().KANLinear
                    version = package_version("ikan") or "unknown"
                    self._provider = _Provider("ikan", version, layer_cls)
                except Exception as exc:
                    errors.append(f"ikan: {type(exc).__name__}: {exc}")
            if self._provider is None:
                self._failure = (
                    "neither the original efficient-kan nor ikan can be imported ("
                    + "; ".join(errors)
                    + f"); {INSTALL_HINT}"
                )
        if self._provider is None:
            raise AdapterUnavailableError(f"adapter '{self.name}' cannot run: {self._failure}")
        return self._provider

    def unavailable_reason(self) -> str | None:
        try:
            self._resolve()
        except AdapterUnavailableError:
            return self._failure
        return None

    def provenance(self, model: nn.Module | None = None) -> dict[str, str]:
        """The provider that built ``model``; without one, the provider this adapter uses."""
        if model is not None:
            net = self._net(model)
            return {"provider": net.provider, "version": net.provider_version}
        try:
            provider = self._resolve()
        except AdapterUnavailableError:
            return {"provider": "unavailable", "version": "unknown"}
        return {"provider": provider.name, "version": provider.version}

    # -- building and counting -------------------------------------------------------------
    def check_spec(self, spec: ModelSpec) -> None:
        from adapters.mlp import ACTIVATIONS

        self.check_options(spec)
        self.check_choice("activation", spec.activation, ACTIVATIONS)

    def build(self, spec, in_dim, out_dim, seed, device="cpu", dtype=torch.float32):
        from adapters.mlp import ACTIVATIONS

        self.check_spec(spec)
        activation = ACTIVATIONS[spec.activation]
        provider = self._resolve()
        layer_cls = provider.layer_cls
        widths = spec.widths(in_dim, out_dim)
        with isolated_rng(seed):
            layers = [
                layer_cls(
                    a,
                    b,
                    grid_size=spec.grid,
                    spline_order=spec.k,
                    base_activation=activation,
                    grid_range=list(spec.grid_range),
                    **EFFICIENT_KAN_DEFAULTS,
                )
                for a, b in zip(widths[:-1], widths[1:])
            ]
        net = EfficientKANNet(layers, provider.name, provider.version)
        return net.to(device=device, dtype=dtype)

    def param_count(self, spec: ModelSpec, in_dim: int, out_dim: int) -> int:
        """Sum over layers of ``n_in*n_out*(G+k+2)``: spline_weight (G+k per edge) plus
        base_weight and spline_scaler (one each per edge)."""
        self.check_spec(spec)
        widths = spec.widths(in_dim, out_dim)
        return sum(a * b * (spec.grid + spec.k + 2) for a, b in zip(widths[:-1], widths[1:]))

    def flops(self, spec: ModelSpec, in_dim: int, out_dim: int) -> Flops:
        """``KANLinear.forward`` per layer ``a -> b`` (G intervals, order k, ``n = G + k``):

        * per input (``on_input``), the base activation ``FLOPS[act]`` and the basis by
          Cox-de Boor (``b_splines``): ``2(G + 2k)`` comparisons for the degree-0 indicators
          (their ``&`` and cast are free), then 7 ops per basis at each degree ``d = 1..k``
          (two subtractions, two divisions, two multiplications, one add; the knot differences
          in the denominators depend on the grid alone: per batch), ``7 * cox_de_boor_terms``;
        * two ``F.linear``: the base ``2ab`` and the spline ``2abn`` (matmul);
        * ``base_output + spline_output``: ``b`` (after).

        ``scaled_spline_weight`` (``spline_weight * spline_scaler``) is computed once per forward
        whatever the batch: not per sample. Same code in the original efficient_kan and in
        ikan's copy."""
        self.check_spec(spec)
        g, k = spec.grid, spec.k
        per_input = activation_flops(spec.activation) + 2 * (g + 2 * k) + 7 * cox_de_boor_terms(g, k)
        widths = spec.widths(in_dim, out_dim)
        layers = [LayerWork(matmul=2 * a * b * (g + k + 1), on_input=a * per_input, after=b)
                  for a, b in zip(widths[:-1], widths[1:])]
        return flops_of(layers, nominal=kanbefair_kan_flops(widths, g, k, spec.activation))

    # -- instrumentation -------------------------------------------------------------------
    @staticmethod
    def _net(model: nn.Module) -> EfficientKANNet:
        if not isinstance(model, EfficientKANNet):
            raise AdapterError(f"efficient_kan: expected an EfficientKANNet, got {type(model)}")
        return model

    def _layers(self, model: nn.Module) -> list[nn.Module]:
        return list(self._net(model).layers)

    def spline_coefficients(self, model):
        """Each layer's raw ``spline_weight`` (out, in, G+k).

        The effective coefficients are ``spline_weight * spline_scaler[..., None]``; the raw
        tensor is returned because it is the parameter a shock can perturb in place.
        """
        return [layer.spline_weight for layer in self._layers(model)]

    def init_targets(self, model):
        """Per layer ``base_weight`` (out, in), ``spline_weight`` (out, in, G+k) and
        ``spline_scaler`` (out, in); see :func:`bspline_edge_targets`."""
        specs = []
        for layer in self._layers(model):
            scaler = getattr(layer, "spline_scaler", None)  # absent without a standalone scaler
            specs += bspline_edge_targets(layer.base_weight, layer.spline_weight, scaler)
        return named_targets(model, specs)

    regularization_terms = frozenset({"l1", "entropy"})

    def regularization(self, model, l1=1.0, entropy=1.0):
        """efficient-kan's ``regularization_loss()`` summed over layers: the L1 of the mean
        absolute spline weight per edge plus the entropy of its distribution, weighted ``l1``
        and ``entropy`` (efficient-kan's defaults: 1, 1)."""
        return sum(layer.regularization_loss(l1, entropy) for layer in self._layers(model))

    def update_grid(self, model, x):
        """Each layer refits its grid to the activations reaching it, then passes them on."""
        with torch.no_grad():
            for layer in self._layers(model):
                x = x.contiguous()
                layer.update_grid(x)
                x = layer(x)
        return True
