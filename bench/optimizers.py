"""The training optimiser of a scheme, built the same way for every model.

torch's optimisers have up to three implementations of one update: a Python loop over the
parameter tensors (``for_loop``), multi-tensor ``foreach`` kernels, and ``fused`` kernels (one
call for all tensors). Their updates are the same arithmetic (they differ in rounding only).
Left to its defaults torch takes the loop on CPU, whose cost grows with the number of
parameter tensors rather than their size: on small models that favours models with few tensors
(an MLP's two per layer, inkan's one) over those with more (efficient-kan's and native's three).
``auto`` therefore takes the fastest implementation the optimiser and the parameters' devices
support, for every model alike: fused (Adam, AdamW, SGD), else foreach (RMSprop), else the
loop (LBFGS has only that). The implementation a run used is recorded with it
(``optimizer_impl_used``; the scheme's setting is ``optimizer_impl``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Iterable

import torch
# An optimiser's constructor imports torch._dynamo on first use (about 2 s): imported here, at
# start-up, no run's wall time or timeout pays for it.
import torch._dynamo  # noqa: F401

from bench.records import OPTIMIZER_IMPLS, TrainingSpec

_CLASSES = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "lbfgs": torch.optim.LBFGS,
}


def _settings(t: TrainingSpec) -> dict:
    if t.optimizer == "lbfgs":  # pykan's fit settings (see TrainingSpec)
        return dict(lr=t.lr, history_size=10, max_iter=20, line_search_fn="strong_wolfe",
                    tolerance_grad=1e-32, tolerance_change=1e-32)
    if t.optimizer == "sgd":
        return dict(lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return dict(lr=t.lr, weight_decay=t.weight_decay)


def _flag(cls: type, impl: str) -> dict:
    if impl == "for_loop":  # LBFGS has nothing else and no switch
        return {"foreach": False} if "foreach" in inspect.signature(cls).parameters else {}
    return {impl: True}


def build_optimizer(params: Iterable[torch.nn.Parameter], t: TrainingSpec) -> torch.optim.Optimizer:
    """The scheme's optimiser over ``params`` in the implementation ``t.optimizer_impl`` asks
    for; ``auto``: the first of :data:`bench.records.OPTIMIZER_IMPLS` that torch accepts for these
    parameters (fused kernels exist for floating-point tensors on CPU from torch 2.4 and on
    CUDA, not on every device). A forced implementation torch refuses raises its error."""
    params = list(params)
    cls = _CLASSES[t.optimizer]
    if t.optimizer_impl != "auto":  # the scheme checked that torch has it
        return cls(params, **_settings(t), **_flag(cls, t.optimizer_impl))
    for impl in OPTIMIZER_IMPLS[t.optimizer]:
        try:
            return cls(params, **_settings(t), **_flag(cls, impl))
        except (RuntimeError, ValueError):  # e.g. fused kernels not built for this device
            continue
    raise AssertionError("the for_loop implementation is always accepted")


def implementation(optimizer: torch.optim.Optimizer) -> str:
    """The implementation ``optimizer`` runs: fused, foreach or for_loop."""
    defaults = optimizer.defaults
    if defaults.get("fused"):
        return "fused"
    if defaults.get("foreach"):
        return "foreach"
    if "foreach" in defaults and defaults["foreach"] is None:  # torch's own choice, per step
        tensors = [p for group in optimizer.param_groups for p in group["params"]]
        choose = getattr(importlib.import_module("torch.optim.optimizer"), "_default_to_fused_or_foreach", None)
        if choose is not None and choose(tensors, differentiable=False, use_fused=False)[1]:
            return "foreach"
    return "for_loop"
