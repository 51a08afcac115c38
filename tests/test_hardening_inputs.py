"""Inputs that used to end in a traceback or a late failure: each is one message, exit 2, before
any training (``bench budget`` runs the same validation and planning as ``bench run``)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from bench import budget
from bench import suite as suite_mod
from bench.cli import main
from bench.datasets import tabular
from bench.errors import KanbenchError, SuiteError
from bench.plan import build_plan, resolve_device

ONE_MODEL = """
seeds: [0]
training: {epochs: 1}
datasets: [iris]
models:
  - {name: kan, adapter: native, hidden: [4]}
"""


def _fails(path, capsys, *expected: str, argv: tuple[str, ...] = ()) -> str:
    assert main(["budget", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for part in expected:
        assert part in err, err
    return err


def test_binary_suite_file(tmp_path, capsys):
    path = tmp_path / "picture.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    _fails(path, capsys, f"error: {path}: ", "not a UTF-8 text file")


@pytest.mark.parametrize("device, missing, why", [
    ("cuda", "cuda", "CUDA is not available"),
    ("cuda:1", "count", "this machine has 1 CUDA device(s)"),
    ("mps", "mps", "MPS is not available"),
])
def test_unavailable_device(write_suite, capsys, monkeypatch, device, missing, why):
    """From the suite: names the file and the key; from --device: one message, no key."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    if missing == "cuda":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    elif missing == "count":  # one CUDA device: cuda:1 does not exist
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    path = write_suite(ONE_MODEL + f"device: '{device}'\n")
    _fails(path, capsys, f"error: {path}: device: device '{device}' requested but", why)
    cli = write_suite(ONE_MODEL)
    err = _fails(cli, capsys, f"error: device '{device}' requested but", why,
                 argv=("--device", device))
    assert str(cli) not in err
    with pytest.raises(KanbenchError, match="expected auto, cpu, cuda"):
        resolve_device("tpu")


def test_model_too_large_for_memory(write_suite, capsys, monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 8 << 30)
    path = write_suite(ONE_MODEL.replace("[4]", "[100000000]"))
    # 7e9 parameters x 4 bytes x 4 (weights, gradients, Adam's two moments) = 112 GB
    _fails(path, capsys, f"error: {path}: models[0]: ", "model 'kan': 7,000,000,000 parameters",
           "104.3 GiB", "8.0 GiB of memory available")
    # a budget that solves to a huge width: the same check, on the solved count
    big = ONE_MODEL.replace("hidden: [4]}", "hidden: [1000, null], budget: {params: 4000000000}}")
    _fails(write_suite(big), capsys, "models[0]: ", "4,0", "of memory available")
    monkeypatch.setattr(budget, "available_memory", lambda: None)  # unknown: no check
    assert main(["budget", str(path)]) == 0


def test_the_values_a_batch_keeps_count_towards_the_memory(write_suite, capsys, monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 20 << 30)
    # an MLP of 8e8 parameters: 11.9 GiB of weights and optimiser state fits in 20 GiB, but the
    # 96 training rows of iris evaluated at once keep 96 x 1e8 x 2 floats = 71.5 GiB
    mlp = ONE_MODEL.replace("adapter: native, hidden: [4]", "adapter: mlp, hidden: [100000000]")
    path = write_suite(mlp, name="mlp")
    _fails(path, capsys, f"error: {path}: models[0]: ", "800,000,003 parameters",
           "71.5 GiB for the values a batch keeps")
    assert main(["budget", str(write_suite(mlp.replace("100000000", "1000000"), name="ok"))]) == 0


def test_available_memory_reads_the_machine():
    avail = budget.available_memory()
    assert avail is None or avail > 0
    assert budget.training_memory(1000) == 16_000


def test_dataset_option_with_wrong_type_names_the_key(write_suite, capsys, monkeypatch, tmp_path):
    """Option values are checked before the data are looked for (mnist has no data here)."""
    monkeypatch.setenv("KANBENCH_OFFLINE", "1")
    monkeypatch.setenv("KANBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KANBENCH_DATA", str(tmp_path / "no-data"))
    mnist = ONE_MODEL.replace("[iris]", "[{name: mnist, options: {resize: big}}]")
    path = write_suite(mnist)
    _fails(path, capsys, f"error: {path}: datasets[0].options.resize: ",
           "must be a positive integer or null, got 'big'")
    flag = write_suite(mnist.replace("resize: big", "verify_checksum: 'no'"), name="flag")
    _fails(flag, capsys, f"{flag}: datasets[0].options.verify_checksum: ", "must be true or false")
    unknown = write_suite(mnist.replace("resize: big", "size: 7"), name="unknown")
    _fails(unknown, capsys, f"{unknown}: datasets[0].options.size: ",
           "accepted: max_train, normalize, pca, resize, verify_checksum")


def test_verify_checksum_opt_out_is_part_of_the_run_key(write_suite, monkeypatch, tmp_path):
    """A file that matches its checksum loads either way; the opt-out changes every run key."""
    monkeypatch.setenv("KANBENCH_OFFLINE", "1")
    monkeypatch.setenv("KANBENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "data" / "uci" / "magic"
    folder.mkdir(parents=True)
    rows = [",".join(str(i + j) for j in range(10)) + ("," + "gh"[i % 2]) for i in range(40)]
    (folder / "magic04.data").write_text("\n".join(rows) + "\n")
    entry = tabular.UCI_FILES["magic04.data"]
    digest = hashlib.sha256((folder / "magic04.data").read_bytes()).hexdigest()
    monkeypatch.setitem(tabular.UCI_FILES, "magic04.data",
                        tabular.UciFile(entry.rel, entry.sources, {"sha256": digest}))
    text = ONE_MODEL.replace("[iris]", "[magic]") + f"data_dir: {tmp_path / 'data'}\n"
    checked = write_suite(text, name="checked")
    unchecked = write_suite(text.replace("[magic]", "[{name: magic, options: "
                                                    "{verify_checksum: false}}]"), name="unchecked")
    keys = [{r.key for r in build_plan(suite_mod.load(p), p).runs} for p in (checked, unchecked)]
    assert keys[0] and keys[1] and not keys[0] & keys[1]


def test_suite_error_carries_file_and_key(write_suite):
    path = write_suite(ONE_MODEL.replace("seeds: [0]", "seeds: [3, 1, 3]"))
    with pytest.raises(SuiteError) as err:
        suite_mod.load(path)
    assert (err.value.path, err.value.key) == (str(path), "seeds")


def test_unknown_dataset_option_is_found_by_validation_alone(write_suite):
    """No dataset is loaded to find an unknown option: `load` (validation) refuses it."""
    path = write_suite(ONE_MODEL.replace("[iris]", "[wine, {name: mnist, options: {size: 7}}]"))
    with pytest.raises(SuiteError) as err:
        suite_mod.load(path)
    assert err.value.key == "datasets[1].options.size"
    assert "accepted: max_train, normalize, pca, resize, verify_checksum" in str(err.value)
