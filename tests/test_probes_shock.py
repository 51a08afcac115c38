"""Per-step probes of every parameter, and coefficient shocks planned with their controls."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import adapters
from bench import suite as suite_mod
from bench.callbacks import PARAM_STATISTICS, Callback, FitState
from bench.cli import main
from bench.datasets import cached_dataset
from bench.plan import build_plan
from bench.report import write_report
from bench.runner import execute, run_one
from bench.store import Store
from bench.train import fit

ADAPTERS = ["mlp", "native", "efficient_kan", "pykan", "inkan"]
TINY = """
seeds: [0]
training: {{epochs: 3, batch_size: 25, lr: 0.01}}
probes: {{every: {every}}}
datasets: [{{name: toy_sin_exp, options: {{n_train: 100, n_test: 50}}}}]
models: [{{name: m, adapter: {adapter}, hidden: [3], grid: 4, k: 3}}]
"""


def _plan(write_suite, text):
    path = write_suite(text)
    return build_plan(suite_mod.load(path), path)


def _tiny(write_suite, adapter, every=1):
    text = TINY.format(adapter=adapter, every=every)
    if adapter == "mlp":
        text = text.replace(", grid: 4, k: 3", "")
    return _plan(write_suite, text).runs[0]


def _available(adapter):
    reason = adapters.get(adapter).unavailable_reason()
    if reason:
        pytest.skip(reason)


class _FinalModel(Callback):
    """Keeps a copy of the parameters after the last epoch (what the last probe saw)."""

    def wants_step(self, step):
        return False

    def on_epoch_end(self, state: FitState) -> None:
        self.params = {n: p.detach().clone() for n, p in state.model.named_parameters()
                       if p.requires_grad}


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_probes_record_every_named_parameter_of_each_adapter(write_suite, adapter):
    _available(adapter)
    spec = _tiny(write_suite, adapter)
    data = cached_dataset(spec.dataset, spec.split, None, spec.dataset_options)
    final = _FinalModel()
    result = fit(spec, data, adapters.get(adapter), callbacks=[final])
    assert result.status == "ok", result.error
    series = pd.DataFrame(result.series)
    steps = 3 * math.ceil(len(data.x_train) / 25)  # 3 epochs in batches of 25
    assert sorted(series[series.name == "train_loss"].step) == list(range(1, steps + 1))
    names = set(series.name)
    assert {"train_loss", "val_loss", "test_loss", "lr", "grad_norm", "coef_mean"} <= names
    expected = {f"param/{n}/{s}" for n in final.params for s in PARAM_STATISTICS}
    recorded = {n for n in names if n.startswith("param/")}
    assert recorded == expected  # every trainable tensor, nothing else
    last = series[series.step == steps].set_index("name").value
    for n, p in final.params.items():  # the last probe saw the final parameters
        theta = p.float()
        assert last[f"param/{n}/abs_mean"] == pytest.approx(theta.abs().mean().item(), rel=1e-5)
        assert last[f"param/{n}/rms"] == pytest.approx(theta.pow(2).mean().sqrt().item(), rel=1e-5)
        assert last[f"param/{n}/abs_max"] == pytest.approx(theta.abs().max().item(), rel=1e-5)
    ratios = series[series.name.str.endswith("/update_ratio")].value
    assert (ratios.dropna() >= 0).all() and (ratios.dropna() > 0).any()
    grads = series[(series.name == "grad_norm")].value
    assert (grads > 0).all()
    if adapter == "pykan":  # pykan's own activation statistics
        assert {"subnode_act_mean", "edge_act_mean", "act_scale_mean",
                "act_scale_spline_mean"} <= names


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_probes_do_not_change_training(write_suite, adapter):
    _available(adapter)
    probed = _tiny(write_suite, adapter, every=1)
    plain = probed.model_copy(update={"interventions": probed.interventions.model_copy(
        update={"probes": probed.interventions.probes.model_copy(update={"every": None})})})
    a, b = run_one(probed), run_one(plain)
    assert a.status == b.status == "ok"
    assert [r["train_loss"] for r in a.curves] == [r["train_loss"] for r in b.curves]
    assert (a.val_metric, a.test_metric) == (b.val_metric, b.test_metric)


SHOCKED = """
seeds: [0, 1]
training: {epochs: 4, batch_size: 25, lr: 0.01}
probes: {every: 1}
shock:
  - {at: 0.5, sigma: [0.1, 1.5]}
  - {at: 0.5, sigma: 0.5, scale: relative}
datasets: [{name: toy_sin_exp, options: {n_train: 100, n_test: 50}}]
models:
  - {name: kan, adapter: native, hidden: [3], grid: 4}
  - {name: mlp, adapter: mlp, hidden: [null], budget: {match: kan, tolerance: 0.2}}
