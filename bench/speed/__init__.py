"""Speed tooling: how fast each implementation trains and runs, beside its parameter-matched MLP.

One concept per module (import them directly; this package imports nothing, so importing
``bench.speed.report`` does not import torch):

- :mod:`bench.speed.harness`: benchmark configurations, parameter-matched MLPs (solved by the
  suites' own budget solver, :func:`bench.budget.solve_width`) and the model builders shared by
  the pytest-benchmark timings (``tests/benchmarks``) and the interleaved ratios;
- :mod:`bench.speed.report`: pytest-benchmark JSON to Markdown/HTML ratio tables
  (``python -m bench speed-report``);
- :mod:`bench.speed.interleaved`: ratios from rounds that time every implementation in turn
  (``python -m bench speed-interleaved``);
- :mod:`bench.speed.memory`: peak tensor memory of one call (a train step).
"""
