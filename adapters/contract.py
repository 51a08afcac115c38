"""The check a third-party adapter passes before a suite uses it: what the built-in adapters'
tests check, on one small model (built-ins are covered by the test suite and not probed)."""

from __future__ import annotations

import torch

from adapters.base import Adapter
from adapters.spec import ModelSpec

#: the probe: a [3, 4, 2] model on a batch of 5
PROBE_SPEC = ModelSpec(hidden=(4,))
PROBE_IN, PROBE_OUT, PROBE_BATCH = 3, 2, 5


def contract_problem(adapter: Adapter) -> str | None:
    """Why ``adapter`` breaks the adapter contract on a small probe model, or None: it must build
    a model mapping ``(5, 3)`` to a finite ``(5, 2)``, count the built model's trainable
    parameters analytically, and expose coefficient tensors. An adapter whose library is
    missing is not broken (it is unavailable, and says why): it is not probed."""
    try:
        if adapter.unavailable_reason() is not None:
            return None
        adapter.check_spec(PROBE_SPEC)
        model = adapter.build(PROBE_SPEC, PROBE_IN, PROBE_OUT, seed=0)
        x = torch.rand(PROBE_BATCH, PROBE_IN, generator=torch.Generator().manual_seed(0)) * 2 - 1
        with torch.no_grad():
            y = model(x)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (PROBE_BATCH, PROBE_OUT):
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            return (f"a [{PROBE_IN}, 4, {PROBE_OUT}] model maps a ({PROBE_BATCH}, {PROBE_IN}) "
                    f"batch to {shape}, expected ({PROBE_BATCH}, {PROBE_OUT})")
        if not bool(torch.isfinite(y).all()):
            return "a probe batch gives non-finite outputs"
        counted, built = adapter.param_count(PROBE_SPEC, PROBE_IN, PROBE_OUT), adapter.count_params(model)
        if counted != built:
            return (f"param_count says {counted} parameters, the built [{PROBE_IN}, 4, "
                    f"{PROBE_OUT}] model has {built} trainable ones")
        if not adapter.spline_coefficients(model):
            return "spline_coefficients gives no tensors (probes and shocks need some)"
    except Exception as exc:  # a plugin may fail in any way: that is the report
        return f"{type(exc).__name__}: {exc}"
    return None