"""


def test_each_plain_run_gets_one_control_and_a_twin_per_shock(write_suite):
    plan = _plan(write_suite, SHOCKED)
    assert len(plan.runs) == 2 * 2 * (1 + 3)
    assert len({r.key for r in plan.runs}) == len(plan.runs)
    controls = [r for r in plan.runs if r.interventions.shock is None]
    shocked = [r for r in plan.runs if r.interventions.shock is not None]
    assert len(controls) == 4 and len(shocked) == 12
    for run in shocked:  # exactly one control: same pair, same model, no shock
        matches = [c for c in controls if c.pair_key == run.pair_key and c.model == run.model]
        assert len(matches) == 1
    sigmas = sorted((r.interventions.shock.sigma, r.interventions.shock.scale)
                    for r in shocked if r.model == "kan" and r.seed == 0)
    assert sigmas == [(0.1, "absolute"), (0.5, "relative"), (1.5, "absolute")]
    assert "shock sigma=1.5 absolute at 0.5" in next(
        r.title for r in shocked if r.interventions.shock.sigma == 1.5)


@pytest.mark.parametrize("shock, key, message", [
    ("{at: 0.5, sigma: [0.1, -1]}", "shock", "every sigma must be a finite number above 0"),
    ("{at: 1.5, sigma: 0.1}", "shock", "less than 1"),
    ("{at: 0.5, sigma: [0.1, 0.1]}", "shock", "lists a value twice"),
])
def test_a_bad_shock_is_a_suite_error(write_suite, capsys, shock, key, message):
    path = write_suite(TINY.format(adapter="mlp", every=1).replace(", grid: 4, k: 3", "")
                       + f"shock: {shock}\n")
    assert main(["budget", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {key}" in err and message in err, err


def test_a_shock_without_step_probes_is_a_suite_error(write_suite, capsys):
    path = write_suite(SHOCKED.replace("probes: {every: 1}\n", ""))
    assert main(["budget", str(path)]) == 2
    assert "set probes: {every: N}" in capsys.readouterr().err


def test_a_shock_suite_exports_and_reports_resilience_against_controls(write_suite, tmp_path):
    plan = _plan(write_suite, SHOCKED.replace("seeds: [0, 1]", "seeds: [0]"))
    store_path = tmp_path / "shock.sqlite"
    with Store(store_path) as store:
        summary = execute(plan, store)
    assert summary.ran == len(plan.runs) == 8
    out = tmp_path / "runs.csv"
    assert main(["export", str(store_path), "-o", str(out)]) == 0
    table = pd.read_csv(out)
    shocked = table[table.shock_sigma.notna()]
    controls = table[table.shock_sigma.isna()]
    assert len(shocked) == 6 and len(controls) == 2
    assert controls.shock_control_key.isna().all()
    for row in shocked.itertuples():
        control = controls[controls.run_key == row.shock_control_key]
        assert len(control) == 1 and control.model.iloc[0] == row.model
        assert control.pair_key.iloc[0] == row.pair_key
        assert row.shock_step == 4 * 4 // 2  # 4 epochs of 80 training rows in batches of 25
        assert row.shock_test_delta == pytest.approx(
            row.test_metric_last - control.test_metric_last.iloc[0])
        assert row.shock_spike_ratio > 0 and not math.isnan(row.shock_pre_shock_loss)
    # a large absolute shock hurts more than a small one (same model, seed and noise draw)
    kan = shocked[shocked.model == "kan"].set_index("shock_sigma")
    assert kan.loc[1.5, "shock_peak_loss"] > kan.loc[0.1, "shock_peak_loss"]
    md, html = write_report(store_path, tmp_path / "reports")
    text = md.read_text()
    assert "## Shock resilience" in text and "sigma=1.5 absolute at 0.5" in text
    # shocked runs are compared with their controls, not ranked beside them
    main_tables = text.split("## Shock resilience")[0]
    assert "sigma=" not in main_tables


@pytest.mark.parametrize("adapter", [n for n in adapters.names()
                                     if adapters.get(n).family == "kan"])
@pytest.mark.parametrize("target", ["coefficients", "all"])
def test_a_shock_changes_exactly_the_targeted_tensors_of_every_kan(adapter, target):
    from bench.callbacks import ShockCallback
    from bench.records import RunResult, ShockSpec

    _available(adapter)
    a = adapters.get(adapter)
    model = a.build(adapters.ModelSpec(hidden=(4,), grid=5, k=3), 3, 2, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    coefs = {id(c if c._base is None else c._base) for c in a.spline_coefficients(model)}
    state = FitState(spec=None, adapter=a, model=model, optimizer=None, data=None,
                     result=RunResult(status="ok"), step=3, total_steps=6)
    cb = ShockCallback(ShockSpec(at=0.5, sigma=0.5, target=target), seed=1)
    cb.on_fit_start(state)
    cb.on_step_end(state, torch.tensor(0.0))
    for name, p in model.named_parameters():
        changed = not torch.equal(p.detach(), before[name])
        targeted = p.requires_grad and (target == "all" or id(p) in coefs)
        if adapter == "inkan" and target == "coefficients":  # its spline block only
            n_in = p.shape[1] // (5 + 3 + 1)  # packed (out, in*(G+3) + in), G = 5
            block = p.shape[1] - n_in  # the base weights are its last `in` columns
            assert not torch.equal(p[:, :block], before[name][:, :block])
            assert torch.equal(p[:, block:], before[name][:, block:])
            continue
        assert changed == targeted, (name, changed, targeted)
