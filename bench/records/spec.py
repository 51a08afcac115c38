"""What one run is: its fully resolved configuration, hashed into its key.

Everything that changes what a run does is a field here, interventions included (a coefficient
shock, a probe cadence), so a shocked run and its control never share a key. ``pair_key`` leaves
out the model and the interventions: it joins the runs that must be compared with each other (a
KAN and its matched MLP on the same data, scheme and seed; a shocked run and its control).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class TrainingSpec(_Strict):
    """One training scheme. Every model of a comparison is trained with the same scheme."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
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
        return f"{self.dataset_label} / {self.model}{scheme} / seed {self.seed}"

    def config_json(self) -> str:
        """The stored configuration: every field plus the key."""
        return json.dumps({**self.model_dump(mode="json"), "key": self.key}, sort_keys=True)


def _digest(data: dict[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
