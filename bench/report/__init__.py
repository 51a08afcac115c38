"""Reports from a results store: Markdown and HTML (Jinja2) with learning-curve plots."""

from bench.report.render import write_report

__all__ = ["write_report"]
