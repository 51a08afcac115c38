"""Speed report: pytest-benchmark JSON (from ``tests/benchmarks``) to Markdown and HTML.

For every kind of measurement (forward, backward, train step) and configuration it lists each
implementation's median time as a ratio to the parameter-matched MLP of the same
configuration, its peak step memory where recorded, and the native kernel's time as a ratio
to the fastest *other* KAN implementation. Given several runs' files, it first gives each of
those ratios' range over the runs (the ratio of each run read within that run; ratios read
from a disturbed measurement left out), then each run's own tables.

The benchmarks put ``impl``, ``family``, ``config`` and ``kind`` in each entry's
``extra_info``; entries without them fall back to the group name ("<kind> <config>") and the
``impl`` test parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment

from bench.errors import KanbenchError

BASELINE = "mlp"
NATIVE = "native"
#: a median more than this multiple of its own minimum marks a disturbed measurement: the
#: rounds were not alike (another process on the cores for part of them). Over five full runs
#: on a 2-core machine, 1 to 4 of 90 entries per run exceeded it (up to 2.3x); the rest stayed
#: below 1.25x.
DISTURBED = 1.25


class SpeedReportError(KanbenchError):
    """A benchmark JSON file that cannot be turned into a speed report."""


@dataclass
class Entry:
    kind: str
    config: str
    impl: str
    family: str
    median: float
    minimum: float
    rounds: int
    peak_bytes: int | None
    ratio: float | None = None  # median / matched MLP median

    @property
    def spread(self) -> float:
        """Median over minimum: 1 when every round took the same time."""
        return self.median / self.minimum if self.minimum > 0 else 1.0


@dataclass
class Group:
    kind: str
    config: str
    entries: list[Entry]
    native_vs_best: float | None
    best_other: str | None
    #: the implementations entering the summary ratios (native, MLP, best other KAN) whose
    #: measurement was disturbed (:data:`DISTURBED`): those ratios need a rerun
    disturbed: list[str]


@dataclass
class Run:
    """One benchmark JSON file's groups."""

    source: str
    groups: list[Group]


@dataclass
class Span:
    """One (kind, config)'s summary ratios over several runs: the values of the runs where
    neither implementation of the ratio was disturbed."""

    kind: str
    config: str
    vs_mlp: list[float]
    vs_best: list[float]
    best_others: list[str]
    runs: int
    disturbed_runs: int


def across_runs(runs: list[list[Group]]) -> list[Span]:
    """The summary ratios of each (kind, config) over ``runs`` (each one file's groups), in the
    first run's order, configurations missing from it after."""
    spans: dict[tuple[str, str], Span] = {}
    for groups in runs:
        for g in groups:
            span = spans.setdefault((g.kind, g.config), Span(g.kind, g.config, [], [], [], 0, 0))
            span.runs += 1
            span.disturbed_runs += bool(g.disturbed)
            native = _native_ratio(g)
            if native is not None and not {NATIVE, BASELINE} & set(g.disturbed):
                span.vs_mlp.append(native)
            if g.native_vs_best is not None and not {NATIVE, g.best_other} & set(g.disturbed):
                span.vs_best.append(g.native_vs_best)
            if g.best_other and g.best_other not in span.best_others:
                span.best_others.append(g.best_other)
    return list(spans.values())


def _entry(raw: dict, path: Path) -> Entry:
    info = raw.get("extra_info") or {}
    params = raw.get("params") or {}
    group = raw.get("group") or ""
    kind = info.get("kind") or (group.split(" ", 1)[0] if group else "")
    config = info.get("config") or (group.split(" ", 1)[1] if " " in group else group)
    impl = info.get("impl") or params.get("impl") or raw.get("name", "?")
    stats = raw.get("stats")
    if not isinstance(stats, dict) or "median" not in stats:
        raise SpeedReportError(f"{path}: benchmark {raw.get('name')!r} has no stats.median")
    family = info.get("family") or ("mlp" if impl == BASELINE else "kan")
    peak = info.get("peak_step_bytes")
    return Entry(
        kind=kind or "?",
        config=config or "?",
        impl=str(impl),
        family=family,
        median=float(stats["median"]),
        minimum=float(stats.get("min", stats["median"])),
        rounds=int(stats.get("rounds", 0)),
        peak_bytes=int(peak) if peak is not None else None,
    )


