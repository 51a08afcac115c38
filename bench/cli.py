"""Command line: ``python -m bench run | budget | report | compare | export | list | speed-report | speed-interleaved``.

User errors (a malformed suite, a missing store, offline data) print one message and exit 2,
with no traceback. ``run`` exits 1 when a run failed with an error (a bug, not a diverging
model: divergence and unavailable adapters are results, recorded as such).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from adapters import AdapterError
from bench.errors import KanbenchError
from bench.export_layouts import PYKAN_LOGGER_VALUES, SERIES_LAYOUTS, pykan_logger_table
from bench.speed.interleaved import KINDS, render_markdown, select_configs, speed_interleaved


def _fmt_metric(metric: str | None, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.4g}"


class TqdmProgress:
    """A progress bar over runs, with the runs training now and the failed ones (errors and
    timeouts) counted beside it, and one summary line per run."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar: tqdm | None = None
        self.running: dict[str, str] = {}  # key -> dataset / model / seed, in start order
        self.failed = 0

    def start(self, total: int, pending: int) -> None:
        done = total - pending
        if done:
            tqdm.write(f"{done} of {total} runs already finished in the store: not redone")
        self.bar = tqdm(total=total, initial=done, unit="run", disable=self.quiet,
                        dynamic_ncols=True)

    def _show(self, detail: str | None = None) -> None:
        if self.bar is None:
            return
        counts = f"{len(self.running)} running" + (f", {self.failed} failed" if self.failed
                                                    else "")
        latest = detail or next(reversed(self.running.values()), "")
        self.bar.set_postfix_str(f"{counts}: {latest}" if latest else counts)

    def run_started(self, spec) -> None:
        self.running[spec.key] = f"{spec.dataset_label} / {spec.model} / seed {spec.seed}"
        self._show()

    def run_epoch(self, spec, epoch: int, epochs: int, metric: str, value: float) -> None:
        self._show(f"{self.running.get(spec.key, spec.title)}: epoch {epoch}/{epochs}, "
                   f"validation {metric} {_fmt_metric(metric, value)}")

    def run_finished(self, spec, result) -> None:
        self.running.pop(spec.key, None)
        if result.status == "ok":
            line = (f"{result.metric} test {_fmt_metric(result.metric, result.test_metric)} "
                    f"(train {_fmt_metric(result.metric, result.train_metric)}, "
                    f"epoch {result.best_epoch}/{result.epochs}), {result.params:,} params, "
                    f"{result.train_time_s:.1f}s")
        elif result.status == "diverged":
            line = f"DIVERGED at step {result.diverged_step}"
        elif result.status == "skipped":
            line = f"skipped: {result.error}"
        elif result.status == "timeout":
            line = f"TIMEOUT: {(result.error or '').splitlines()[0]}"
        else:
            line = f"ERROR: {(result.error or '').splitlines()[0]}"
        self.failed += result.status in ("error", "timeout")
        if not self.quiet:
            tqdm.write(f"[{result.status:>8}] {spec.title}: {line}")
        if self.bar is not None:
            self.bar.update(1)
        self._show()

    def run_done_elsewhere(self, spec) -> None:
        if not self.quiet:
            tqdm.write(f"[   other] {spec.title}: finished by another process on this store")
        if self.bar is not None:
            self.bar.update(1)

    def waiting(self, runs: int, holders: list[str]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"waiting for {runs} runs held by {', '.join(holders)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _execution(args: argparse.Namespace, suite_path: str, spec) -> Execution:
    """Where the runs train: the suite's ``execution`` block, overridden by the command line;
    every inconsistency is an error before any data is loaded."""
    from bench.errors import SuiteError
    from bench.executors import Execution, ray_missing, unreachable_ray_address
    from bench.machine import usable_cpus

    executor = args.executor or spec.executor
    if args.jobs is not None and executor != "process":
        raise KanbenchError("--jobs sets the worker processes of --executor process")
    if args.address is not None and executor != "ray":
        raise KanbenchError("--address names the Ray cluster of --executor ray")
    for flag, value, least in (("--jobs", args.jobs, 1), ("--retries", args.retries, 0)):
        if value is not None and value < least:
            raise KanbenchError(f"{flag} must be at least {least}, got {value}")
    if args.timeout is not None and not args.timeout > 0:
        raise KanbenchError(f"--timeout must be a number of seconds above 0, got {args.timeout}")
    cpus, usable = spec.resources.cpus, usable_cpus()
    jobs = 1
    if executor == "process":
        jobs = args.jobs or spec.jobs or max(1, usable // (cpus or 1))
        threads = cpus or max(1, usable // jobs)
        if jobs * threads > usable:
            where = (f"{suite_path}: execution.resources.cpus" if cpus else "--jobs")
            raise KanbenchError(
                f"{jobs} workers x {threads} torch threads exceed the {usable} CPUs this process "
                f"may use: their timings would be taken under contention ({where}; at most "
                f"{max(1, usable // threads)} workers of {threads} threads)")
    if executor == "ray" and (reason := ray_missing()):
        raise KanbenchError(reason)
    address = args.address or (spec.address if executor == "ray" else None)
    if executor == "ray" and (reason := unreachable_ray_address(address)):
        raise KanbenchError(reason)
    if executor != "ray" and spec.resources.gpus:
        raise SuiteError(suite_path, "execution.resources.gpus",
                         "GPUs per run are reserved by executor: ray; the local and process "
                         "executors use the suite's device")
    return Execution(
        executor=executor, jobs=jobs,
        address=address,
        cpus=cpus, gpus=spec.resources.gpus,
        timeout_s=args.timeout if args.timeout is not None else spec.timeout,
        retries=args.retries if args.retries is not None else spec.retries)


def _cmd_run(args: argparse.Namespace) -> int:
    from bench import suite as suite_mod
    from bench.errors import SuiteError
    from bench.names import file_stem, plain_name
    from bench.plan import build_plan
    from bench.report import write_report
    from bench.report.files import check_writable_folder
    import torch

    from bench.machine import busy_warning
    from bench.runner import execute
    from bench.store import Store, default_store_path

    suite = suite_mod.load(args.suite)
    execution = _execution(args, args.suite, suite.execution)
    name = suite.name or Path(args.suite).stem  # as the planner names the runs' suite
    # Everything that could stop the reports is checked before any data is loaded or trained:
    # the names that become file names, and the reports folder.
    try:
        plain_name(name, "suite name")
    except KanbenchError as exc:
        raise SuiteError(args.suite, "name", str(exc)) from None
    for i, entry in enumerate(suite.datasets):
        try:
            file_stem(entry.display, "dataset label", unique=True)  # names its plot
        except KanbenchError as exc:
            raise SuiteError(args.suite, f"datasets[{i}].label", str(exc)) from None
    if not args.no_report:
        check_writable_folder(args.out_dir, "reports folder")
    plan = build_plan(suite, args.suite, device=args.device, data_dir=args.data_dir)
    _warn_left_out(suite)
    store_path = Path(args.store) if args.store else default_store_path(name)
    with Store(store_path) as store:
        busy = busy_warning(torch.get_num_threads())
        if busy:
            print(f"warning: {busy}", file=sys.stderr)
        if execution.executor == "local" and execution.cpus:
            torch.set_num_threads(execution.cpus)
        summary = execute(plan, store, retry_errors=args.retry_errors,
                          progress=TqdmProgress(quiet=args.quiet), execution=execution)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "nothing new"
    others = f", {summary.elsewhere} by another process" if summary.elsewhere else ""
    redone = (f"; {summary.data_changed} stored on other data were run again"
              if summary.data_changed else "")
    print(f"{summary.total} runs: {summary.reused} already finished, ran {summary.ran} ({counts})"
          f"{others}{redone}; store {store_path}")
    if not args.no_report:
        md, html = write_report(store_path, args.out_dir, name,
                                run_keys=[spec.key for spec in plan.runs],
                                description=suite.description)
        print(f"reports: {md} {html}")
    return 1 if summary.statuses.get("error") else 0


def _warn_left_out(suite) -> None:
    """Name every model and dataset a broken plugin took out of the plan, with the reason."""
    for what, why in suite.left_out.items():
        print(f"warning: {what} left out of the plan: {why}", file=sys.stderr)


def _cmd_budget(args: argparse.Namespace) -> int:
    from bench import suite as suite_mod
    from bench.plan import build_plan

    suite = suite_mod.load(args.suite)
    plan = build_plan(suite, args.suite, device=args.device, data_dir=args.data_dir)
    _warn_left_out(suite)
    import adapters

    models = suite.expanded_models()
    print(f"suite {suite.name}: {len(plan.runs)} runs "
          f"({len(plan.shapes)} datasets x {len(models)} models x "
          f"{len(suite.resolved_schemes())} schemes x {len(suite.seeds)} seeds"
          + (f" x (1 control + {len(suite.shocks())} shocks)" if suite.shocks() else "") + ")")
    print("FLOPs: per sample, forward; nominal = the fairness study's convention (KANbeFair), "
          "impl = as the implementation executes it")
    for label, solved in plan.solved.items():
        data = plan.shapes[label]
        print(f"\n{label}: in={data.in_dim} out={data.out_dim} ({data.task})")
        print(f"  {'model':<18} {'adapter':<14} {'architecture':<34} {'params':>10} "
              f"{'FLOPs nominal':>14} {'FLOPs impl':>12}  budget")
        for _, m in models:
            s = solved[m.name]
            adapter = adapters.get(m.adapter)
            flops = adapter.flops(s.spec, data.in_dim, data.out_dim)
            nominal = "-" if flops.nominal is None else f"{flops.nominal:,.0f}"
            if s.target is None:
                budget = "fixed"
            else:
                ref = f"match {s.reference}" if s.reference else "target"
                unit = "" if s.by == "params" else f" {s.by.replace('_', ' ')}"
                budget = (f"{ref} {s.target:,}{unit} ({s.rel_error:+.2%}, tolerance "
                          f"{s.tolerance:.0%})")
            print(f"  {m.name:<18} {m.adapter:<14} {s.spec.describe(adapter.family):<34} "
                  f"{s.params:>10,} {nominal:>14} {flops.impl:>12,.0f}  {budget}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    name, run_keys, description = args.suite_name, None, None
    if args.suite:  # the runs of the suite's current plan, as `run` would plan it here
        import torch

        from bench import suite as suite_mod
        from bench.plan import build_plan

        suite = suite_mod.load(args.suite)
        device = args.device or suite.device
        # Keys hold only the device type: runs made on a GPU are reported without one.
        elsewhere = device.startswith("cuda") and not torch.cuda.is_available()
        plan = build_plan(suite, args.suite, device="cpu" if elsewhere else device,
                          data_dir=args.data_dir)
        specs = [s.model_copy(update={"device": device}) if elsewhere else s for s in plan.runs]
        run_keys = [spec.key for spec in specs]
        description = suite.description
        name = name or suite.name or Path(args.suite).stem
    md, html = write_report(args.store, args.out_dir, name, run_keys=run_keys,
                            description=description, speed=args.speed)
    print(f"reports: {md} {html}")
    return 0


def _series_layout(args: argparse.Namespace) -> str | None:
    """The layout of the per-step series asked for (None: the per-run table), checked."""
    if args.wide and args.layout not in (None, "wide"):
        raise KanbenchError(f"--wide is --layout wide: it contradicts --layout {args.layout}")
    layout = "wide" if args.wide else args.layout
    if layout is not None and not args.series:
        flag = "--wide" if args.wide else f"--layout {layout}"
        raise KanbenchError(f"{flag} shapes the per-step series: use it with --series")
    if args.all_models and layout != "pykan-logger":
        raise KanbenchError("--all-models widens --layout pykan-logger: use it with that layout")
    return (layout or "long") if args.series else None


def _cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare_stores, render

    if not 0 < args.level < 1:
        raise KanbenchError(f"--level must be between 0 and 1, got {args.level}")
    comparison = compare_stores(args.old, args.new, args.level)
    print(render(comparison))
    if args.output:
        comparison.metrics.to_csv(args.output, index=False)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from bench.shocks import with_shocks
    from bench.store import Store

    layout = _series_layout(args)
    if args.format == "parquet":
        _require_pyarrow()
        if not args.output:
            raise KanbenchError("--format parquet writes a binary file: give -o FILE")
    with Store(args.store, readonly=True) as store:
        if layout == "pykan-logger":
            df = pykan_logger_table(store.series(names=PYKAN_LOGGER_VALUES), store.runs(),
                                    all_models=args.all_models)
            if df.empty:
                which = "runs" if args.all_models else "pykan runs"
                print(f"note: no {which} with a per-step train_loss series in {args.store}: "
                      f"wrote the columns only, no rows", file=sys.stderr)
        else:
            df = store.series(wide=layout == "wide") if layout else with_shocks(
                store, store.export())
    if args.format == "parquet":
        df.to_parquet(args.output, index=False)
        return 0
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        if args.format == "csv":
            df.to_csv(out, index=False)
        else:
            df.to_json(out, orient="records", indent=1)
            out.write("\n")
    finally:
        if args.output:
            out.close()
    return 0


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise KanbenchError("--format parquet needs pyarrow: pip install pyarrow "
                            "(or export csv or json)") from None


def _cmd_list(args: argparse.Namespace) -> int:
    import adapters
    from bench.datasets import dataset_entry, dataset_names

    if args.what in ("adapters", "all"):
        print("adapters:")
        print(f"  {'name':<16} {'family':<6} {'basis':<13} {'provider':<16} {'version':<14} state")
        for name in adapters.names():
            a = adapters.get(name)
            reason = a.unavailable_reason()
            state = "available" if reason is None else f"unavailable: {reason}"
            basis = a.basis if a.family == "kan" else "-"
            library = a.provenance() if reason is None else {}
            print(f"  {name:<16} {a.family:<6} {basis:<13} "
                  f"{library.get('provider', '-'):<16} {library.get('version', '-'):<14} {state}")
        for name, why in sorted(adapters.broken().items()):
            print(f"  {name:<16} {'-':<6} {'-':<13} {'-':<16} {'-':<14} broken plugin: {why}")
    if args.what in ("datasets", "all"):
        print("datasets:")
        for name in dataset_names():
            e = dataset_entry(name)
            where = "offline" if e.offline else "download/cache"
            print(f"  {name:<24} {e.task:<15} {where:<15} {e.description}")
        from bench.datasets.plugins import broken_datasets

        for name, why in sorted(broken_datasets().items()):
            print(f"  {name:<24} {'-':<15} {'-':<15} broken plugin: {why}")
    return 0


def _cmd_speed_report(args: argparse.Namespace) -> int:
    from bench.speed.report import speed_report

    md, html = speed_report(args.benchmark_json, args.out_dir)
    print(f"speed reports: {md} {html}")
    return 0


def _cmd_speed_interleaved(args: argparse.Namespace) -> int:
    import torch

    configs = select_configs(args.config)
    torch.set_num_threads(args.threads)
    groups = speed_interleaved(configs, args.impl, kinds=args.kind or ["train_step"], rounds=args.rounds,
                               warmup=args.warmup, device=args.device,
                               progress=lambda line: print(line, file=sys.stderr))
    text = render_markdown(groups, rounds=args.rounds, threads=args.threads)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"interleaved ratios: {args.out}")
    else:
        print(text, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    def data_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--device", help="auto | cpu | cuda[:N] (overrides the suite)")
        sp.add_argument("--data-dir", help="data root (overrides the suite's data_dir and "
                                           "the KANBENCH_DATA environment variable)")

    r = sub.add_parser("run", help="run a suite (finished runs in the store are not redone)")
    r.add_argument("suite", help="suite YAML file, e.g. suites/tabular.yaml")
    r.add_argument("--store", help="results store (default results/<suite-name>.sqlite)")
    r.add_argument("--out-dir", default="reports", help="where reports go (default reports/)")
    r.add_argument("--retry-errors", action="store_true",
                   help="redo runs that failed with an error or went over the timeout")
    r.add_argument("--no-report", action="store_true", help="do not write reports at the end")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-run lines")
    r.add_argument("--executor", choices=["local", "process", "ray"],
                   help="local: every run in this process (the default); process: in --jobs "
                        "local worker processes, each with CPUs / jobs torch threads; ray: as "
                        "Ray tasks, here or on a cluster (--address; pip install -e \".[ray]\")"
                        "; overrides the suite's execution.executor")
    r.add_argument("--jobs", type=int, help="worker processes of --executor process "
                                            "(default: the CPUs this process may use / "
                                            "execution.resources.cpus)")
    r.add_argument("--address", help="--executor ray: the cluster to join, 'auto' (the one "
                                     "started on this node with ray start) or HOST:PORT "
                                     "(default: start Ray on this machine)")
    r.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="a run still training after this long is stopped and recorded as "
                        "'timeout' (overrides execution.timeout)")
    r.add_argument("--retries", type=int, help="times a run is retried after the worker "
                                               "running it died (default 1)")
    data_opts(r)
    r.set_defaults(func=_cmd_run)

    b = sub.add_parser("budget", help="show resolved architectures and parameter counts")
    b.add_argument("suite")
    data_opts(b)
    b.set_defaults(func=_cmd_budget)

    rep = sub.add_parser("report", help="write Markdown and HTML reports from a store")
    rep.add_argument("store", nargs="+", help="one store, or several merged into one report "
                                              "(a run stored twice is shown once: its latest)")
    rep.add_argument("--speed", nargs="+", metavar="BENCHMARK.json",
                     help="pytest-benchmark JSON files (tests/benchmarks): a Speed section with "
                          "each implementation's time as a ratio to the matched MLP")
    rep.add_argument("--out-dir", default="reports")
    rep.add_argument("--suite", help="suite YAML file: report only the runs of its current "
                                     "plan (default: every run in the store, said so)")
    rep.add_argument("--suite-name", help="report name (default: the suite's, else the one "
                                          "stored in the runs)")
    data_opts(rep)
    rep.set_defaults(func=_cmd_report)

    c = sub.add_parser("compare", help="what changed between two stores of the same suite: "
                                       "runs added, missing, with another status, and test "
                                       "metrics changed beyond seed noise")
    c.add_argument("old", help="the earlier store")
    c.add_argument("new", help="the later store")
    c.add_argument("--level", type=float, default=0.05,
                   help="significance level of the per-group test (default 0.05)")
    c.add_argument("-o", "--output", help="also write the per-group metric table as CSV")
    c.set_defaults(func=_cmd_compare)

    e = sub.add_parser("export", help="one tidy row per run (every stored per-run value a "
                                      "column), or the per-step series")
    e.add_argument("store")
    e.add_argument("--format", choices=["csv", "json", "parquet"], default="csv",
                   help="parquet needs pyarrow and -o")
    e.add_argument("--series", action="store_true",
                   help="the per-step series instead: one row per run, step and name")
    e.add_argument("--layout", choices=SERIES_LAYOUTS,
                   help="with --series: long (default; one row per run, step and name), wide "
                        "(one row per run and step, one column per name) or pykan-logger (the "
                        "pykan study's per-step logger CSV: one row per run and step, columns "
                        "run_key, model, dataset, seed, step, train_loss, test_loss, reg, "
                        "subnode_act_mean, edge_act_mean, act_scale_mean, "
                        "act_scale_spline_mean, coef_mean; regression losses as RMSE)")
    e.add_argument("--wide", action="store_true", help="the same as --layout wide")
    e.add_argument("--all-models", action="store_true",
                   help="with --layout pykan-logger: every run, KAN and MLP (default: pykan "
                        "runs only; pykan's activation columns stay empty for the others and "
                        "coef_mean is 0 for models without spline coefficients)")
    e.add_argument("-o", "--output", help="write to a file instead of standard output")
    e.set_defaults(func=_cmd_export)

    ls = sub.add_parser("list", help="list adapters and datasets")
    ls.add_argument("what", nargs="?", choices=["adapters", "datasets", "all"], default="all")
    ls.set_defaults(func=_cmd_list)

    s = sub.add_parser("speed-report", help="turn pytest-benchmark JSON into ratio tables "
                                             "(several runs' files: ranges over the runs)")
    s.add_argument("benchmark_json", nargs="+", help="pytest-benchmark JSON file(s), one per run")
    s.add_argument("--out-dir", default="reports")
    s.set_defaults(func=_cmd_speed_report)

    il = sub.add_parser("speed-interleaved",
                        help="speed ratios from rounds that time every implementation in turn")
    il.add_argument("--config", action="append",
                    help="WIDTHS[:bBATCH][:GGRID] of a benchmark configuration, e.g. 784,64,10:G50 "
                         "(repeatable; default: all of them)")
    il.add_argument("--impl", action="append", help="implementation (repeatable; default: every adapter)")
    il.add_argument("--kind", action="append", choices=KINDS,
                    help="what to time (repeatable; default train_step)")
    il.add_argument("--rounds", type=int, default=30)
    il.add_argument("--warmup", type=int, default=3, help="untimed rounds first (torch.compile's first calls)")
    il.add_argument("--threads", type=int, default=2)
    il.add_argument("--device", default="cpu")
    il.add_argument("--out", help="write the Markdown table here instead of standard output")
    il.set_defaults(func=_cmd_speed_interleaved)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # torch.compile on a CPU-only machine warns that no CUDA runtime exists
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except (KanbenchError, AdapterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `export ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted: finished runs are in the store; run the same command to resume",
              file=sys.stderr)
        return 130
