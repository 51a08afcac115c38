"""Named initialisations, applied after an adapter builds its model (README "Initialisations").

    name, std = parse_init("normal(0.1)")        # ("normal", 0.1); ValueError for anything else
    apply_init(adapter, model, "xavier_uniform", seed=run_seed)

``default`` leaves the model as the adapter built it. Every other initialisation writes exactly
the tensors ``adapter.init_targets(model)`` declares, by role:

* ``weight``, ``base_weight``, ``spline_coefficients``: drawn from the initialisation's
  distribution with the target's fans (:func:`init_scale`), torch.nn.init's formulas with its
  defaults for every adapter, role and activation: kaiming ``a=0``, ``mode="fan_in"``,
  nonlinearity "leaky_relu" (gain sqrt(2)); xavier gain 1; ``normal(std)`` ignores the fans;
* ``spline_scaler`` and ``node_scale``: set to 1, so the drawn coefficients are the effective
  ones and one initialisation gives every B-spline KAN the same distribution of functions;
* ``bias``: set to 0.

Values come from a private ``torch.Generator`` seeded with :func:`init_seed` (derived from the
run's seed, so it is not the batch-order stream seeded with the seed itself), drawn on the CPU
in float64 in the order of the targets and then copied to each tensor's device and dtype: CPU
and CUDA models get the same values, and no global random state is touched.

Torch is imported on first use: :func:`parse_init` runs without it.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

from bench.records.spec import parse_init

__all__ = ["INIT_NAMES", "apply_init", "check_init", "init_scale", "init_seed", "parse_init"]

if TYPE_CHECKING:
    import torch

    from adapters.base import Adapter

#: the initialisation names; "normal" is written ``normal(<std>)`` (parsed by
#: :func:`bench.records.spec.parse_init`, which the suite's validation uses too)
INIT_NAMES = ("default", "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "normal")
#: value of each filled role (the drawn roles are adapters.base.INIT_DRAWN_ROLES)
_FILL = {"spline_scaler": 1.0, "node_scale": 1.0, "bias": 0.0}
#: torch.nn.init.calculate_gain("leaky_relu", 0): kaiming's default gain
_KAIMING_GAIN = math.sqrt(2.0)


def init_scale(name: str, std: float | None, fan_in: int, fan_out: int) -> tuple[str, float]:
    """``("normal", standard deviation)`` or ``("uniform", bound)`` of a drawn target: the
    formulas of torch.nn.init with its default arguments."""
    if name == "kaiming_normal":
        return "normal", _KAIMING_GAIN / math.sqrt(fan_in)
    if name == "kaiming_uniform":
        return "uniform", _KAIMING_GAIN * math.sqrt(3.0 / fan_in)
    if name == "xavier_normal":
        return "normal", math.sqrt(2.0 / (fan_in + fan_out))
    if name == "xavier_uniform":
        return "uniform", math.sqrt(6.0 / (fan_in + fan_out))
    if name == "normal" and std is not None:
        return "normal", float(std)
    raise ValueError(f"no distribution for initialisation {name!r}")


def init_seed(seed: int) -> int:
    """The seed of the initialisation's generator: 63 bits of sha256("kanbench-init:<seed>")."""
    digest = hashlib.sha256(f"kanbench-init:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _supports_init(adapter: Adapter) -> bool:
    from adapters.base import Adapter

    return type(adapter).init_targets is not Adapter.init_targets


def _unsupported(adapter: Adapter, init: str) -> Exception:
    from adapters.base import AdapterError

    return AdapterError(
        f"adapter '{adapter.name}' declares no tensors to initialise (Adapter.init_targets), "
        f"so it runs only with init 'default', not {init!r}"
    )


def check_init(adapter: Adapter, init: str) -> None:
    """Validate ``init`` for ``adapter`` without a model: ValueError for an unknown
    initialisation, AdapterError when it is not ``default`` and the adapter does not implement
    ``init_targets``."""
    name, _ = parse_init(init)
    if name != "default" and not _supports_init(adapter):
        raise _unsupported(adapter, init)


def apply_init(adapter: Adapter, model: torch.nn.Module, init: str, seed: int) -> None:
    """Initialise ``model`` (built by ``adapter``) in place with ``init``, from ``seed`` only.

    ``default`` does nothing. Otherwise exactly the targets of ``adapter.init_targets(model)``
    are written (see the module docstring); an adapter that declares none raises AdapterError.
    """
    name, std = parse_init(init)
    if name == "default":
        return
    import torch

    from adapters.base import INIT_DRAWN_ROLES, AdapterError

    targets = adapter.init_targets(model)
    if not targets:
        raise _unsupported(adapter, init)
    params = dict(model.named_parameters())
    for t in targets:
        param = params.get(t.name)
        base = t.tensor if t.tensor._base is None else t.tensor._base
        if param is None or base is not param:
            raise AdapterError(
                f"adapter '{adapter.name}': init target {t.name} ({t.role}) is not a parameter "
                "of the model or a view of one"
            )
    generator = torch.Generator(device="cpu").manual_seed(init_seed(seed))
    with torch.no_grad():
        for t in targets:
            if t.role in INIT_DRAWN_ROLES:
                kind, scale = init_scale(name, std, t.fan_in, t.fan_out)
                shape = tuple(t.tensor.shape)
                if kind == "normal":
                    values = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
                else:
                    values = torch.rand(shape, generator=generator, dtype=torch.float64)
                    values = values * (2 * scale) - scale
                t.tensor.copy_(values.to(device=t.tensor.device, dtype=t.tensor.dtype))
            else:
                t.tensor.fill_(_FILL[t.role])
