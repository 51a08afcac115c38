"""Reports hold against hostile suite text, path-like names, stale runs, thin evidence,
interrupted writes and unwritable folders.

Each test drives the real pipeline (suite file -> run -> store -> report) on iris with tiny MLPs
for one epoch, or writes real run records into a real store where a result cannot be produced
cheaply (a non-finite test metric, a chosen accuracy).
"""

from __future__ import annotations

import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import markupsafe
import matplotlib.figure
import pytest
import yaml

from adapters import registry
from adapters.mlp import MLPAdapter
from adapters.spec import ModelSpec
from bench import suite as suite_mod
from bench.callbacks import Callback
from bench.cli import main
from bench.errors import KanbenchError
from bench.names import file_stem
from bench.plan import build_plan
from bench.records import RunResult, RunSpec, SplitSpec, TrainingSpec
from bench.report import write_report
from bench.runner import execute
from bench.store import Store, default_store_path

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def hostile(field: str) -> str:
    """Text that is live HTML, breaks a Markdown table row and is invalid matplotlib mathtext."""
    return f"{field}{SCRIPT}{IMG}|$\\kanbad$|"


class _HostileProvenance(MLPAdapter):
    name = "hostile_provenance_test"

    def provenance(self, model=None):
        return {"provider": hostile("provider"), "version": hostile("version")}


class _HostileMissing(MLPAdapter):
    name = "hostile_missing_test"

    def unavailable_reason(self):
        return hostile("skipreason")


class _HostileError(MLPAdapter):
    name = "hostile_error_test"

    def build(self, *args, **kwargs):
        raise RuntimeError(hostile("errormessage"))


class _HostileValue(Callback):
    def on_epoch_end(self, state) -> None:
        state.result.record(hostile("valuename"), 1.5)


@pytest.fixture
def hostile_adapters(monkeypatch):
    """The three adapters, registered for this test only (the adapter contract tests iterate
    over every registered adapter)."""
    for cls in (_HostileProvenance, _HostileMissing, _HostileError):
        monkeypatch.setitem(registry._registered, cls.name, cls())


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", line))


def _assert_markdown_tables_intact(md: str) -> None:
    """Every row of every table has as many column separators as the table's header."""
    block: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            counts = {_unescaped_pipes(row) for row in block}
            assert len(counts) == 1, block
        block = []


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# -- 1. escaping --------------------------------------------------------------------------------

FIELDS = ["suite", "description", "model", "skipped_model", "failing_model", "label", "scheme",
          "skipreason", "errormessage", "valuename", "provider", "version"]


def test_every_suite_text_is_data_in_both_reports_and_the_plots(tmp_path, hostile_adapters):
    suite = {
        "name": hostile("suite"), "description": hostile("description"), "seeds": [0],
        "training": {"epochs": 1}, "schemes": [{"name": hostile("scheme")}],
        "datasets": [{"name": "iris", "label": hostile("label")}],
        "models": [
            {"name": hostile("model"), "adapter": "hostile_provenance_test", "hidden": [4]},
            {"name": hostile("skipped_model"), "adapter": "hostile_missing_test", "hidden": [4]},
            {"name": hostile("failing_model"), "adapter": "hostile_error_test", "hidden": [4]},
        ],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    loaded = suite_mod.load(path)
    plan = build_plan(loaded, path, device="cpu")
    store_path = tmp_path / "store.sqlite"
    with Store(store_path) as store:
        execute(plan, store, callbacks=[_HostileValue()])
    out = tmp_path / "reports"
    md_path, html_path = write_report(store_path, out, loaded.name,
                                      run_keys=[r.key for r in plan.runs],
                                      description=loaded.description)

    html = html_path.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(html)
    # the one script is the report's own table sorter: no suite text became a script
    assert [tag for tag, _ in parser.tags].count("script") == 1
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1 and "alert" not in scripts[0] and "sort" in scripts[0]
    assert not any("onerror" in attrs for _, attrs in parser.tags)
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert images and all(i["src"].startswith("data:image/png;base64,") for i in images)
    assert images[0]["alt"] == f"learning curves for {hostile('label')}"  # one intact attribute
    for field in FIELDS:
        assert str(markupsafe.escape(hostile(field))) in html, field

    md = md_path.read_text(encoding="utf-8")
    assert not re.search(r"(?<!\\)(?:\\\\)*<", md)  # every "<" escaped: no HTML tag
    assert "\\<script\\>alert(1)\\</script\\>" in md and "\\|" in md
    for field in FIELDS:
        assert field in md, field
    _assert_markdown_tables_intact(md)

    # every file lies in the report folder under a plain name (the plot's from the label)
    written = _files(tmp_path) - {path} - {p for p in _files(tmp_path) if p.name.startswith("store")}
    assert written and all(out in p.parents for p in written)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", part) and not part.startswith(".")
               for p in written for part in p.relative_to(out).parts)
    # the learning curves and the gap per model (one model: no figure against a cost)
    assert len([p for p in written if p.suffix == ".png"]) == 2


