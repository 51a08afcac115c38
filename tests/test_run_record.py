"""The run record as the contract: records at the bottom, the open schema and its migration,
interventions in the key, self-contained runs."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import adapters
from bench import suite as suite_mod
from bench.callbacks import Callback, FitState, ShockCallback
from bench.cli import main
from bench.plan import build_plan
from bench.records import Interventions, ProbeSpec, RunResult, ShockSpec
from bench.records.result import HEADLINE_FIELDS
from bench.report import write_report
from bench.runner import execute, run_one
from bench.store import _RUN_COLUMN_NAMES as RUN_COLUMN_NAMES
from bench.store import SCHEMA_VERSION, Store
from helpers import schema2_store

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]

SMALL = """
name: record
seeds: [0, 1]
training: {epochs: 4, batch_size: 32, lr: 0.01}
datasets: [iris]
models:
  - {name: kan, adapter: native, hidden: [3], grid: 4}
  - {name: mlp, adapter: mlp, budget: {match: kan, tolerance: 0.2}}
"""


def _plan(write_suite, text=SMALL):
    path = write_suite(text)
    return build_plan(suite_mod.load(path), path)


# -- records at the bottom of the house ----------------------------------------------------

def test_store_and_reports_import_no_training_code_datasets_adapters_or_torch():
    code = textwrap.dedent("""
        import sys
        import bench.records, bench.store, bench.report, bench.report.render, bench.report.tables
        heavy = sorted(m for m in sys.modules
                       if m in ("torch", "bench.train", "bench.plan", "bench.runner",
                                "bench.callbacks", "bench.datasets")
                       or m.startswith(("torch.", "bench.datasets.", "sklearn"))
                       or (m.startswith("adapters.") and m != "adapters.spec"))
        print(",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == ""


# -- interventions are configuration --------------------------------------------------------

def test_shock_changes_the_key_but_not_the_pair_key(write_suite):
    plan = _plan(write_suite)
    kan = plan.runs[0]
    shocked = kan.model_copy(update={"interventions": Interventions(
        shock=ShockSpec(at=0.5, sigma=1.5))})
    probed = kan.model_copy(update={"interventions": Interventions(probes=ProbeSpec(every=1))})
    assert len({kan.key, shocked.key, probed.key}) == 3
    assert kan.pair_key == shocked.pair_key == probed.pair_key
    # the matched MLP on the same data, scheme and seed pairs with the KAN; another seed not
    mlp = next(s for s in plan.runs if s.model == "mlp" and s.seed == kan.seed)
    other_seed = next(s for s in plan.runs if s.model == "kan" and s.seed != kan.seed)
    assert mlp.pair_key == kan.pair_key != mlp.key
    assert other_seed.pair_key != kan.pair_key


def test_default_interventions_hash_as_before_interventions_existed(write_suite):
    spec = _plan(write_suite).runs[0]
    assert "interventions" not in spec.identity()
    assert "interventions" in json.loads(spec.config_json())


# -- the open schema and its migration -------------------------------------------------------

def _raw(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_schema2_store_upgrades_in_place_without_loss_or_reruns(tmp_path):
    store_path = schema2_store(tmp_path / "schema2.sqlite")
    db = sqlite3.connect(store_path)
    old_columns = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
    old_runs = db.execute("SELECT * FROM runs ORDER BY run_key").fetchall()
    old_curves = db.execute("SELECT * FROM curves ORDER BY run_key, epoch").fetchall()
    assert db.execute("SELECT value FROM meta").fetchone() == ("2",)
    db.close()
    assert len(old_runs) == 16 and old_curves

    with Store(store_path) as store:
        runs = store.runs()
    assert _raw(store_path, "SELECT value FROM meta WHERE key='schema_version'") == \
        [(str(SCHEMA_VERSION),)]
    cols = ", ".join(old_columns)
    assert _raw(store_path, f"SELECT {cols} FROM runs ORDER BY run_key") == old_runs
    assert _raw(store_path, "SELECT * FROM curves ORDER BY run_key, epoch") == old_curves
    # pair_key from each stored configuration: the KAN and its MLP share one per seed/scheme
    assert runs.pair_key.notna().all()
    pairs = runs.groupby("pair_key").model.apply(sorted)
    assert len(pairs) == 8 and all(p == ["kan", "mlp"] for p in pairs)

    md, html = write_report(store_path, tmp_path / "reports")
    assert "iris" in md.read_text() and "diabetes" in html.read_text()

    path = FIXTURES / "schema2_suite.yaml"
    plan = build_plan(suite_mod.load(path), path, device="cpu")
    with Store(store_path) as store:
        summary = execute(plan, store)
    assert summary.ran == 0 and summary.reused == 16


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (x INTEGER)")
    db.commit()
    db.close()
    before = path.read_bytes()
    assert main(["export", str(path)]) == 2
    assert main(["report", str(path), "--out-dir", str(tmp_path / "reports")]) == 2
    assert main(["run", str(FIXTURES / "schema2_suite.yaml"), "--store", str(path), "-q",
                 "--no-report"]) == 2
    assert path.read_bytes() == before
    assert _raw(path, "SELECT name FROM sqlite_master WHERE type='table'") == [("runs",)]


class _Recorder(Callback):
    """Records an arbitrary per-run value and a per-step series, as a new probe would."""

    def on_step_end(self, state: FitState, loss: torch.Tensor) -> None:
        state.log("step_squared", state.step ** 2)

    def on_epoch_end(self, state: FitState) -> None:
        state.result.record("answer", 42.5)
        state.result.record("label", "text value")


def test_new_values_and_series_need_no_schema_change(write_suite, tmp_path, capsys):
    plan = _plan(write_suite)
    with Store(tmp_path / "s.sqlite") as store:
        execute(plan, store, callbacks=[_Recorder()])
        exported = store.export()
        series = store.series()
        wide = store.series(wide=True)
        # a name filter reads only those series (in SQL), in the same order
        squared_only = store.series(names=["step_squared"])
        none = store.series(names=[])
    expected = series[series.name == "step_squared"].reset_index(drop=True)
    assert squared_only.equals(expected) and len(expected) and none.empty
    assert exported.answer.tolist() == [42.5] * 4 and set(exported.label) == {"text value"}
    assert {"callback_time_s", "pair_key"} <= set(exported.columns)
    steps = plan.runs[0].training.epochs * 3  # iris: 96 training rows, batches of 32
    squared = series[(series.name == "step_squared") & (series.run_key == plan.runs[0].key)]
    assert squared.step.tolist() == list(range(1, steps + 1))
    assert squared.value.tolist() == [float(s * s) for s in range(1, steps + 1)]
    assert len(wide) == 4 * steps and "step_squared" in wide.columns

    md, _ = write_report(tmp_path / "s.sqlite", tmp_path / "reports")
    text = md.read_text()
    assert "Other recorded values" in text and "| answer |" in text.replace("  ", " ")

    out = tmp_path / "series.csv"
    assert main(["export", str(tmp_path / "s.sqlite"), "--series", "--wide", "-o", str(out)]) == 0
    assert pd.read_csv(out).step_squared.notna().all()
    assert main(["export", str(tmp_path / "s.sqlite"), "--wide"]) == 2
    pytest.importorskip("pyarrow")
    parquet = tmp_path / "runs.parquet"
    assert main(["export", str(tmp_path / "s.sqlite"), "--format", "parquet",
                 "-o", str(parquet)]) == 0
    assert pd.read_parquet(parquet).answer.tolist() == [42.5] * 4


def test_a_value_may_not_shadow_a_headline_field():
    r = RunResult(status="ok")
    with pytest.raises(ValueError, match="headline"):
        r.record("test_metric", 1.0)
    for column in RUN_COLUMN_NAMES - HEADLINE_FIELDS:  # every other column of the store
        with pytest.raises(ValueError, match="column"):
            r.record(column, 1.0)
    with pytest.raises(TypeError):
        r.record("tensor", torch.ones(2))


# -- callbacks built from the specification ---------------------------------------------------

def test_probes_every_n_steps_fill_the_series(write_suite):
    spec = _plan(write_suite).runs[0]
    spec = spec.model_copy(update={"interventions": Interventions(probes=ProbeSpec(every=5))})
    result = run_one(spec)
    assert result.status == "ok"
    frame = pd.DataFrame(result.series)
    assert sorted(frame[frame.name == "train_loss"].step) == [5, 10]  # 4 epochs x 3 steps
    assert {"probe_coef_abs_mean", "probe_coef_rms"} <= set(frame.name)
    assert all("probe_coef_rms" not in rec for rec in result.curves)


def _shock_state(model, adapter, seed=0):
    return FitState(spec=None, adapter=adapter, model=model, optimizer=None, data=None,
                    result=RunResult(status="ok"), step=7, total_steps=14)


@pytest.mark.parametrize("scale", ["absolute", "relative"])
def test_shock_adds_seeded_noise_of_sigma_to_the_targeted_tensors_only(scale):
    adapter = adapters.get("mlp")
    spec = adapters.ModelSpec(hidden=(300,))
    shock = ShockSpec(at=0.5, sigma=0.3, scale=scale)
    deltas = []
    for _ in range(2):
        model = adapter.build(spec, 200, 100, seed=0)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        cb = ShockCallback(shock, seed=3)
        state = _shock_state(model, adapter)
        cb.on_fit_start(state)
        assert cb.step == 7 and cb.wants_step(7) and not cb.wants_step(6)
        cb.on_step_end(state, torch.tensor(0.0))
        delta = {n: p.detach() - before[n] for n, p in model.named_parameters()}
        deltas.append(delta)
        for name, d in delta.items():
            if name.endswith("bias"):
                assert torch.equal(d, torch.zeros_like(d)), name
            else:
                sigma = 0.3 * (before[name].std().item() if scale == "relative" else 1.0)
                assert d.std().item() == pytest.approx(sigma, rel=0.03), name
                assert abs(d.mean().item()) < 4 * sigma / d.numel() ** 0.5
        assert state.result.values["shock_step"] == 7
    assert all(torch.equal(deltas[0][n], deltas[1][n]) for n in deltas[0])  # reproducible
    other = adapter.build(spec, 200, 100, seed=0)
    before = [p.detach().clone() for p in other.parameters()]
    cb = ShockCallback(shock, seed=4)
    state = _shock_state(other, adapter)
    cb.on_fit_start(state)
    cb.on_step_end(state, torch.tensor(0.0))
    assert not torch.equal(other[0].weight - before[0], deltas[0]["0.weight"])


def test_a_shocked_run_diverges_from_its_control_at_the_shock_step(write_suite):
    control = _plan(write_suite).runs[0]
    shocked = control.model_copy(update={"interventions": Interventions(
        shock=ShockSpec(at=0.5, sigma=0.5), probes=ProbeSpec(every=1))})
    probed = control.model_copy(update={"interventions": Interventions(probes=ProbeSpec(every=1))})
    a, b = run_one(probed), run_one(shocked)
    assert b.values["shock_step"] == 6  # half of 4 epochs x 3 steps
    loss_a = {p.step: p.value for p in a.series if p.name == "train_loss"}
    loss_b = {p.step: p.value for p in b.series if p.name == "train_loss"}
    assert [loss_a[s] for s in range(1, 7)] == [loss_b[s] for s in range(1, 7)]
    assert loss_a[7] != loss_b[7]
    # probes every step do not change training: same metrics as the plain run
    plain = run_one(control)
    assert (plain.train_metric, plain.test_metric) == (a.train_metric, a.test_metric)


class _Sleeper(Callback):
    def on_step_end(self, state: FitState, loss: torch.Tensor) -> None:
        time.sleep(0.05)


def test_callback_time_is_not_training_time(write_suite):
    spec = _plan(write_suite).runs[1]  # 4 epochs x 3 steps: 0.6 s asleep
    result = run_one(spec, callbacks=[_Sleeper()])
    assert result.values["callback_time_s"] >= 0.6
    assert result.train_time_s < 0.3


# -- self-contained runs ------------------------------------------------------------------

def test_a_specification_runs_in_a_fresh_process_with_the_same_metrics(write_suite, tmp_path):
    spec = _plan(write_suite).runs[0]
    assert pickle.loads(pickle.dumps(spec)) == spec
    (tmp_path / "spec.pkl").write_bytes(pickle.dumps(spec))
    code = textwrap.dedent(f"""
        import pickle, sys
        import torch
        from bench.runner import run_one
        torch.set_num_threads({torch.get_num_threads()})
        spec = pickle.loads(open(sys.argv[1], "rb").read())
        open(sys.argv[2], "wb").write(pickle.dumps(run_one(spec)))
        print(",".join(sorted(m for m in sys.modules if m.startswith("bench.plan"))))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "spec.pkl"),
                          str(tmp_path / "result.pkl")], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""  # no planner: the specification is enough
    remote = pickle.loads((tmp_path / "result.pkl").read_bytes())
    local = run_one(spec)
    assert remote.status == local.status == "ok"
    for name in ("params", "train_metric", "val_metric", "test_metric", "best_epoch", "steps"):
        assert getattr(remote, name) == getattr(local, name), name
    assert [r["train_loss"] for r in remote.curves] == [r["train_loss"] for r in local.curves]
    assert pickle.loads(pickle.dumps(local)).curves == local.curves
