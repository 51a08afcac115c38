"""What one run is: its fully resolved configuration, hashed into its key.

Everything that changes what a run does is a field here, interventions included (a coefficient
shock, a probe cadence), so a shocked run and its control never share a key. ``pair_key`` leaves
out the model and the interventions: it joins the runs that must be compared with each other (a
KAN and its matched MLP on the same data, scheme and seed; a shocked run and its control).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.spec import ModelSpec

#: bump when the meaning of a stored result changes, so old runs are not reused
KEY_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSpec(_Strict):
    """How a dataset is divided. ``test_size`` is ignored where an official test split exists."""

    test_size: float = Field(0.2, gt=0, lt=1)
    val_size: float = Field(0.2, gt=0, lt=1, description="fraction of the training part")
    seed: int = 0
    scale: Literal["standard", "none"] = "standard"


INIT_FORMS = ("default", "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform",
              "normal(<std>)")
_NORMAL_INIT = re.compile(r"normal\(\s*([0-9.eE+-]+)\s*\)")


def parse_init(text: str) -> tuple[str, float | None]:
    """``(name, std)`` of an initialisation: ``default``, ``kaiming_normal``,
    ``kaiming_uniform``, ``xavier_normal``, ``xavier_uniform`` (std None) or ``normal(<std>)``
    with a finite positive std, e.g. "normal(0.1)" -> ("normal", 0.1). Names are exact (lower
    case); whitespace around the text and inside the parentheses is ignored."""
    if isinstance(text, str):
        stripped = text.strip()
        if stripped in INIT_FORMS[:-1]:
            return stripped, None
        match = _NORMAL_INIT.fullmatch(stripped)
        if match:
            try:
                std = float(match.group(1))
            except ValueError:
                std = math.nan
            if math.isfinite(std) and std > 0:
                return "normal", std
    raise ValueError(f"unknown initialisation {text!r}; expected one of {', '.join(INIT_FORMS)} "
                     f"(std a finite positive number, e.g. normal(0.1))")


class ScheduleSpec(_Strict):
    """The learning rate over epochs: ``constant``; ``step`` (times ``gamma`` every
    ``step_epochs``); ``exponential`` (times ``gamma`` every epoch); ``cosine`` (to ``min_lr`` at
    the last epoch); ``plateau`` (times ``factor`` after ``patience`` epochs without a better
    validation metric)."""

    kind: Literal["constant", "step", "exponential", "cosine", "plateau"] = "constant"
    step_epochs: int = Field(10, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step, exponential: decay factor")
    min_lr: float = Field(0.0, ge=0, description="cosine: the last epoch's learning rate")
    patience: int = Field(5, ge=1, description="plateau: epochs without improvement")
    factor: float = Field(0.1, gt=0, lt=1, description="plateau: decay factor")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data


class RegularizationSpec(_Strict):
    """The adapter's own regulariser added to the training loss: ``weight`` x (the sum of its
    terms, each weighted by the field of its name). efficient-kan (and native) weigh ``l1`` and
    ``entropy``; pykan also ``coef`` and ``coefdiff`` (its ``fit``'s ``lamb_*``). A non-zero
    term the model's adapter does not have is a suite error."""

    weight: float = Field(gt=0)
    l1: float = Field(1.0, ge=0)
    entropy: float = Field(1.0, ge=0)
    coef: float = Field(0.0, ge=0, description="pykan: mean |coef| per edge")
    coefdiff: float = Field(0.0, ge=0, description="pykan: mean |neighbouring coef difference|")

    #: the weighted terms (every field but ``weight``)
    TERMS: ClassVar[tuple[str, ...]] = ("l1", "entropy", "coef", "coefdiff")

    def terms(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.TERMS}

    def identity(self) -> dict[str, Any]:
        """Terms added after keys were first stored (``coef``, ``coefdiff``) only when set."""
        data = self.model_dump(mode="json")
        for name in ("coef", "coefdiff"):
            if data[name] == 0:
                del data[name]
        return data


class GridUpdateSpec(_Strict):
    """Refit spline grids to the data during training, as pykan's ``fit`` does by default
    (``update_grid=True``, ``grid_update_num=10``, ``stop_grid_update_step=50``): at the start
    of every ``every``-th epoch among the first ``until`` epochs of each grid stage (from the
    first epoch, and again after each grid refinement), every spline layer's knots move to
    the training data and its coefficients are refitted (the adapter's ``update_grid``).
    Models whose adapter has no grid (an MLP) are unaffected."""

    every: int = Field(5, ge=1, description="epochs between updates")
    until: int = Field(50, ge=1, description="epochs from the start of a grid stage")


class TrainingSpec(_Strict):
    """One training scheme. Every model of a comparison is trained with the same scheme.

    ``rmsprop`` is torch's RMSprop with its defaults (alpha 0.99, no momentum). ``lbfgs`` trains
    in full batch (``batch_size`` is not used): each epoch is one LBFGS step over the whole
    training split with pykan's ``fit`` settings (``history_size=10``, strong-Wolfe line
    search, up to 20 inner iterations, gradient and change tolerances 1e-32).
    """

    optimizer: Literal["adam", "adamw", "sgd", "rmsprop", "lbfgs"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(64, ge=1)
    select: Literal["best_val", "last"] = Field(
        "best_val", description="epoch whose test metric is reported: best on validation, or last"
    )
    patience: int | None = Field(None, ge=1, description="early stopping on validation (epochs)")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm")
    init: str = Field("default", description="initialisation applied after the adapter builds "
                      "the model: " + ", ".join(INIT_FORMS))
    schedule: ScheduleSpec = Field(ScheduleSpec(), description="learning-rate schedule")
    regularization: RegularizationSpec | None = Field(
        None, description="the adapter's own regulariser, weighted, added to the loss")
    grid_update: GridUpdateSpec | None = Field(
        None, description="refit spline grids to the training data early in each grid stage")
    divergence_bound: float | None = Field(
        None, gt=1, description="a training loss above this many times the first epoch's "
        "mean ends the run as diverged (null: only NaN/inf does)")
    optimizer_impl: Literal["auto", "fused", "foreach", "for_loop"] = Field(
        "auto", description="torch's implementation of the update (same arithmetic, different "
        "speed): auto takes the fastest the optimizer and device support, for every model "
        "alike (see bench/optimizers.py); the one used is recorded per run")

    @field_validator("init")
    @classmethod
    def _known_init(cls, init: str) -> str:
        parse_init(init)
        return init

    @model_validator(mode="after")
    def _lbfgs_settings(self) -> TrainingSpec:
        if self.optimizer == "lbfgs" and (self.weight_decay or self.grad_clip is not None):
            raise ValueError("lbfgs takes no weight_decay or grad_clip (torch's LBFGS has "
                             "neither); leave them out or use another optimizer")
        if self.optimizer_impl != "auto" and self.optimizer_impl not in OPTIMIZER_IMPLS[self.optimizer]:
            raise ValueError(f"optimizer {self.optimizer} has no {self.optimizer_impl} "
                             f"implementation (it has: {', '.join(OPTIMIZER_IMPLS[self.optimizer])}; "
                             f"or auto)")
        return self

    def identity(self) -> dict[str, Any]:
        """The fields a run's key hashes: the fields added after keys were first stored
        (:data:`KEYED_WHEN_SET`) only when they differ from their defaults, so a scheme that
        does not use them keeps the key it always had."""
        data = self.model_dump(mode="json")
        defaults = TrainingSpec().model_dump(mode="json")
        for name in KEYED_WHEN_SET:
            if data[name] == defaults[name]:
                del data[name]
        if self.regularization is not None:
            data["regularization"] = self.regularization.identity()
        return data


#: TrainingSpec fields added after run keys were first stored
KEYED_WHEN_SET = ("init", "schedule", "divergence_bound", "regularization", "grid_update",
                  "optimizer_impl")


#: the implementations of each optimizer's update that torch offers (fused and foreach kernels
#: where its constructor takes them; the per-tensor loop always), fastest first; fused kernels
#: also need a device that has them (CPU from torch 2.4, CUDA): see bench/optimizers.py
OPTIMIZER_IMPLS = {
    "adam": ("fused", "foreach", "for_loop"),
    "adamw": ("fused", "foreach", "for_loop"),
    "sgd": ("fused", "foreach", "for_loop"),
    "rmsprop": ("foreach", "for_loop"),
    "lbfgs": ("for_loop",),
}


class ProbeSpec(_Strict):
    """How often internal statistics are recorded: every ``every`` optimisation steps into the
    per-step series, or (None) once per epoch into the epoch curves."""

    every: int | None = Field(None, ge=1, description="steps between probes; null: once per epoch")


class ShockSpec(_Strict):
    """Gaussian noise added in place to learned tensors once, at a fraction of the training
    steps: theta <- theta + eps, eps ~ N(0, sigma^2) (``relative``: sigma times each tensor's
    own standard deviation). The noise depends only on the run's seed."""

    at: float = Field(gt=0, lt=1, description="fraction of the planned training steps")
    sigma: float = Field(gt=0)
    scale: Literal["absolute", "relative"] = "absolute"
    target: Literal["coefficients", "all"] = Field(
        "coefficients", description="the adapter's coefficient tensors, or every trainable tensor"
    )

    @property
    def label(self) -> str:
        """Short and readable, e.g. "shock sigma=1.5 absolute at 0.5"."""
        target = "" if self.target == "coefficients" else ", all tensors"
        return f"shock sigma={self.sigma:g} {self.scale} at {self.at:g}{target}"


class Interventions(_Strict):
    """What a run does besides plain training. The defaults are plain training: a run with
    default interventions hashes exactly as runs did before interventions existed."""

    probes: ProbeSpec = ProbeSpec()
    shock: ShockSpec | None = None

    def identity(self) -> dict[str, Any]:
        """The non-default settings (empty for plain training)."""
        return self.model_dump(mode="json", exclude_defaults=True)


#: fields left out of ``pair_key``: what is compared (the model) and what was done to it
_MODEL_FIELDS = frozenset({"model", "adapter", "family", "arch", "params", "budget"})


class RunSpec(_Strict):
    """Everything that determines one run's result (and nothing that does not). Pickles, and is
    all a worker needs (with a data folder) to run it: see :func:`bench.runner.run_one`."""

    suite: str
    dataset: str
    dataset_label: str
    dataset_options: dict[str, Any]
    split: SplitSpec
    model: str
    adapter: str
    family: str
    arch: ModelSpec
    params: int
    budget: dict[str, Any] | None
    scheme: str
    training: TrainingSpec
    seed: int
    device: str
    interventions: Interventions = Interventions()
    #: the planned data's content hash (bench.data_identity): not part of the key; a stored run
    #: is reused only when the data it trained on has this hash
    data_hash: str | None = None

    def identity(self) -> dict[str, Any]:
        """The configuration the key hashes: the suite name is left out (renaming a suite must
        not redo runs), the device type is kept (results differ), interventions only when set."""
        data = self.model_dump(mode="json", exclude={"suite", "interventions", "data_hash"})
        data["training"] = self.training.identity()
        if not data["arch"]["grid_schedule"]:  # added after keys were first stored
            del data["arch"]["grid_schedule"]
        data["device"] = self.device.split(":", 1)[0]
        data["key_version"] = KEY_VERSION
        interventions = self.interventions.identity()
        if interventions:
            data["interventions"] = interventions
        return data

    @property
    def key(self) -> str:
        return _digest(self.identity())

    @property
    def pair_key(self) -> str:
        """The key without the model and the interventions: equal for the runs one comparison
        pairs (every model and every intervention on the same data, split, scheme and seed)."""
        data = {k: v for k, v in self.identity().items()
                if k not in _MODEL_FIELDS and k != "interventions"}
        return _digest({**data, "pair": True})

    @property
    def title(self) -> str:
        scheme = "" if self.scheme == "default" else f" [{self.scheme}]"
        shock = self.interventions.shock
        shocked = "" if shock is None else f" [{shock.label}]"
        return f"{self.dataset_label} / {self.model}{scheme}{shocked} / seed {self.seed}"

    def config_json(self) -> str:
        """The stored configuration: every field plus the key."""
        return json.dumps({**self.model_dump(mode="json"), "key": self.key}, sort_keys=True)


def _digest(data: dict[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
