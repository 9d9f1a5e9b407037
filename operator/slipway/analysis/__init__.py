"""Analysis of a canary: verdicts of measurements (pure) and the Prometheus provider (the I/O)."""

from slipway.analysis.verdict import PLACEHOLDERS, TemplateError, render_query, verdict_of

__all__ = ["PLACEHOLDERS", "TemplateError", "render_query", "verdict_of"]
