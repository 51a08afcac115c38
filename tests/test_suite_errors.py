"""Every malformed suite exits 2 with one message naming the file, the key and the expectation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.cli import main

VALID = """
seeds: [0]
training: {epochs: 1}
datasets: [iris]
models:
  - {name: kan, adapter: native, hidden: [4]}
  - {name: mlp, adapter: mlp, budget: {match: kan}}
"""

CASES = {
    "bad_yaml": ("seeds: [0\ndatasets: [iris]\n", "line", "invalid YAML"),
    "top_level_not_mapping": ("- iris\n", None, "expected a mapping"),
    "unknown_top_key": (VALID + "epochs: 3\n", "epochs", "unknown key 'epochs'; expected one of"),
    "unknown_model_key": (
        VALID.replace("hidden: [4]}", "hidden: [4], widht: 3}"),
        "models[0].widht", "unknown key 'widht'",
    ),
    "unknown_training_key": (
        VALID.replace("{epochs: 1}", "{epochs: 1, learning_rate: 0.1}"),
        "training.learning_rate", "expected one of: optimizer, lr",
    ),
    "unknown_adapter": (
        VALID.replace("adapter: native", "adapter: natve"),
        "models[0].adapter", "unknown adapter 'natve'; expected one of",
    ),
    "unknown_dataset": (VALID.replace("[iris]", "[irsi]"), "datasets[0].name",
                        "unknown dataset 'irsi'; expected one of"),
    "wrong_type": (VALID.replace("hidden: [4]}", "hidden: [4], grid: five}"),
                   "models[0].grid", "valid integer"),
    "wrong_type_epochs": (VALID.replace("{epochs: 1}", "{epochs: -2}"), "training.epochs",
                          "greater than or equal to 1"),
    "bad_optimizer": (VALID.replace("{epochs: 1}", "{epochs: 1, optimizer: adagrad}"),
                      "training.optimizer", "'adam', 'adamw', 'sgd', 'rmsprop' or 'lbfgs'"),
    "bad_init": (VALID.replace("{epochs: 1}", "{epochs: 1, init: he}"),
                 "training.init", "unknown initialisation 'he'; expected one of default"),
    "bad_schedule": (VALID.replace("{epochs: 1}", "{epochs: 1, schedule: linear}"),
                     "training.schedule.kind", "'constant', 'step', 'exponential', 'cosine' or"),
    "lbfgs_with_weight_decay": (
        VALID.replace("{epochs: 1}", "{epochs: 1, optimizer: lbfgs, weight_decay: 0.1}"),
        "training", "lbfgs takes no weight_decay or grad_clip"),
    "missing_models": ("datasets: [iris]\n", "models", "required key is missing"),
    "duplicate_model": (VALID.replace("name: mlp", "name: kan"), "models[1].name",
                        "duplicate model name 'kan'"),
    "unknown_match": (VALID.replace("match: kan", "match: kam"), "models[1].budget.match",
                      "unknown model 'kam'"),
    "match_and_params": (VALID.replace("{match: kan}", "{match: kan, params: 100}"),
                         "models[1].budget", "exactly one of 'match'"),
    "duplicate_yaml_key": (VALID + "seeds: [1]\n", "line", "duplicate key 'seeds'"),
    "budget_cycle": (
        VALID.replace("hidden: [4]}", "budget: {match: mlp}}"), "models[", "cycle"),
    "unknown_model_option": (
        VALID.replace("hidden: [4]}", "hidden: [4], options: {dropout: 0.5}}"),
        "models[0]", "does not understand option(s) ['dropout']"),
    "field_the_adapter_does_not_use": (
        VALID.replace("{match: kan}}", "{match: kan}, grid: 10}"),
        "models[1].grid", "adapter 'mlp' does not use 'grid' (it reads: activation, hidden"),
    "activation_native_cannot_honour": (
        VALID.replace("hidden: [4]}", "hidden: [4], activation: swish}"),
        "models[0]", "unknown activation 'swish'; expected one of"),
    "order_inkan_cannot_honour": (
        VALID.replace("adapter: native, hidden: [4]}", "adapter: inkan, hidden: [4], k: 2}"),
        "models[0]", "inkan supports cubic splines only (k=3)"),
    "probe_cadence": (VALID + "probes: {every: 0}\n", "probes.every", "greater than or equal to 1"),
    "unreachable_budget": (
        VALID.replace("{match: kan}", "{params: 3}"), "models[1].budget", "tolerance"),
    "grid_range_decreasing": (VALID.replace("hidden: [4]}", "hidden: [4], grid_range: [2, -2]}"),
                              "models[0].grid_range", "must be increasing"),
    "grid_range_empty": (VALID.replace("hidden: [4]}", "hidden: [4], grid_range: [1, 1]}"),
                         "models[0].grid_range", "must be increasing"),
    "device_unavailable": (VALID + "device: mps\n", "device", "MPS is not available"),
    "model_too_large_for_memory": (
        VALID.replace("hidden: [4]}", "hidden: [100000000, 100000000]}"), "models[0]",
        "model 'kan': 100,000,007,000,000,000 parameters need about"),
    "unknown_dataset_option": (VALID.replace("[iris]", "[{name: iris, options: {foo: 1}}]"),
                               "datasets[0].options.foo",
                               "dataset 'iris' does not accept option 'foo'; accepted: none"),
    "wrong_type_dataset_option": (
        VALID.replace("[iris]", "[{name: toy_xy, options: {n_train: many}}]"),
        "datasets[0].options.n_train", "must be an integer >= 10, got 'many'"),
    "unknown_scheme_key": (VALID + "schemes: [{name: a, learning_rate: 0.1}]\n",
                           "schemes[0].learning_rate",
                           "unknown key 'learning_rate'; expected one of: name, optimizer, lr"),
    "match_with_no_other_model": (
        VALID.replace("  - {name: kan, adapter: native, hidden: [4]}\n", ""),
        "models[0].budget.match", "unknown model 'kan'; the suite has no other model"),
    "duplicate_seeds": (VALID.replace("seeds: [0]", "seeds: [0, 0]"), "seeds",
                        "duplicate seed(s) [0]"),
    "seed_above_range": (VALID.replace("seeds: [0]", f"seeds: [0, {2**63}]"), "seeds",
                         "in [0, 2**63 - 1]"),
    "seed_negative": (VALID.replace("seeds: [0]", "seeds: [-1]"), "seeds", "in [0, 2**63 - 1]"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_suite_names_file_and_key(case, write_suite, capsys):
    text, key, expected = CASES[case]
    path = write_suite(text, name=case)
    assert main(["budget", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}"), err
    if key is not None:
        assert key in err, err
    assert expected in err, err
    assert "Traceback" not in err


def test_valid_suite_passes(write_suite, capsys):
    assert main(["budget", str(write_suite(VALID))]) == 0
    out = capsys.readouterr().out
    assert "kan" in out and "match kan" in out


def test_missing_file(tmp_path, capsys):
    assert main(["budget", str(tmp_path / "nope.yaml")]) == 2
    assert "no such suite file" in capsys.readouterr().err


def test_cli_process_exit_code_and_no_traceback(write_suite):
    """The real entry point, in its own process: status 2, one message, no traceback."""
    path = write_suite(VALID.replace("adapter: mlp", "adapter: nope"))
    proc = subprocess.run([sys.executable, "-m", "bench", "run", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{path}: models[1].adapter: unknown adapter 'nope'" in proc.stderr
