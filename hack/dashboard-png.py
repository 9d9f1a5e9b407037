"""Draw docs/dashboard-canary.png: the Grafana dashboard's own queries during a real canary.

There is no Grafana here, so this plots what Grafana would: it starts the local cluster, the
operator (`slipway run`), a models' exporter and a real Prometheus scraping both, rolls a
ModelDeployment with analysis through a canary (25 %, 50 %, 75 %, a pause until promoted, then
`promote`), and runs every query of charts/slipway/dashboards/slipway.json over that time range
against Prometheus, with the dashboard's variables filled in, laid out like the dashboard.

    make dashboard-png     (installs matplotlib, the `dashboard-png` extra, into .venv)
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from tests.conftest import Cluster, wait_until  # noqa: E402
from tests.dashboard import PrometheusApi, Query, legend, queries, variables  # noqa: E402
from tests.e2e.conftest import Driver, Operator, canary_model_deployment  # noqa: E402
from tests.e2e.prom import Exporter, running_prometheus, serve_exporter  # noqa: E402

from slipway.api import ModelDeployment  # noqa: E402
from slipway.resources import revision_of  # noqa: E402

OUT = ROOT / "docs" / "dashboard-canary.png"
NAMESPACE = "ml"
STEP = 2.0  # seconds between points of the range queries
CANARY = 'namespace="{{namespace}}",revision="{{canary.revision}}"'
ERROR_RATE = (
    f'sum(rate(http_requests_total{{{CANARY},code="500"}}[10s]))'
    f" / sum(rate(http_requests_total{{{CANARY}}}[10s]))"
)
THROUGHPUT = f"sum(rate(http_requests_total{{{CANARY}}}[10s]))"
STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "40s"}},
    {"setWeight": 50},
    {"pause": {"duration": "40s"}},
    {"setWeight": 75},
    {"pause": {}},
]
# the panels drawn, as the dashboard lays them out (its "Operator pods up" stat left out)
LAYOUT = [
    ["Reconciles by result", "Reconcile duration", "Work queue depth", "API writes by verb"],
    ["Phase", "Conditions", "Paused, and why", "ModelDeployments by phase"],
    ["Canary weight", "Analysis: each measurement against its threshold"],
]
STATE_PANELS = {"Phase", "Conditions", "Paused, and why"}


def run_canary(k: Driver, exporter: Exporter, prometheus: str) -> tuple[float, float]:
    """Roll `fraud` from 1.0.0 to 2.0.0 through the steps; return the time range to draw."""
    analysis = {
        "interval": "5s",
        "prometheus": {"address": prometheus},
        "metrics": [
            {"name": "error-rate", "query": ERROR_RATE, "max": 0.05},
            {"name": "throughput", "query": THROUGHPUT, "min": 2},
        ],
    }
    md = canary_model_deployment("fraud", STEPS, replicas=4, analysis=analysis)
    k.apply(md)
    k.wait_phase("fraud", "Ready")
    stable = k.md("fraud")["status"]["stable"]["revision"]
    v2 = {"version": "2.0.0", "uri": "s3://models/fraud/2.0.0"}
    body = {**md, "spec": {**md["spec"], "model": {**md["spec"]["model"], **v2}}}
    canary = revision_of(ModelDeployment.from_body(body).spec.serving())
    exporter.set(NAMESPACE, stable, rps=40, error_ratio=0.004)
    exporter.set(NAMESPACE, canary, rps=0)
    time.sleep(20)
    begin = time.time()
    time.sleep(10)
    k.patch("md", "fraud", {"spec": {"model": v2}})
    for weight in (25, 50, 75):
        k.wait(
            f"weight {weight}",
            lambda w=weight: (
                (k.md("fraud").get("status") or {}).get("canary", {}).get("weight") == w
            ),
            timeout=180,
        )
        # the canary takes its share of the traffic, with an error ratio that moves a little
        exporter.set(NAMESPACE, stable, rps=40 * (100 - weight) / 100, error_ratio=0.004)
        exporter.set(NAMESPACE, canary, rps=40 * weight / 100, error_ratio=0.008 + weight / 4000)
    k.wait_phase("fraud", "Paused", timeout=120)
    time.sleep(20)
    k.cluster.kubectl(
        "annotate", "md", "fraud", "-n", NAMESPACE, "serving.slipway.dev/action=promote"
    )
    k.wait_phase("fraud", "Ready", timeout=120)
    exporter.set(NAMESPACE, canary, rps=40, error_ratio=0.01)
    exporter.set(NAMESPACE, stable, rps=0)
    time.sleep(25)
    return begin, time.time()


def series(api: PrometheusApi, query: Query, begin: float, end: float) -> list[dict[str, Any]]:
    filled = query.filled(variables(NAMESPACE, "fraud", step="10s"))
    rows = api.range(filled, begin, end, STEP)
    return [
        {
            "label": legend(query.legend, r["metric"]) or query.panel,
            "times": [dt.datetime.fromtimestamp(float(t), dt.UTC) for t, _ in r["values"]],
            "values": [float(v) for _, v in r["values"]],
        }
        for r in rows
    ]


def draw(api: PrometheusApi, begin: float, end: float) -> None:
    by_panel: dict[str, list[Query]] = {}
    for q in queries():
        by_panel.setdefault(q.panel, []).append(q)
    plt.style.use("dark_background")
    fig = plt.figure(figsize=(18, 12), dpi=90)
    fig.suptitle(
        "Slipway dashboard during a canary of ml/fraud (1.0.0 → 2.0.0): the dashboard's queries "
        "on a real Prometheus",
        fontsize=13,
    )
    grid = fig.add_gridspec(len(LAYOUT), 12, hspace=0.55, wspace=0.9)
    formatter = mdates.DateFormatter("%H:%M:%S")
    for row, titles in enumerate(LAYOUT):
        width = 12 // len(titles)
        for col, title in enumerate(titles):
            ax = fig.add_subplot(grid[row, col * width : (col + 1) * width])
            ax.set_title(title, fontsize=10, loc="left")
            ax.set_xlim(
                dt.datetime.fromtimestamp(begin, dt.UTC), dt.datetime.fromtimestamp(end, dt.UTC)
            )
            ax.xaxis.set_major_locator(mdates.SecondLocator(bysecond=[0, 30]))
            ax.xaxis.set_major_formatter(formatter)
            ax.tick_params(labelsize=7)
            drawn = [
                (index, line)
                for index, q in enumerate(by_panel[title])
                for line in series(api, q, begin, end)
            ]
            lines = [line for _, line in drawn]
            if title in STATE_PANELS:
                draw_states(ax, lines)
                continue
            for i, (index, line) in enumerate(drawn):
                # the analysis panel's second query is the thresholds: dashed, as on the dashboard
                threshold = title.startswith("Analysis") and index == 1
                ax.step(
                    line["times"],
                    line["values"],
                    where="post",
                    linestyle="--" if threshold else "-",
                    color=f"C{i}",
                    label=line["label"],
                )
            if title == "Canary weight":
                ax.set_ylim(0, 100)
                ax.set_ylabel("%", fontsize=8)
            if title.startswith("Analysis"):
                ax.set_yscale("symlog", linthresh=0.01)
            if lines:
                ax.legend(fontsize=7, loc="upper left")
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, bbox_inches="tight")
    print(f"wrote {OUT.relative_to(ROOT)}")


def draw_states(ax: Any, lines: list[dict[str, Any]]) -> None:
    """A state timeline: one lane per label, filled where its value is above 0."""
    labels = sorted({line["label"] for line in lines})
    for lane, label in enumerate(labels):
        for line in (x for x in lines if x["label"] == label):
            times, values = line["times"], line["values"]
            for t0, t1, v in zip(times, times[1:], values, strict=False):
                # a query filtered with `> 0` has gaps: a lane is filled only between neighbours
                if v > 0 and (t1 - t0).total_seconds() <= 1.5 * STEP:
                    low, high = (lane + 0.1) / len(labels), (lane + 0.9) / len(labels)
                    ax.axvspan(t0, t1, ymin=low, ymax=high, color=f"C{lane}", lw=0)
        ax.text(
            0.01,
            (lane + 0.5) / len(labels),
            label,
            transform=ax.transAxes,
            fontsize=8,
            va="center",
            color="white",
        )
    ax.set_yticks([])
    ax.set_ylim(0, 1)


def main() -> None:
    subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "up"], check=True)
    cluster = Cluster(ROOT / ".cluster" / "kubeconfig", ROOT / ".cluster" / "bin")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    cluster.kubectl("create", "namespace", NAMESPACE)
    wait_until(
        "the default ServiceAccount",
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0
        ),
    )
    work = Path(tempfile.mkdtemp(prefix="slipway-dashboard-"))
    operator = Operator(cluster, work)
    operator.start()
    exporter = Exporter()
    server = serve_exporter(exporter)
    targets = {
        "slipway": [f"127.0.0.1:{operator.metrics_port}"],
        "models": [f"127.0.0.1:{exporter.port}"],
    }
    try:
        with running_prometheus(work, targets) as address:
            begin, end = run_canary(Driver(cluster, NAMESPACE), exporter, address)
            draw(PrometheusApi(address), begin, end)
    finally:
        operator.stop()
        server.shutdown()
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


if __name__ == "__main__":
    main()
