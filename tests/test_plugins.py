"""Third-party adapters and datasets: by import path in a suite and through entry points of an
installed distribution; a broken plugin is reported with the reason and left out, and the rest
of the suite runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import adapters
from bench import suite as suite_mod
from bench.cli import main
from bench.datasets import dataset_entry
from bench.datasets.plugins import broken_datasets
from bench.errors import SuiteError
from bench.plan import build_plan
from bench.runner import execute
from bench.store import Store

ROOT = Path(__file__).parents[1]

SUITE = """
name: plugins
seeds: [0]
training: {epochs: 2, batch_size: 32}
datasets:
  - iris
  - {name: "plugin_examples:XOR", options: {n: 200}}
models:
  - {name: mine, adapter: "plugin_examples:LinearAdapter", hidden: [4]}
  - {name: mlp, adapter: mlp, hidden: [null], budget: {match: mine, tolerance: 0.2}}
"""


def test_an_adapter_and_a_dataset_by_import_path_run_in_a_suite(write_suite, tmp_path):
    path = write_suite(SUITE)
    plan = build_plan(suite_mod.load(path), path)
    assert {(r.dataset, r.model) for r in plan.runs} == {
        ("iris", "mine"), ("iris", "mlp"), ("plugin_examples:XOR", "mine"),
        ("plugin_examples:XOR", "mlp")}
    with Store(tmp_path / "s.sqlite") as store:
        assert execute(plan, store).statuses == {"ok": 4}
        runs = store.runs()
    xor = runs[runs.dataset == "plugin_examples:XOR"]
    # split by kanbench's protocol: 200 rows, 20% test, 20% of the rest validation
    data_info = xor.data_json.iloc[0]
    assert '"n_test": 40' in data_info and '"source": "plugin plugin_examples:XOR"' in data_info
    assert adapters.get("plugin_examples:LinearAdapter").name == "plugin_linear"


@pytest.mark.parametrize("path, reason", [
    ("plugin_examples:WrongShape", "maps a (5, 3) batch to (5, 3), expected (5, 2)"),
    ("plugin_examples:Miscounted", "param_count says 27 parameters, the built [3, 4, 2] model "
                                   "has 26 trainable ones"),
    ("plugin_examples:NoCoefficients", "Can't instantiate abstract class NoCoefficients"),
    ("plugin_examples:Missing", "AttributeError: module 'plugin_examples' has no attribute "
                                "'Missing'"),
    ("no_such_module_xyz:Adapter", "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
])
def test_a_broken_adapter_is_reported_and_left_out_with_its_dependents(write_suite, capsys, path,
                                                                       reason, tmp_path):
    text = SUITE.replace('"plugin_examples:LinearAdapter"', f'"{path}"')
    suite_path = write_suite(text)
    suite = suite_mod.load(suite_path)  # loads: the broken model is left out, not an error
    assert reason in adapters.broken()[path]
    assert suite.left_out == {
        "model 'mine'": f"its adapter '{path}' is a broken plugin: {adapters.broken()[path]}",
        "model 'mlp'": "its budget matches 'mine', which is left out"}
    text = text.replace("hidden: [null], budget: {match: mine, tolerance: 0.2}", "hidden: [4]")
    suite_path = write_suite(text)
    assert main(["run", str(suite_path), "--store", str(tmp_path / "s.sqlite"), "--no-report",
                 "-q"]) == 0
    out = capsys.readouterr()
    assert f"warning: model 'mine' left out of the plan: its adapter '{path}' is a broken " \
           f"plugin" in out.err
    assert "2 runs: 0 already finished, ran 2 (2 ok)" in out.out  # mlp on both datasets
    assert main(["list", "adapters"]) == 0
    assert f"{path}" in capsys.readouterr().out


def test_a_broken_dataset_is_reported_and_left_out(write_suite, capsys, tmp_path):
    text = SUITE.replace('"plugin_examples:XOR", options: {n: 200}',
                         '"plugin_examples:RAGGED"').replace(
        '"plugin_examples:LinearAdapter"', "mlp")
    text = text.replace("hidden: [null], budget: {match: mine, tolerance: 0.2}", "hidden: [4]")
    path = write_suite(text)
    assert main(["run", str(path), "--store", str(tmp_path / "s.sqlite"), "--no-report",
                 "-q"]) == 0
    out = capsys.readouterr()
    assert ("warning: dataset 'plugin_examples:RAGGED' left out of the plan: its loader "
            "'plugin_examples:RAGGED' is a broken plugin: DatasetError: dataset plugin "
            "'plugin_examples:RAGGED': x must be a 2-D array") in out.err
    assert "2 runs: 0 already finished, ran 2 (2 ok)" in out.out  # iris only
    assert "plugin_examples:RAGGED" in broken_datasets()
    assert main(["list", "datasets"]) == 0
    assert "broken plugin: DatasetError" in capsys.readouterr().out


def test_a_dataset_plugin_that_is_no_dataset_is_broken():
    with pytest.raises(Exception, match="gives dict, not a bench.datasets.plugins.ArrayDataset"):
        dataset_entry("plugin_examples:NOT_A_DATASET")


def test_unknown_names_and_options_are_still_suite_errors(write_suite):
    with pytest.raises(SuiteError) as err:
        suite_mod.load(write_suite(SUITE.replace('"plugin_examples:LinearAdapter"', "nativ")))
    assert "models[0].adapter" in str(err.value) and "unknown adapter 'nativ'" in str(err.value)
    with pytest.raises(SuiteError) as err:
        suite_mod.load(write_suite(SUITE.replace("options: {n: 200}", "options: {m: 2}")))
    assert "datasets[1].options.m" in str(err.value) and "accepted: n" in str(err.value)


# --------------------------------------------------------------------------------------------
# a real distribution, installed


@pytest.mark.slow
def test_an_installed_distribution_registers_its_adapter_and_dataset(tmp_path):
    """tests/plugin_package (the README's example) installed with pip into a folder of its own;
    kanbench, run with that folder on the path, finds both entry points and runs a suite."""
    site, source = tmp_path / "site", tmp_path / "plugin_package"
    shutil.copytree(ROOT / "tests" / "plugin_package", source)  # the build writes beside it
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(source)],
                   check=True, cwd=tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")])}

    def bench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)

    listed = bench("list")
    assert listed.returncode == 0, listed.stderr
    assert "example_rbf" in listed.stdout and "example_rings" in listed.stdout
    suite = tmp_path / "suite.yaml"
    suite.write_text("""
name: installed
seeds: [0, 1]
training: {epochs: 3, batch_size: 32, lr: 0.01}
datasets: [{name: example_rings, options: {n: 300}}]
models:
  - {name: rbf, adapter: example_rbf, hidden: [4], grid: 6}
  - {name: mlp, adapter: mlp, budget: {match: rbf}}
""")
    ran = bench("run", str(suite), "--store", str(tmp_path / "s.sqlite"), "--out-dir",
                str(tmp_path / "reports"), "-q")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "4 runs: 0 already finished, ran 4 (4 ok)" in ran.stdout
    assert "example_rings" in (tmp_path / "reports" / "installed.md").read_text()