# -- 2. names never become paths ----------------------------------------------------------------

SMALL = {"seeds": [0], "training": {"epochs": 1}, "datasets": ["iris"],
         "models": [{"name": "mlp", "adapter": "mlp", "hidden": [4]}]}


@pytest.mark.parametrize("kind", ["relative", "absolute", "nul", "long"])
def test_a_suite_name_that_is_a_path_stops_the_run_before_anything_is_written(
        kind, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    name = {"relative": "../../escape_rel/x", "absolute": str(tmp_path / "escape_abs" / "x"),
            "nul": "a\0b", "long": "n" * 1000}[kind]
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": name, **SMALL}), encoding="utf-8")
    assert main(["run", str(suite), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{suite}: name:" in err
    assert _files(tmp_path) == {suite}  # no store (nothing trained), no report, no probe
    assert not (tmp_path / "escape_rel").exists() and not (tmp_path / "escape_abs").exists()


def test_file_stem_keeps_plain_names_and_refuses_what_cannot_name_a_file():
    assert file_stem("tabular-v1.2_x", "suite name") == "tabular-v1.2_x"
    assert file_stem("../a b", "suite name") == "_a_b"
    assert file_stem("/etc/passwd", "suite name") == "_etc_passwd"
    assert file_stem("iris", "dataset label", unique=True) == "iris"
    assert file_stem("a/b", "dataset label", unique=True) != file_stem("a_b", "dataset label",
                                                                      unique=True)
    for bad in ["", "...", "a\0b", "x" * 1000]:
        with pytest.raises(KanbenchError, match="suite name"):
            file_stem(bad, "suite name")
    assert default_store_path("../../x") == Path("results") / "_.._x.sqlite"


@pytest.fixture
def small_store(tmp_path, monkeypatch):
    """A store with one finished run (iris, MLP, one epoch) and its reports, cwd tmp_path."""
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "small.yaml"
    suite.write_text(yaml.safe_dump({"name": "small", **SMALL}), encoding="utf-8")
    assert main(["run", str(suite), "-q"]) == 0
    return tmp_path / "results" / "small.sqlite"


def test_a_report_name_is_sanitised_inside_the_out_folder(small_store, tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = _files(tmp_path)
    assert main(["report", str(small_store), "--out-dir", "out", "--suite-name",
                 "../../esc/x"]) == 0
    new = _files(tmp_path) - before
    assert {p.suffix for p in new} == {".md", ".html", ".png"}
    assert all((work / "out") in p.parents for p in new)
    assert not (tmp_path / "esc").exists()


# -- 3. reports show the suite's current runs ---------------------------------------------------

STALE = "name: stale\nseeds: [0, 1]\ntraining: {{epochs: {}}}\ndatasets: [iris]\n" \
        "models: [{{name: mlp, adapter: mlp, hidden: [4]}}]\n"


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_a_suite_report_shows_only_its_current_runs_and_counts_the_others(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "stale.yaml"
    path.write_text(STALE.format(1), encoding="utf-8")
    assert main(["run", str(path), "-q"]) == 0
    path.write_text(STALE.format(2), encoding="utf-8")
    assert main(["run", str(path), "-q"]) == 0
    md = (tmp_path / "reports" / "stale.md").read_text(encoding="utf-8")
    assert ": 2 runs (2 ok)" in md and "| 2/2 |" in md
    assert "The store holds 2 other runs" in md
    setup = _section(md, "Setup")
    assert "epochs=2" in setup and "epochs=1" not in setup

    # from the store alone, given the suite file: the same report
    assert main(["report", "results/stale.sqlite", "--suite", str(path), "--out-dir", "again"]) == 0
    again = (tmp_path / "again" / "stale.md").read_text(encoding="utf-8")
    strip = lambda text: [l for l in text.splitlines() if not l.startswith("Generated")]  # noqa: E731
    assert strip(again) == strip(md)

    # without a suite: every run, said so, and the setting that differs shown with its runs
    assert main(["report", "results/stale.sqlite", "--out-dir", "all"]) == 0
    everything = (tmp_path / "all" / "stale.md").read_text(encoding="utf-8")
    assert ": 4 runs (4 ok)" in everything and "| 4/4 |" in everything
    assert "every run in the store" in everything
    setup = _section(everything, "Setup")
    assert "epochs=" not in setup and re.search(r"epochs: 1 \(2 runs\), 2 \(2 runs\)", setup)


def test_setup_lists_common_settings_once_and_differing_ones_per_scheme(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "schemes.yaml"
    path.write_text(yaml.safe_dump({
        "name": "schemes", **SMALL, "training": {"epochs": 1, "lr": 0.02},
        "schemes": [{"name": "short", "epochs": 1}, {"name": "long", "epochs": 2}]}),
        encoding="utf-8")
    assert main(["run", str(path), "-q"]) == 0
    setup = _section((tmp_path / "reports" / "schemes.md").read_text(encoding="utf-8"), "Setup")
    assert setup.count("lr=0.02") == 1 and "epochs=" not in setup
    assert re.search(r"epochs: 1 \(short\), 2 \(long\)", setup)


# -- 4. verdicts need seeds and finite results --------------------------------------------------

def _store_runs(path: Path, rows) -> None:
    """Real run records: (dataset label, metric, model, family, seed, test metric)."""
    with Store(path) as store:
        for label, metric, model, family, seed, value in rows:
            spec = RunSpec(
                suite="verdicts", dataset="iris" if metric == "accuracy" else "diabetes",
                dataset_label=label, dataset_options={}, split=SplitSpec(), model=model,
                adapter="native" if family == "kan" else "mlp", family=family,
                arch=ModelSpec(hidden=(4,)), params=50, budget=None, scheme="default",
                training=TrainingSpec(epochs=1), seed=seed, device="cpu")
            result = RunResult(status="ok", metric=metric, params=50, train_metric=value,
                               val_metric=value, test_metric=value, gap=0.0, best_epoch=1,
                               epochs=1, steps=1, train_time_s=1.0, throughput=100.0)
            store.save(spec, result, env={})


def _summary(md: str, dataset: str) -> str:
    """The dataset's row of the report's Summary table."""
    section = md.split("## Summary\n", 1)[1].split("\n## ", 1)[0]
    return next(line for line in section.splitlines() if line.startswith(f"| {dataset} |"))


def test_thin_evidence_gets_the_low_power_wording_never_equality(tmp_path):
    _store_runs(tmp_path / "v.sqlite", [
        ("single", "accuracy", "kan", "kan", 0, 0.9), ("single", "accuracy", "mlp", "mlp", 0, 0.8),
        ("mixed", "accuracy", "kan", "kan", 0, 0.9), ("mixed", "accuracy", "kan", "kan", 1, 0.91),
        ("mixed", "accuracy", "mlp", "mlp", 0, 0.7),
        ("double", "accuracy", "kan", "kan", 0, 0.9), ("double", "accuracy", "kan", "kan", 1, 0.91),
        ("double", "accuracy", "mlp", "mlp", 0, 0.7), ("double", "accuracy", "mlp", "mlp", 1, 0.71),
    ])
    md = write_report(tmp_path / "v.sqlite", tmp_path / "out")[0].read_text(encoding="utf-8")
    # "mixed": the KAN's second seed has no MLP run to pair with
    for dataset, n in (("single", 1), ("mixed", 1), ("double", 2)):
        line = _summary(md, dataset)
        assert f"too few paired seeds (n = {n}) for the test to have power" in line, line
        assert "better" not in line and "no detectable difference" not in line, line
    assert "| double | kan | mlp | +20.00 pp |" in md


def test_models_with_non_finite_or_runaway_results_do_not_win_the_summary(tmp_path):
    _store_runs(tmp_path / "v.sqlite", [
        ("acc", "accuracy", "kan_nan", "kan", 0, 0.99), ("acc", "accuracy", "kan_nan", "kan", 1, math.nan),
        ("acc", "accuracy", "kan_ok", "kan", 0, 0.8), ("acc", "accuracy", "kan_ok", "kan", 1, 0.81),
        ("acc", "accuracy", "mlp", "mlp", 0, 0.7), ("acc", "accuracy", "mlp", "mlp", 1, 0.72),
        ("reg", "rmse", "kan_huge", "kan", 0, 1e4), ("reg", "rmse", "kan_huge", "kan", 1, 1.1e4),
        ("reg", "rmse", "mlp", "mlp", 0, 1.0), ("reg", "rmse", "mlp", "mlp", 1, 1.1),
    ])
    md = write_report(tmp_path / "v.sqlite", tmp_path / "out")[0].read_text(encoding="utf-8")
    # kan_nan has the best validation accuracy of its finite runs (0.99), but a NaN test run
    assert _summary(md, "acc").startswith("| acc | kan_ok | mlp |"), _summary(md, "acc")
    assert re.search(r"Not eligible .* on acc: kan_nan \(non-finite test metric", md)
    assert "| **kan_nan** |" not in md and "| **kan_ok** |" in md
    reg = _summary(md, "reg")
    assert "no eligible KAN" in reg and "kan_huge" not in reg, reg
    assert re.search(r"Not eligible .* on reg: kan_huge \(mean test RMSE .*100x", md)


def test_runs_on_unverified_data_or_a_busy_machine_are_marked(tmp_path):
    with Store(tmp_path / "m.sqlite") as store:
        for seed, (checksum, load) in enumerate([("mismatch", 0.1), ("verified", 3.0),
                                                 ("verified", 0.2)]):
            spec = RunSpec(
                suite="marks", dataset="iris", dataset_label="iris", dataset_options={},
                split=SplitSpec(), model="mlp", adapter="mlp", family="mlp",
                arch=ModelSpec(hidden=(4,)), params=50, budget=None, scheme="default",
                training=TrainingSpec(epochs=1), seed=seed, device="cpu")
            result = RunResult(status="ok", metric="accuracy", params=50, train_metric=0.9,
                               val_metric=0.9, test_metric=0.9, gap=0.0, best_epoch=1, epochs=1,
                               steps=1, train_time_s=1.0, throughput=100.0, threads=2,
                               data_info={"checksum": checksum})
            result.record("others_cpu_load", load)
            store.save(spec, result, env={"cpu_count": 2})
    md = write_report(tmp_path / "m.sqlite", tmp_path / "out")[0].read_text(encoding="utf-8")
    row = next(line for line in md.splitlines() if line.startswith("| **mlp** |"))
    assert "1 on data that failed its published checksum" in row
    assert "timings of 1 taken while other processes kept the cores busy" in row


# -- 5. atomic writes -----------------------------------------------------------------------------

def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_report_that_fails_half_written_leaves_the_previous_one(small_store, tmp_path,
                                                                  monkeypatch):
    before = _snapshot(tmp_path / "reports")
    assert any(p.suffix == ".png" for p in before)
    generate = jinja2.Template.generate

    def dies_half_way(self, *args, **kwargs):
        for i, chunk in enumerate(generate(self, *args, **kwargs)):
            if i == 20:
                raise RuntimeError("killed while writing")
            yield chunk

    monkeypatch.setattr(jinja2.Template, "generate", dies_half_way)
    with pytest.raises(RuntimeError, match="killed while writing"):
        write_report(small_store, tmp_path / "reports")
    assert _snapshot(tmp_path / "reports") == before


def test_a_plot_that_fails_half_written_leaves_the_previous_one(small_store, tmp_path,
                                                                monkeypatch):
    before = _snapshot(tmp_path / "reports")

    def dies_half_way(self, target, *args, **kwargs):
        if hasattr(target, "write"):
            target.write(b"\x89PNG half")
        else:
            Path(target).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        write_report(small_store, tmp_path / "reports")
    assert _snapshot(tmp_path / "reports") == before


# -- 6. an unwritable report folder is found before training -----------------------------------

def test_a_report_folder_under_a_file_stops_the_run_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "small.yaml"
    suite.write_text(yaml.safe_dump({"name": "small", **SMALL}), encoding="utf-8")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    assert main(["run", str(suite), "-q", "--out-dir", str(blocker / "reports")]) == 2
    assert str(blocker / "reports") in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_read_only_report_folder_stops_the_run_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "small.yaml"
    suite.write_text(yaml.safe_dump({"name": "small", **SMALL}), encoding="utf-8")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        if os.access(read_only, os.W_OK):
            pytest.skip("this user writes to a 0o500 folder (root)")
        assert main(["run", str(suite), "-q", "--out-dir", str(read_only)]) == 2
        assert str(read_only) in capsys.readouterr().err
        assert not (tmp_path / "results").exists()
    finally:
        read_only.chmod(0o700)
