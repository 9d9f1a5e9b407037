"""Built-in checks: the PromQL of every check for every runtime, in one table. Pure.

A check is measured per revision: `$selector` becomes the label matchers that the scrape gives
the series of that revision's pods (slipway.resources.scraping: namespace, modeldeployment,
revision), `$window` the analysis window. The canary and stable are measured with the PromQL of
their own runtime, so a canary that moves to another server is still compared fairly.

Where the series come from:
- MLServer: read off MLServer 1.7.1's own metrics endpoint (port 8082) while it answered good and
  failing V2 requests. `model_infer_request_success_total` / `_failure_total` count every inference
  (REST and gRPC; a request for an unknown model is a failure too); a series appears at its first
  increment, so a healthy server has no failure series and a server failing everything no success
  series (hence `or vector(0)` for each). They are two metric names with the same labels, so each
  is summed on its own before they are added.
  `model_infer_request_duration` is a summary without quantiles, so latency comes from the REST
  server's histogram `rest_server_request_duration_seconds` (starlette_exporter; REST only).
- Triton: its documented metrics (docs/user_guide/metrics.md of triton-inference-server/server;
  not run here). Counters have no `_total` suffix. Latency is a cumulative counter in
  microseconds; quantiles only exist as a summary with `--metrics-config summary_latencies=true`.
- vLLM: its documented metrics (docs.vllm.ai "Production Metrics", and the HTTP metrics its
  OpenAI server exposes through prometheus-fastapi-instrumentator; not run here): the
  `vllm:e2e_request_latency_seconds` histogram, and `http_requests_total` by handler and status.
- A server without a preset names its own series in spec.runtime.metrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from string import Template

from slipway.api import Check, ServingSpec
from slipway.resources.presets import PRESETS

# the label names the scrape gives every series of a serving pod (the contract of the relabelling)
NAMESPACE_LABEL = "namespace"
MODEL_DEPLOYMENT_LABEL = "modeldeployment"
REVISION_LABEL = "revision"
TRACK_LABEL = "track"

CUSTOM = "custom"
QUANTILES = {
    Check.LATENCY_P50: "0.5",
    Check.LATENCY_P95: "0.95",
    Check.LATENCY_P99: "0.99",
}


@dataclass(frozen=True)
class CheckQueries:
    """The PromQL of one check for one runtime: `$selector` and `$window` are filled in."""

    value: str  # the number judged
    samples: str  # how many requests (or observations) it rests on
    no_data: str = ""  # what to say when it has no data, beyond "no data"


def _counted(*counters: str) -> str:
    """The increase of `counters` over the window, added up; a counter with no series yet (a
    server creates one at its first increment) counts 0."""
    parts = [f"(sum(increase({counter}[$window])) or vector(0))" for counter in counters]
    return parts[0] if len(parts) == 1 else "(" + " + ".join(parts) + ")"


def _error_rate(errors: str, *requests: str) -> CheckQueries:
    """Failed requests / all requests; `requests` are counters whose sum is every request (no
    traffic at all gives 0 / 0: NaN, which is no data)."""
    return CheckQueries(
        value=f"{_counted(errors)} / {_counted(*requests)}",
        samples=_counted(*requests),
    )


def _histogram(name: str, matchers: str, check: Check) -> CheckQueries:
    """A latency check over a Prometheus histogram `name` (seconds) with extra `matchers`."""
    inside = "{$selector" + (f",{matchers}" if matchers else "") + "}"
    samples = f"sum(increase({name}_count{inside}[$window]))"
    if check is Check.LATENCY_MEAN:
        value = f"sum(rate({name}_sum{inside}[$window])) / sum(rate({name}_count{inside}[$window]))"
    else:
        value = (
            f"histogram_quantile({QUANTILES[check]}, "
            f"sum by (le) (rate({name}_bucket{inside}[$window])))"
        )
    return CheckQueries(value=value, samples=samples)


def _triton_latency(check: Check) -> CheckQueries:
    served = _counted(*_TRITON_COUNTERS)
    if check is Check.LATENCY_MEAN:
        return CheckQueries(
            value="sum(rate(nv_inference_request_duration_us{$selector}[$window]))"
            " / sum(rate(nv_inference_request_success{$selector}[$window])) / 1e6",
            samples=served,
        )
    # a summary's quantiles are each pod's own, over the pod's sliding window: take the worst pod
    return CheckQueries(
        value="max(nv_inference_request_summary_us{$selector,"
        f'quantile="{QUANTILES[check]}"}}) / 1e6',
        samples="sum(increase(nv_inference_request_summary_us_count{$selector}[$window]))",
        no_data="Triton publishes latency quantiles only with "
        "--metrics-config summary_latencies=true (runtime.args); latency-mean needs nothing",
    )


# successes and failures are two counters; their sum is every inference request
_MLSERVER_COUNTERS = (
    "model_infer_request_success_total{$selector}",
    "model_infer_request_failure_total{$selector}",
)
_TRITON_COUNTERS = (
    "nv_inference_request_success{$selector}",
    "nv_inference_request_failure{$selector}",
)
_VLLM_REQUESTS = 'http_requests_total{$selector,handler=~"/v1/.+",method="POST"}'
_LATENCIES = (Check.LATENCY_P50, Check.LATENCY_P95, Check.LATENCY_P99, Check.LATENCY_MEAN)

# (server, check) → its PromQL. Servers are the presets' (slipway.resources.presets).
CHECK_TABLE: dict[tuple[str, Check], CheckQueries] = {
    ("MLServer", Check.ERROR_RATE): _error_rate(_MLSERVER_COUNTERS[1], *_MLSERVER_COUNTERS),
    **{
        ("MLServer", check): _histogram(
            "rest_server_request_duration_seconds", 'path=~".*/infer"', check
        )
        for check in _LATENCIES
    },
    ("Triton", Check.ERROR_RATE): _error_rate(_TRITON_COUNTERS[1], *_TRITON_COUNTERS),
    **{("Triton", check): _triton_latency(check) for check in _LATENCIES},
    ("vLLM", Check.ERROR_RATE): _error_rate(
        'http_requests_total{$selector,handler=~"/v1/.+",method="POST",status=~"5.."}',
        _VLLM_REQUESTS,
    ),
    **{
        ("vLLM", check): _histogram("vllm:e2e_request_latency_seconds", "", check)
        for check in _LATENCIES
    },
}

_SELECTOR = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<matchers>[^{}]*)\})?$")


class CheckUnavailable(ValueError):
    """A check that cannot be measured for a revision's runtime; the message says why."""


