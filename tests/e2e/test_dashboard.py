"""The Grafana dashboard and the operator's /metrics against a real Prometheus scraping a real
operator process: every query of the dashboard parses, those about a ModelDeployment's rollout
return data during a canary, and `promtool check metrics` finds nothing to complain about."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from slipway.api import ModelDeployment
from slipway.resources import revision_of
from tests.dashboard import PrometheusApi, queries, variable_selectors, variables
from tests.e2e.conftest import Driver, InClusterOperator, Operator
from tests.e2e.prom import Exporter, running_prometheus, serve_exporter
from tests.e2e.test_canary import ERROR_RATE, SAMPLES, V2, canary_md, paused_at, start, status
from tests.unit.test_monitoring import promtool


@dataclass(frozen=True)
class Scraped:
    """A Prometheus that scrapes the operator (job "slipway") and the models' exporter."""

    api: PrometheusApi
    address: str
    exporter: Exporter


@pytest.fixture(scope="module")
def scraped(operator: Operator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    if isinstance(operator, InClusterOperator):
        pytest.skip("this Prometheus scrapes a local operator process; the chart's is in-cluster")
    exporter = Exporter()
    server = serve_exporter(exporter)
    targets = {
        "slipway": [f"127.0.0.1:{operator.metrics_port}"],
        "models": [f"127.0.0.1:{exporter.port}"],
    }
    try:
        with running_prometheus(tmp_path_factory.mktemp("prometheus"), targets) as address:
            yield Scraped(PrometheusApi(address), address, exporter)
    finally:
        server.shutdown()


def analysed_canary(k: Driver, scraped: Scraped) -> dict[str, Any]:
    """`fraud` at a 25 % canary that waits for promotion, with a passing analysis of two
    metrics (one with a max, one with a min); returns its status."""
    analysis = {
        "interval": "2s",
        "prometheus": {"address": scraped.address},
        "metrics": [
            {"name": "error-rate", "query": ERROR_RATE, "max": 0.05},
            {"name": "requests", "query": SAMPLES, "min": 5},
        ],
    }
    md = canary_md(steps=[{"setWeight": 25}, {"pause": {}}], analysis=analysis)
    start(k, md)
    model = {**md["spec"]["model"], **V2["model"]}
    revision = revision_of(
        ModelDeployment.from_body({**md, "spec": {**md["spec"], "model": model}}).spec.serving()
    )
    scraped.exporter.set(k.ns, revision, rps=20, error_ratio=0.01)
    k.patch("md", "fraud", {"spec": V2})
    paused_at(k, 25)
    return dict(
        k.wait(
            "a measurement of each metric",
            lambda: (s := status(k)).get("analysis", {}).get("successes", 0) >= 1 and s,
        )
    )


@pytest.mark.usefixtures("operator")
def test_every_dashboard_query_parses_and_the_rollout_ones_return_data_during_a_canary(
    k: Driver, scraped: Scraped
) -> None:
    analysed_canary(k, scraped)
    filled = variables(k.ns, "fraud")
    api = scraped.api

    for query in queries():
        answer = api.query(query.filled(filled))
        assert answer["status"] == "success", (query.panel, answer.get("error"))
    rollout = [q for q in queries() if q.per_modeldeployment]
    assert {q.panel for q in rollout} >= {
        "Phase",
        "Canary weight",
        "Analysis: each measurement against its threshold",
    }
    for query in rollout:
        k.wait(
            f"data for {query.panel}: {query.expr}",
            lambda q=query: api.result(q.filled(filled)),
            timeout=60,
        )
    for selector in variable_selectors():
        expr = selector.replace("$job", "slipway").replace("$namespace", k.ns)
        assert api.result(expr), selector

    def one(expr: str) -> dict[str, float]:
        rows = api.result(expr)
        return {",".join(r["metric"].values()): float(r["value"][1]) for r in rows}

    md = f'job="slipway",namespace="{k.ns}",name="fraud"'
    assert set(one(f"slipway_canary_weight{{{md}}}").values()) == {25.0}
    thresholds = one(f"max by (metric, bound) (slipway_analysis_threshold{{{md}}})")
    assert thresholds == {"max,error-rate": 0.05, "min,requests": 5.0}  # labels sorted by name
    paused = one(f"max by (reason) (slipway_rollout_paused{{{md}}})")
    assert paused == {"WaitingForPromotion": 1.0}
    k.wait(
        "both measurements in Prometheus",
        lambda: (
            set(one(f"max by (metric) (slipway_analysis_measurement_value{{{md}}})"))
            == {"error-rate", "requests"}
        ),
    )


@pytest.mark.usefixtures("operator")
def test_promtool_check_metrics_finds_nothing_in_the_operators_metrics_during_a_canary(
    k: Driver, operator: Operator, scraped: Scraped
) -> None:
    analysed_canary(k, scraped)
    exposition = operator.scrape()
    assert f'slipway_rollout_paused{{name="fraud",namespace="{k.ns}"' in exposition

    proc = subprocess.run(
        [promtool(), "check", "metrics"], input=exposition, capture_output=True, text=True
    )

    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")
