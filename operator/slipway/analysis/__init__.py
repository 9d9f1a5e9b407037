"""Analysis of a canary: verdicts and built-in checks (pure), the Prometheus provider and the
runner that measures off the reconcile workers (the I/O)."""

from slipway.analysis.checks import CHECK_TABLE, CheckQueries, check_queries, series_selector
from slipway.analysis.verdict import PLACEHOLDERS, Side, TemplateError, render_query, verdict_of

__all__ = [
    "CHECK_TABLE",
    "PLACEHOLDERS",
    "CheckQueries",
    "Side",
    "TemplateError",
    "check_queries",
    "render_query",
    "series_selector",
    "verdict_of",
]
