"""The built-in checks: every runtime's PromQL, the comparison with stable, and the plan of a round.

Expected queries are written out by hand: they are what Prometheus receives, and what a person
reading status sees.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from slipway.analysis import CHECK_TABLE, Side, check_queries, series_selector, verdict_of
from slipway.analysis.checks import CheckUnavailable, render_check, server_of
from slipway.analysis.measure import plan_round
from slipway.api import AnalysisMetric, Check, ModelDeployment, ServingSpec, Verdict

SEL = 'namespace="ml",modeldeployment="fraud",revision="9ab1c0de77"'


def serving(model_format: str, **runtime: Any) -> ServingSpec:
    return ServingSpec.model_validate(
        {
            "model": {"version": "1", "uri": "s3://m/1", "format": model_format},
            "runtime": {"image": "img" if model_format == "custom" else "", **runtime},
        }
    )


def rendered(check: Check, spec: ServingSpec) -> tuple[str, str]:
    queries = check_queries(check, spec)
    return render_check(queries.value, SEL, "2m"), render_check(queries.samples, SEL, "2m")


MLSERVER_ALL = (
    f"((sum(increase(model_infer_request_success_total{{{SEL}}}[2m])) or vector(0))"
    f" + (sum(increase(model_infer_request_failure_total{{{SEL}}}[2m])) or vector(0)))"
)
MLSERVER_HTTP = "{" + SEL + ',path=~".*/infer"}'
TRITON_ALL = (
    f"((sum(increase(nv_inference_request_success{{{SEL}}}[2m])) or vector(0))"
    f" + (sum(increase(nv_inference_request_failure{{{SEL}}}[2m])) or vector(0)))"
)
VLLM_POST = "{" + SEL + ',handler=~"/v1/.+",method="POST"}'


@pytest.mark.parametrize(
    ("model_format", "check", "value", "samples"),
    [
        (
            "sklearn",
            Check.ERROR_RATE,
            f"(sum(increase(model_infer_request_failure_total{{{SEL}}}[2m])) or vector(0))"
            f" / {MLSERVER_ALL}",
            MLSERVER_ALL,
        ),
        (
            "xgboost",
            Check.LATENCY_P99,
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(rest_server_request_duration_seconds_bucket{MLSERVER_HTTP}[2m])))",
            f"sum(increase(rest_server_request_duration_seconds_count{MLSERVER_HTTP}[2m]))",
        ),
        (
            "lightgbm",
            Check.LATENCY_P50,
            "histogram_quantile(0.5, sum by (le) "
            f"(rate(rest_server_request_duration_seconds_bucket{MLSERVER_HTTP}[2m])))",
            f"sum(increase(rest_server_request_duration_seconds_count{MLSERVER_HTTP}[2m]))",
        ),
        (
            "sklearn",
            Check.LATENCY_MEAN,
            f"sum(rate(rest_server_request_duration_seconds_sum{MLSERVER_HTTP}[2m]))"
            f" / sum(rate(rest_server_request_duration_seconds_count{MLSERVER_HTTP}[2m]))",
            f"sum(increase(rest_server_request_duration_seconds_count{MLSERVER_HTTP}[2m]))",
        ),
        (
            "onnx",
            Check.ERROR_RATE,
            f"(sum(increase(nv_inference_request_failure{{{SEL}}}[2m])) or vector(0))"
            f" / {TRITON_ALL}",
            TRITON_ALL,
        ),
        (
            "pytorch",
            Check.LATENCY_MEAN,
            f"sum(rate(nv_inference_request_duration_us{{{SEL}}}[2m]))"
            f" / sum(rate(nv_inference_request_success{{{SEL}}}[2m])) / 1e6",
            TRITON_ALL,
        ),
        (
            "tensorrt",
            Check.LATENCY_P95,
            f'max(nv_inference_request_summary_us{{{SEL},quantile="0.95"}}) / 1e6',
            f"sum(increase(nv_inference_request_summary_us_count{{{SEL}}}[2m]))",
        ),
        (
            "huggingface",
            Check.ERROR_RATE,
            "(sum(increase(http_requests_total{"
            + SEL
            + ',handler=~"/v1/.+",method="POST",status=~"5.."}[2m])) or vector(0))'
            f" / (sum(increase(http_requests_total{VLLM_POST}[2m])) or vector(0))",
            f"(sum(increase(http_requests_total{VLLM_POST}[2m])) or vector(0))",
        ),
        (
            "huggingface",
            Check.LATENCY_P99,
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(vllm:e2e_request_latency_seconds_bucket{{{SEL}}}[2m])))",
            f"sum(increase(vllm:e2e_request_latency_seconds_count{{{SEL}}}[2m]))",
        ),
    ],
)
def test_every_runtime_has_the_promql_of_its_own_series(
    model_format: str, check: Check, value: str, samples: str
) -> None:
    assert rendered(check, serving(model_format)) == (value, samples)


def test_the_table_covers_every_check_for_every_preset_server() -> None:
    for server in ("MLServer", "Triton", "vLLM"):
        for check in Check:
            queries = CHECK_TABLE[(server, check)]
            for text in (queries.value, queries.samples):
                assert "$selector" in text and "$" not in render_check(text, SEL, "1m")


def test_a_preset_image_override_keeps_the_presets_series() -> None:
    # runtime.image replaces only the image: the preset's wiring, and so its metrics, stay
    assert server_of(serving("sklearn", image="my/mlserver:1.7.2")) == "MLServer"


def test_a_custom_server_is_measured_with_the_series_it_names() -> None:
    spec = serving(
        "custom",
        metrics={
            "port": 9100,
            "requests": 'predict_requests_total{route="/predict"}',
            "errors": 'predict_requests_total{route="/predict",code=~"5.."}',
            "latency": "predict_seconds",
        },
    )
    requests = f'(sum(increase(predict_requests_total{{{SEL},route="/predict"}}[2m])) or vector(0))'
    assert rendered(Check.ERROR_RATE, spec) == (
        f'(sum(increase(predict_requests_total{{{SEL},route="/predict",code=~"5.."}}[2m])) '
        f"or vector(0)) / {requests}",
        requests,
    )
    assert rendered(Check.LATENCY_P99, spec) == (
        f"histogram_quantile(0.99, sum by (le) (rate(predict_seconds_bucket{{{SEL}}}[2m])))",
        f"sum(increase(predict_seconds_count{{{SEL}}}[2m]))",
    )


@pytest.mark.parametrize(
    ("metrics", "check", "needs"),
    [
        (None, Check.ERROR_RATE, "spec.runtime.metrics.requests and .errors"),
        ({"requests": "a_total"}, Check.ERROR_RATE, "spec.runtime.metrics.requests and .errors"),
        ({"requests": "a_total", "errors": "e_total"}, Check.LATENCY_P99, "metrics.latency"),
    ],
)
def test_a_custom_server_without_its_series_named_cannot_be_checked(
    metrics: dict[str, str] | None, check: Check, needs: str
) -> None:
    with pytest.raises(CheckUnavailable, match=needs.replace(".", r"\.")):
        check_queries(check, serving("custom", metrics=metrics))


def test_the_selector_names_the_labels_the_scrape_gives() -> None:
    assert series_selector("ml", "fraud", "9ab1c0de77") == SEL


def relative(**thresholds: float) -> AnalysisMetric:
    return AnalysisMetric(check=Check.ERROR_RATE, **thresholds)


@pytest.mark.parametrize(
    ("metric", "canary", "stable", "min_samples", "verdict", "message"),
    [
        # a busy hour: stable fails 10 %, the canary 11 %: as good as stable within 0.02
        (
            relative(max_increase_over_stable=0.02),
            Side(0.11, 500),
            Side(0.10, 1500),
            100,
            Verdict.SUCCESSFUL,
            "canary 0.11 <= stable 0.1 + 0.02",
        ),
        (
            relative(max_increase_over_stable=0.02),
            Side(0.13, 500),
            Side(0.10, 1500),
            100,
            Verdict.FAILED,
            "canary 0.13 > stable 0.1 + 0.02 (maxIncreaseOverStable)",
        ),
        (
            relative(max_ratio_to_stable=1.2),
            Side(0.6, 500),
            Side(0.5, 500),
            100,
            Verdict.SUCCESSFUL,
            "canary 0.6 <= 1.2 x stable 0.5",
        ),
        (
            relative(max_ratio_to_stable=1.2),
            Side(0.61, 500),
            Side(0.5, 500),
            100,
            Verdict.FAILED,
            "canary 0.61 > 1.2 x stable 0.5 (maxRatioToStable)",
        ),
        # 1.2 x 0 is 0: a canary that errs at all beside a stable that never does fails a ratio
        (
            relative(max_ratio_to_stable=1.2),
            Side(0.001, 500),
            Side(0.0, 500),
            100,
            Verdict.FAILED,
            "canary 0.001 > 1.2 x stable 0 (maxRatioToStable)",
        ),
        # an absolute bound fails first, whatever stable does
        (
            relative(max=0.05, max_increase_over_stable=0.5),
            Side(0.06, 500),
            Side(0.0, 0),
            100,
            Verdict.FAILED,
            "0.06 > max 0.05",
        ),
        (
            relative(max=0.05, max_ratio_to_stable=2),
            Side(0.04, 500),
            Side(0.03, 500),
            100,
            Verdict.SUCCESSFUL,
            "0.04 <= max 0.05; canary 0.04 <= 2 x stable 0.03",
        ),
        # too little traffic on either side, or no data, is Inconclusive
        (
            relative(max_increase_over_stable=0.02),
            Side(0.5, 40),
            Side(0.1, 1500),
            100,
            Verdict.INCONCLUSIVE,
            "40 samples, needs 100",
        ),
        (
            relative(max_increase_over_stable=0.02),
            Side(0.5, 400),
            Side(0.1, 99),
            100,
            Verdict.INCONCLUSIVE,
            "stable: 99 samples, needs 100",
        ),
        (
            relative(max_increase_over_stable=0.02),
            Side(0.5, 400),
            Side(None, 0),
            0,
            Verdict.INCONCLUSIVE,
            "no data for stable",
        ),
        (
            relative(max_increase_over_stable=0.02),
            Side(0.5, 400),
            Side(math.nan, 400),
            0,
            Verdict.INCONCLUSIVE,
            "no data for stable",
        ),
        (
            relative(max_increase_over_stable=0.02),
            Side(0.5, 400),
            None,
            0,
            Verdict.INCONCLUSIVE,
            "no stable revision to compare with",
        ),
    ],
)
def test_a_canary_compared_with_stable_over_the_same_window(
    metric: AnalysisMetric,
    canary: Side,
    stable: Side | None,
    min_samples: int,
    verdict: Verdict,
    message: str,
) -> None:
    got = verdict_of(metric, canary.value, canary.samples, min_samples, stable)
    assert got == (verdict, message)


def analysed(metrics: list[dict[str, Any]], **extra: Any) -> ModelDeployment:
    """A canary of sklearn 2.0.0 beside a stable that runs Triton (it moved servers)."""
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "fraud", "namespace": "ml"},
            "spec": {
                "model": {"version": "2.0.0", "uri": "s3://m/2", "format": "sklearn"},
                "rollout": {
                    "strategy": "Canary",
                    "analysis": {
                        "interval": "30s",
                        "window": "5m",
                        "prometheus": {"address": "http://prom:9090"},
                        "metrics": metrics,
                        **extra,
                    },
                },
            },
            "status": {
                "stable": {
                    "revision": "5d8f3a1c2b",
                    "template": {
                        "model": {"version": "1.0.0", "uri": "s3://m/1", "format": "onnx"}
                    },
                }
            },
        }
    )


def test_a_round_measures_each_side_with_its_own_runtime() -> None:
    md = analysed([{"check": "error-rate", "maxIncreaseOverStable": 0.01}])
    [planned] = plan_round(md, "9ab1c0de77", "5d8f3a1c2b")
    assert planned.metric.metric_name == "error-rate"
    assert planned.canary is not None and planned.stable is not None
    assert "model_infer_request_failure_total" in planned.canary.value
    assert 'revision="9ab1c0de77"' in planned.canary.value and "[5m]" in planned.canary.value
    assert "nv_inference_request_failure" in planned.stable.value
    assert 'revision="5d8f3a1c2b"' in planned.stable.value


def test_a_query_compared_with_stable_is_sent_once_per_revision() -> None:
    md = analysed(
        [
            {
                "name": "p90",
                "query": 'my_p90{ {{selector}} }[{{window}}] + 0*x{r="{{canary.revision}}"}',
                "samplesQuery": 'count{rev="{{revision}}"}',
                "maxRatioToStable": 1.5,
            },
            {"name": "plain", "query": 'x{rev="{{revision}}"}', "max": 1},
        ]
    )
    p90, plain = plan_round(md, "9ab1c0de77", "5d8f3a1c2b")
    assert p90.canary is not None and p90.stable is not None
    assert p90.canary.value == f'my_p90{{ {SEL} }}[5m] + 0*x{{r="9ab1c0de77"}}'
    assert p90.stable.value.startswith(
        'my_p90{ namespace="ml",modeldeployment="fraud",revision="5d8f3a1c2b" }'
    )
    assert (p90.canary.samples, p90.stable.samples) == (
        'count{rev="9ab1c0de77"}',
        'count{rev="5d8f3a1c2b"}',
    )
    assert plain.stable is None  # no comparison, no query for stable
    assert plain.canary is not None and plain.canary.value == 'x{rev="9ab1c0de77"}'


def test_a_check_that_cannot_be_measured_is_planned_as_a_problem_not_an_exception() -> None:
    md = analysed([{"name": "typo", "query": "x{{canary.rev}}", "max": 1}])
    [planned] = plan_round(md, "9ab1c0de77", "5d8f3a1c2b")
    assert planned.canary is None and "unknown placeholder {{canary.rev}}" in planned.problem