def load_groups(json_path: str | Path) -> tuple[list[Group], dict]:
    """Entries grouped by (kind, config), ratios filled in; plus the machine info."""
    path = Path(json_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpeedReportError(f"{path}: no such file; run pytest tests/benchmarks "
                               "--benchmark-json=FILE first") from None
    except json.JSONDecodeError as exc:
        raise SpeedReportError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise SpeedReportError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    by_key: dict[tuple[str, str], list[Entry]] = {}
    for raw in data["benchmarks"]:
        e = _entry(raw, path)
        by_key.setdefault((e.kind, e.config), []).append(e)
    groups = []
    for (kind, config), entries in by_key.items():
        entries.sort(key=lambda e: e.median)
        base = next((e for e in entries if e.impl == BASELINE), None)
        for e in entries:
            e.ratio = e.median / base.median if base and base.median > 0 else None
        native = next((e for e in entries if e.impl == NATIVE), None)
        others = [e for e in entries if e.family == "kan" and e.impl != NATIVE]
        best = min(others, key=lambda e: e.median) if others else None
        ratio = native.median / best.median if native and best and best.median > 0 else None
        compared = [e for e in (native, base, best) if e is not None]
        disturbed = [e.impl for e in compared if e.spread > DISTURBED]
        groups.append(Group(kind, config, entries, ratio, best.impl if best else None, disturbed))
    order = {"forward": 0, "backward": 1, "train_step": 2}
    groups.sort(key=lambda g: (order.get(g.kind, 9), g.kind, _config_key(g.config)))
    return groups, data.get("machine_info") or {}


def _config_key(config: str):
    # "[784,64,10] b256 G5" sorts by widths then grid numerically
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", config)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _mib(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f}"


def _span(values: list[float]) -> str:
    """``lo-hi`` over the runs (one value when they agree to two decimals), ``-`` for none."""
    if not values:
        return "-"
    lo, hi = f"{min(values):.2f}", f"{max(values):.2f}"
    return f"{lo}x" if lo == hi else f"{lo}-{hi}x"


_MD = """\
# Speed report

{% if runs | length == 1 %}Source: `{{ runs[0].source }}`{% else %}Sources: {% for r in runs %}`{{ r.source }}`{{ ", " if not loop.last }}{% endfor %}{% endif %}{% if machine %} | {{ machine }}{% endif %}

Times are medians over the timed rounds; **vs MLP** divides by the parameter-matched MLP of
the same configuration; **native vs best other KAN** divides the native kernel's time by the
fastest other KAN implementation's. **disturbed** names the implementations in those ratios
whose median is more than {{ disturbed_limit }}x their fastest round: their rounds were not
alike (other work on the cores), so the ratio is unreliable; rerun before reading it.
{% if runs | length > 1 %}
## Across {{ runs | length }} runs: ranges of the in-run ratios

Each ratio is read within one run; one read from a disturbed measurement is left out of its
range. **disturbed runs** counts the runs in which any ratio of the row was disturbed.

| kind | config | native vs MLP | best other KAN | native vs it | runs | disturbed runs |
|---|---|---|---|---|---|---|
{% for s in spans %}| {{ s.kind }} | {{ s.config }} | {{ span(s.vs_mlp) }} | {{ s.best_others | join(", ") or "-" }} | {{ span(s.vs_best) }} | {{ s.runs }} | {{ s.disturbed_runs }} |
{% endfor %}{% endif %}{% for r in runs %}{% set h = "##" if runs | length == 1 else "###" %}{% if runs | length > 1 %}
## Run {{ loop.index }}: `{{ r.source }}`
{% endif %}
{{ h }} Summary: native vs best other KAN
| kind | config | native vs MLP | best other KAN | native vs it | disturbed |
|---|---|---|---|---|---|
{% for g in r.groups %}| {{ g.kind }} | {{ g.config }} | {{ x(native_ratio(g)) }} | {{ g.best_other or "-" }} | {{ x(g.native_vs_best) }} | {{ g.disturbed | join(", ") }} |
{% endfor %}
{% for g in r.groups %}
{{ h }} {{ g.kind }} {{ g.config }}
| implementation | median ms | min ms | vs MLP | peak step MiB |
|---|---|---|---|---|
{% for e in g.entries %}| {{ e.impl }} | {{ ms(e.median) }} | {{ ms(e.minimum) }} | {{ x(e.ratio) }} | {{ mib(e.peak_bytes) }} |
{% endfor %}{% if g.native_vs_best is not none %}
native vs fastest other KAN ({{ g.best_other }}): **{{ x(g.native_vs_best) }}**
{% endif %}{% if g.disturbed %}
disturbed: {{ spreads(g) }}
{% endif %}{% endfor %}{% endfor %}"""

_HTML = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kanbench speed report</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}
th:first-child,td:first-child{text-align:left}
tr.native{font-weight:bold}
.good{color:#060}.bad{color:#a00}
</style></head><body>
<h1>Speed report</h1>
<p>{% if runs | length == 1 %}Source: <code>{{ runs[0].source }}</code>{% else %}Sources: {% for r in runs %}<code>{{ r.source }}</code>{{ ", " if not loop.last }}{% endfor %}{% endif %}{% if machine %} &middot; {{ machine }}{% endif %}</p>
<p>Times are medians over the timed rounds; <em>vs MLP</em> divides by the parameter-matched
MLP of the same configuration; <em>native vs best other KAN</em> divides the native kernel's
time by the fastest other KAN implementation's. <em>disturbed</em> names the implementations in those
ratios whose median is more than {{ disturbed_limit }}x their fastest round: their rounds were not
alike (other work on the cores), so the ratio is unreliable; rerun before reading it.</p>
{% if runs | length > 1 %}<h2>Across {{ runs | length }} runs: ranges of the in-run ratios</h2>
<p>Each ratio is read within one run; one read from a disturbed measurement is left out of its
range. <em>disturbed runs</em> counts the runs in which any ratio of the row was disturbed.</p>
<table><tr><th>kind</th><th>config</th><th>native vs MLP</th><th>best other KAN</th><th>native vs it</th><th>runs</th><th>disturbed runs</th></tr>
{% for s in spans %}<tr><td>{{ s.kind }}</td><td>{{ s.config }}</td><td>{{ span(s.vs_mlp) }}</td>
<td>{{ s.best_others | join(", ") or "-" }}</td>
<td class="{{ 'good' if s.vs_best and s.vs_best | max < 1 else 'bad' }}">{{ span(s.vs_best) }}</td>
<td>{{ s.runs }}</td><td{% if s.disturbed_runs %} class="bad"{% endif %}>{{ s.disturbed_runs }}</td></tr>
{% endfor %}</table>
{% endif %}{% for r in runs %}{% set h = "h2" if runs | length == 1 else "h3" %}{% if runs | length > 1 %}<h2>Run {{ loop.index }}: <code>{{ r.source }}</code></h2>
{% endif %}<{{ h }}>Summary: native vs best other KAN</{{ h }}>
<table><tr><th>kind</th><th>config</th><th>native vs MLP</th><th>best other KAN</th><th>native vs it</th><th>disturbed</th></tr>
{% for g in r.groups %}<tr><td>{{ g.kind }}</td><td>{{ g.config }}</td><td>{{ x(native_ratio(g)) }}</td>
<td>{{ g.best_other or "-" }}</td>
<td class="{{ 'good' if g.native_vs_best is not none and g.native_vs_best < 1 else 'bad' }}">{{ x(g.native_vs_best) }}</td>
<td class="bad">{{ g.disturbed | join(", ") }}</td></tr>
{% endfor %}</table>
{% for g in r.groups %}<{{ h }}>{{ g.kind }} {{ g.config }}</{{ h }}>
<table><tr><th>implementation</th><th>median ms</th><th>min ms</th><th>vs MLP</th><th>peak step MiB</th></tr>
{% for e in g.entries %}<tr{% if e.impl == native %} class="native"{% endif %}><td>{{ e.impl }}</td><td>{{ ms(e.median) }}</td>
<td>{{ ms(e.minimum) }}</td><td>{{ x(e.ratio) }}</td><td>{{ mib(e.peak_bytes) }}</td></tr>
{% endfor %}</table>
{% if g.native_vs_best is not none %}<p>native vs fastest other KAN ({{ g.best_other }}): <strong>{{ x(g.native_vs_best) }}</strong></p>{% endif %}
{% if g.disturbed %}<p class="bad">disturbed: {{ spreads(g) }}</p>{% endif %}
{% endfor %}{% endfor %}</body></html>
"""


def _native_ratio(g: Group) -> float | None:
    e = next((e for e in g.entries if e.impl == NATIVE), None)
    return e.ratio if e else None


def _spreads(g: Group) -> str:
    spread = {e.impl: e.spread for e in g.entries}
    return ", ".join(f"{impl} (median {spread[impl]:.2f}x its minimum)" for impl in g.disturbed)


def speed_report(json_paths: str | Path | list, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``speed_report.md`` and ``speed_report.html`` into ``out_dir`` from one
    pytest-benchmark JSON file or several runs' files; return their paths."""
    paths = list(json_paths) if isinstance(json_paths, (list, tuple)) else [json_paths]
    if not paths:
        raise SpeedReportError("no benchmark JSON file given")
    runs, machines = [], []
    for path in paths:
        groups, machine = load_groups(path)
        if not groups:
            raise SpeedReportError(f"{path}: no benchmarks in the file")
        runs.append(Run(str(path), groups))
        machines.append(machine)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    context = dict(
        runs=runs,
        spans=across_runs([r.groups for r in runs]) if len(runs) > 1 else [],
        machine=" / ".join(dict.fromkeys(filter(None, map(_machine_text, machines)))),
        native=NATIVE,
        ms=_ms,
        x=_x,
        mib=_mib,
        span=_span,
        native_ratio=_native_ratio,
        spreads=_spreads,
        disturbed_limit=DISTURBED,
    )
    md_env = Environment(autoescape=False, keep_trailing_newline=True)
    html_env = Environment(autoescape=True)
    md_path = out / "speed_report.md"
    html_path = out / "speed_report.html"
    md_path.write_text(md_env.from_string(_MD).render(**context), encoding="utf-8")
    html_path.write_text(html_env.from_string(_HTML).render(**context), encoding="utf-8")
    return md_path, html_path


def _machine_text(machine: dict) -> str:
    text = ", ".join(
        str(machine[k]) for k in ("node", "processor", "cpu") if isinstance(machine.get(k), str) and machine[k]
    )
    if isinstance(machine.get("cpu"), dict):
        text = ", ".join(filter(None, [text, machine["cpu"].get("brand_raw")]))
    return text