def server_of(serving: ServingSpec) -> str:
    """The server whose PromQL a revision is measured with: its preset's, or custom."""
    preset = PRESETS.get(serving.model.format)
    return preset.server if preset is not None else CUSTOM


def check_queries(check: Check, serving: ServingSpec) -> CheckQueries:
    """The PromQL of `check` for the runtime of `serving`."""
    server = server_of(serving)
    if server != CUSTOM:
        return CHECK_TABLE[(server, check)]
    named = serving.runtime.metrics
    if check is Check.ERROR_RATE:
        if named is None or named.requests is None or named.errors is None:
            raise CheckUnavailable(
                "error-rate on a server without a preset needs spec.runtime.metrics.requests "
                "and .errors (the counters of all and of failed requests)"
            )
        return _error_rate(_with_selector(named.errors), _with_selector(named.requests))
    if named is None or named.latency is None:
        raise CheckUnavailable(
            f"{check.value} on a server without a preset needs spec.runtime.metrics.latency "
            "(a histogram of request durations in seconds)"
        )
    match = _SELECTOR.match(named.latency)
    if match is None:
        raise CheckUnavailable(f"spec.runtime.metrics.latency {named.latency!r} is no selector")
    return _histogram(match["name"], match["matchers"] or "", check)


def _with_selector(selector: str) -> str:
    """A user's series selector (`name` or `name{matchers}`) with `$selector` added."""
    match = _SELECTOR.match(selector)
    if match is None:
        raise CheckUnavailable(f'{selector!r} is not a series selector such as name{{a="b"}}')
    matchers = match["matchers"]
    return match["name"] + "{$selector" + (f",{matchers}" if matchers else "") + "}"


def series_selector(namespace: str, modeldeployment: str, revision: str) -> str:
    """The label matchers of one revision's scraped series (`$selector`, `{{selector}}`)."""
    return (
        f'{NAMESPACE_LABEL}="{namespace}",{MODEL_DEPLOYMENT_LABEL}="{modeldeployment}",'
        f'{REVISION_LABEL}="{revision}"'
    )


def render_check(template: str, selector: str, window: str) -> str:
    """A template of the table with its selector and window."""
    return Template(template).substitute(selector=selector, window=window)
