"""The chart's monitoring parts, rendered by the real `helm` and checked by the real `promtool`:
the PrometheusRule (check rules, and unit tests of every alert with input series), the Grafana
dashboard's ConfigMap, and the notification channels' wiring. No cluster: `helm template` only.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from slipway import metrics
from tests.conftest import ROOT

CHART = ROOT / "charts" / "slipway"
DASHBOARD = CHART / "dashboards" / "slipway.json"
RULES_TEST = ROOT / "tests" / "data" / "prometheus-rules-test.yaml"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"


def helm_binary() -> str:
    cache_dir = Path(os.environ.get("SLIPWAY_CACHE", Path.home() / ".cache" / "slipway"))
    for candidate in [
        *sorted(glob.glob(str(cache_dir / "bin" / "*" / "helm"))),
        shutil.which("helm"),
    ]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no helm: hack/build-tools.sh builds it (make tools)")


@cache
def promtool() -> str:
    """Debian's promtool, from the package hack/prometheus.sh unpacks (beside prometheus)."""
    prometheus = subprocess.run(
        ["bash", str(ROOT / "hack" / "prometheus.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    return str(Path(prometheus).with_name("promtool"))


def render(*sets: str, api_versions: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    flags = [f for value in sets for f in ("--set", value)]
    flags += [f for api in api_versions for f in ("--api-versions", api)]
    proc = subprocess.run(
        [helm_binary(), "template", "slipway", str(CHART), "-n", "slipway-system", *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def rules_file(tmp_path: Path, *sets: str) -> Path:
    docs = render("prometheusRule.enabled=true", *sets, api_versions=(PROMETHEUS_RULE_API,))
    [rule] = of_kind(docs, "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, text=True, timeout=120
    )


# -- the PrometheusRule ----------------------------------------------------------------------------


def test_the_alert_rules_pass_promtool_check_rules(tmp_path: Path) -> None:
    proc = run_promtool("check", "rules", str(rules_file(tmp_path)))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout


def test_every_alert_fires_on_its_input_series_and_not_on_the_others(tmp_path: Path) -> None:
    rules_file(tmp_path)
    shutil.copy(RULES_TEST, tmp_path / "rules_test.yaml")

    proc = run_promtool("test", "rules", str(tmp_path / "rules_test.yaml"))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_the_rule_tests_cover_every_alert(tmp_path: Path) -> None:
    alerts = {
        r["alert"] for r in yaml.safe_load(rules_file(tmp_path).read_text())["groups"][0]["rules"]
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }

    assert (
        tested
        == alerts
        == {
            "SlipwayOperatorDown",
            "SlipwayReconcileErrors",
            "SlipwayRolloutRolledBack",
            "SlipwayAnalysisInconclusive",
            "SlipwayModelDeploymentNotReady",
        }
    )


def test_a_wrong_rule_test_fails_so_the_rule_tests_can_fail(tmp_path: Path) -> None:
    rules_file(tmp_path)
    text = RULES_TEST.read_text().replace(
        "exp_labels: {severity: critical", "exp_labels: {severity: page"
    )
    (tmp_path / "rules_test.yaml").write_text(text)

    proc = run_promtool("test", "rules", str(tmp_path / "rules_test.yaml"))

    assert proc.returncode != 0


def test_the_thresholds_and_the_job_selector_are_values(tmp_path: Path) -> None:
    path = rules_file(
        tmp_path, "prometheusRule.notReadyFor=1h", 'prometheusRule.jobSelector=job="ops"'
    )
    rules = {r["alert"]: r for r in yaml.safe_load(path.read_text())["groups"][0]["rules"]}

    assert rules["SlipwayModelDeploymentNotReady"]["for"] == "1h"
    assert rules["SlipwayOperatorDown"]["expr"] == 'absent(up{job="ops"} == 1)'
    assert all('job="ops"' in r["expr"] for r in rules.values())


@pytest.mark.parametrize(
    ("sets", "api_versions"),
    [((), (PROMETHEUS_RULE_API,)), (("prometheusRule.enabled=true",), ())],
    ids=["disabled", "no-prometheus-operator"],
)
def test_no_prometheus_rule_unless_enabled_and_its_crd_exists(
    sets: tuple[str, ...], api_versions: tuple[str, ...]
) -> None:
    assert of_kind(render(*sets, api_versions=api_versions), "PrometheusRule") == []


def test_the_service_monitor_keeps_the_modeldeployments_namespace_label() -> None:
    [monitor] = of_kind(render("serviceMonitor.enabled=true"), "ServiceMonitor")

    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


# -- the dashboard ---------------------------------------------------------------------------------


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_the_dashboard_configmap_carries_the_dashboard_file_and_the_sidecar_label() -> None:
    docs = render(
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.namespace=monitoring",
        "grafanaDashboard.annotations.grafana_folder=Slipway",
    )
    [configmap] = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "slipway-dashboard"
    ]

    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Slipway"}
    assert json.loads(configmap["data"]["slipway.json"]) == json.loads(DASHBOARD.read_text())


def test_the_dashboard_is_off_by_default() -> None:
    names = [d["metadata"]["name"] for d in of_kind(render(), "ConfigMap")]

    assert "slipway-dashboard" not in names


def test_the_dashboard_queries_only_metrics_the_operator_exports() -> None:
    exported = {
        sample_name
        for family in metrics.METRICS.registry.collect()
        if family.name.startswith("slipway_")
        for sample_name in (family.name, f"{family.name}_total", f"{family.name}_bucket")
    }
    queried = {name for expr in dashboard_exprs() for name in re.findall(r"slipway_\w+", expr)}

    assert queried <= exported, queried - exported
    # the operator, and one ModelDeployment's rollout
    for name in (
        "slipway_reconcile_total",
        "slipway_reconcile_errors_total",
        "slipway_work_queue_depth",
        "slipway_api_writes_total",
        "slipway_modeldeployment_phase",
        "slipway_canary_weight",
        "slipway_analysis_measurement_value",
        "slipway_analysis_threshold",
    ):
        assert name in queried, name


def test_every_panel_queries_the_dashboards_data_source() -> None:
    board = json.loads(DASHBOARD.read_text())

    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


# -- notifications ---------------------------------------------------------------------------------


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = of_kind(docs, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_notification_channels_take_their_urls_from_secrets_never_from_the_arguments() -> None:
    container = operator_container(
        render(
            "notifications.channels[0].name=ml-team",
            "notifications.channels[0].type=slack",
            "notifications.channels[0].secretName=slipway-notifications",
            "notifications.channels[1].name=audit",
            "notifications.channels[1].type=webhook",
            "notifications.channels[1].secretName=audit-hook",
            "notifications.channels[1].secretKey=url",
            "notifications.retries=1",
        )
    )

    args = container["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--notify-channel"] == [
        "ml-team=slack",
        "audit=webhook",
    ]
    assert args[args.index("--notify-retries") + 1] == "1"
    env = {e["name"]: e for e in container["env"]}
    assert env["SLIPWAY_NOTIFY_URL_ML_TEAM"]["valueFrom"]["secretKeyRef"] == {
        "name": "slipway-notifications",
        "key": "ml-team",
    }
    assert env["SLIPWAY_NOTIFY_URL_AUDIT"]["valueFrom"]["secretKeyRef"] == {
        "name": "audit-hook",
        "key": "url",
    }


def test_without_channels_the_operator_gets_no_notification_flags() -> None:
    assert not any(a.startswith("--notify") for a in operator_container(render())["args"])


@pytest.mark.parametrize(
    "sets",
    [
        ("notifications.channels[0].name=ML_team", "notifications.channels[0].type=slack"),
        ("notifications.channels[0].name=ml", "notifications.channels[0].type=email"),
    ],
    ids=["bad-name", "bad-type"],
)
def test_the_schema_refuses_a_channel_that_cannot_work(sets: tuple[str, ...]) -> None:
    flags = [
        f for value in (*sets, "notifications.channels[0].secretName=s") for f in ("--set", value)
    ]
    proc = subprocess.run(
        [helm_binary(), "template", "slipway", str(CHART), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode != 0
    assert "/notifications/channels/0" in proc.stderr
