"""Every rollout counted in requests, on real pods (issue 11, section 5).

Four MLServer pods serve the iris model; a bounded load generator sends V2 inference requests
through the ModelDeployment's Service (its cluster IP, through kube-proxy), one new connection per
request, at a steady rate, from before each change until after the last old pod is gone, at
least MIN_REQUESTS in all. Every outcome is counted: an answer other than 2xx, a refused or reset
connection, a timeout. The goal is none. Figures (sent, failed by kind, p50/p99, the versions that
answered) are appended to $SLIPWAY_REALNODE_FIGURES (JSON lines) when it is set.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Operator
from tests.e2e.realnode.conftest import PodPrometheus, RealDriver, iris
from tests.e2e.realnode.load import Load, LoadResult

MIN_REQUESTS = 2000
RPS = 40.0
REPLICAS = 4
FAST = {"scaleDownDelaySeconds": 5}
REVISION = "serving.slipway.dev/revision"


def record(scenario: str, result: LoadResult, **extra: Any) -> None:
    line = {"scenario": scenario, **result.summary(), **extra}
    print(json.dumps(line))
    path = os.environ.get("SLIPWAY_REALNODE_FIGURES")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(line) + "\n")


def revision_pods(rk: RealDriver, revision: str) -> list[dict[str, Any]]:
    return rk.items("pods", f"{REVISION}={revision}")


def gone(rk: RealDriver, revision: str) -> Callable[[], bool]:
    """True once no pod of `revision` exists any more (terminating ones included)."""
    return lambda: not revision_pods(rk, revision)


def deployed(rk: RealDriver, rollout: dict[str, Any]) -> str:
    """iris 1.0.0 on four real pods, Ready and routed; its stable revision."""
    rk.apply(iris("1.0.0", replicas=REPLICAS, rollout=rollout))
    md = rk.wait_phase("iris", "Ready", timeout=300)
    rk.routable("iris")
    return str(md["status"]["stable"]["revision"])


def new_version(rk: RealDriver, version: str) -> None:
    uri = f"s3://models/iris/{version}"
    rk.patch("modeldeployment", "iris", {"spec": {"model": {"version": version, "uri": uri}}})


def stable_is(rk: RealDriver, version: str) -> Callable[[], bool]:
    def check() -> bool:
        md = rk.md("iris")
        status = md.get("status") or {}
        return (
            status.get("observedGeneration") == md["metadata"]["generation"]
            and status.get("phase") == "Ready"
            and (status.get("stable") or {}).get("version") == version
        )

    return check


@pytest.fixture
def load(rk: RealDriver) -> Iterator[Callable[[], Load]]:
    """Starts the load against Service iris; stops whatever was started, whatever happens."""
    started: list[Load] = []

    def start() -> Load:
        generator = Load(rk.cluster_ip("iris"), "iris", rps=RPS, max_seconds=600)
        generator.start()
        generator.wait_for(100)  # steady before the change
        started.append(generator)
        return generator

    yield start
    for generator in started:
        generator.stop()


def finish(generator: Load) -> LoadResult:
    """Keep the load on until MIN_REQUESTS were sent, then stop it."""
    generator.wait_for(MIN_REQUESTS)
    return generator.stop()


def no_failures(result: LoadResult) -> None:
    assert result.sent >= MIN_REQUESTS, result.summary()
    assert result.failed == 0, (result.summary(), result.failures[:20])


def test_a_rolling_update_loses_no_request(rk: RealDriver, load: Callable[[], Load]) -> None:
    old = deployed(rk, {"strategy": "Rolling", **FAST})
    generator = load()
    began = time.monotonic()
    new_version(rk, "1.1.0")
    rk.wait("1.1.0 to be stable", stable_is(rk, "1.1.0"), timeout=300)
    rk.wait("the old pods to be gone", gone(rk, old), timeout=120)
    took = time.monotonic() - began
    result = finish(generator)
    record("Rolling update 1.0.0 -> 1.1.0", result, rollout_seconds=round(took, 1))
    no_failures(result)
    assert set(result.versions) == {"1.0.0", "1.1.0"}


def test_a_canary_to_promotion_loses_no_request(rk: RealDriver, load: Callable[[], Load]) -> None:
    steps = [
        {"setWeight": 25},
        {"pause": {"duration": "10s"}},
        {"setWeight": 50},
        {"pause": {"duration": "10s"}},
    ]
    old = deployed(rk, {"strategy": "Canary", "steps": steps, **FAST})
    generator = load()
    began = time.monotonic()
    new_version(rk, "1.1.0")
    rk.wait("1.1.0 to be promoted", stable_is(rk, "1.1.0"), timeout=300)
    rk.wait("the old pods to be gone", gone(rk, old), timeout=120)
    took = time.monotonic() - began
    result = finish(generator)
    record("canary 25% -> 50% -> promoted", result, rollout_seconds=round(took, 1))
    no_failures(result)
    assert set(result.versions) == {"1.0.0", "1.1.0"}


def test_an_aborted_canary_loses_no_request(rk: RealDriver, load: Callable[[], Load]) -> None:
    steps = [{"setWeight": 50}, {"pause": {}}]
    deployed(rk, {"strategy": "Canary", "steps": steps, **FAST})
    generator = load()
    new_version(rk, "1.1.0")
    md = rk.wait_phase("iris", "Paused", timeout=300)
    canary = md["status"]["canary"]["revision"]
    rk.plugin("abort", "iris")
    rk.wait_phase("iris", "RolledBack", timeout=120)
    rk.wait("the canary pods to be gone", gone(rk, canary), timeout=120)
    result = finish(generator)
    record("canary at 50% aborted", result)
    no_failures(result)
    assert result.versions["1.1.0"] > 0  # the canary did serve before it was withdrawn


def test_a_canary_failing_its_analysis_is_rolled_back_and_only_its_own_answers_fail(
    rk: RealDriver, load: Callable[[], Load], pod_prometheus: PodPrometheus
) -> None:
    """The canary is a model that errors on part of its inputs (a CategoricalNB refuses the rows
    with a negative feature, one in ten): the analysis measures its real error rate from
    MLServer's own counters and rolls it back. Its errors are the canary's answers (the stable
    model answers every row); no request is refused, reset or lost."""
    selector = 'namespace="{{namespace}}",revision="{{canary.revision}}"'
    failures = f"sum(rate(model_infer_request_failure_total{{{selector}}}[30s]))"
    successes = f"sum(rate(model_infer_request_success_total{{{selector}}}[30s]))"
    analysis = {
        "interval": "10s",
        "failureLimit": 0,
        "prometheus": {"address": pod_prometheus.address},
        "metrics": [
            {"name": "error-rate", "query": f"{failures} / ({failures} + {successes})", "max": 0.05}
        ],
    }
    steps = [{"setWeight": 25}, {"pause": {"duration": "5m"}}]
    deployed(rk, {"strategy": "Canary", "steps": steps, "analysis": analysis, **FAST})
    generator = load()
    new_version(rk, "2.0.0-bad")
    md = rk.wait_phase("iris", "RolledBack", timeout=300)
    canary = md["status"]["canary"]["revision"]
    rk.wait("the canary pods to be gone", gone(rk, canary), timeout=120)
    rolled_back = generator.elapsed()
    result = finish(generator)
    failed = [m for m in md["status"]["analysis"]["measurements"] if m["verdict"] == "Failed"]
    record(
        "canary failing its analysis, rolled back",
        result,
        canary_model_errors=result.failed - result.transport_failures,
        measured_error_rate=failed[-1]["value"] if failed else None,
    )
    assert result.sent >= MIN_REQUESTS
    assert result.transport_failures == 0, (result.summary(), result.failures[:20])
    assert failed and failed[-1]["value"] > 0.05
    # every failed answer came while the bad canary still served, none after it was gone
    assert all(at < rolled_back for at, _ in result.failures), result.failures[-5:]


def test_an_undo_loses_no_request(rk: RealDriver, load: Callable[[], Load]) -> None:
    first = deployed(rk, {"strategy": "Rolling", **FAST})
    new_version(rk, "1.1.0")
    rk.wait("1.1.0 to be stable", stable_is(rk, "1.1.0"), timeout=300)
    rk.wait("1.0.0 to be scaled down", gone(rk, first), timeout=120)
    second = rk.md("iris")["status"]["stable"]["revision"]
    generator = load()
    rk.plugin("undo", "iris")
    rk.wait("1.0.0 to be stable again", stable_is(rk, "1.0.0"), timeout=300)
    rk.wait("1.1.0's pods to be gone", gone(rk, second), timeout=120)
    result = finish(generator)
    record("undo 1.1.0 -> 1.0.0", result)
    no_failures(result)
    assert rk.md("iris")["status"]["stable"]["revision"] == first


def test_scaling_down_and_up_loses_no_request(rk: RealDriver, load: Callable[[], Load]) -> None:
    revision = deployed(rk, FAST)
    generator = load()
    rk.cluster.kubectl("scale", "md", "iris", "-n", rk.ns, "--replicas=2")
    rk.wait("2 pods", lambda: len(revision_pods(rk, revision)) == 2, timeout=120)
    rk.cluster.kubectl("scale", "md", "iris", "-n", rk.ns, "--replicas=4")
    rk.wait("4 Ready pods", lambda: rk.ready_pods("iris") == 4, timeout=120)
    result = finish(generator)
    record("kubectl scale md 4 -> 2 -> 4", result)
    no_failures(result)


def test_an_operator_killed_mid_canary_loses_no_request(
    rk: RealDriver, load: Callable[[], Load], operator: Operator
) -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "20s"}}]
    old = deployed(rk, {"strategy": "Canary", "steps": steps, **FAST})
    generator = load()
    new_version(rk, "1.1.0")

    def canary_serving() -> bool:
        canary = (rk.md("iris").get("status") or {}).get("canary") or {}
        return canary.get("weight") == 50 and canary.get("readyReplicas") == 2

    rk.wait("the canary at 50%", canary_serving, timeout=300)
    operator.stop(signal.SIGKILL)
    time.sleep(5)
    operator.start()
    rk.wait("1.1.0 to be promoted", stable_is(rk, "1.1.0"), timeout=300)
    rk.wait("the old pods to be gone", gone(rk, old), timeout=120)
    result = finish(generator)
    record("operator SIGKILLed mid-canary, restarted", result)
    no_failures(result)


def test_restarting_the_stable_pods_one_by_one_loses_no_request(
    rk: RealDriver, load: Callable[[], Load]
) -> None:
    """What a node drain does to each pod in turn: the Eviction API (the pod is deleted
    gracefully; its ReplicaSet makes a replacement, on the real node, the only one it fits)."""
    revision = deployed(rk, FAST)
    generator = load()
    for pod in revision_pods(rk, revision):
        name = pod["metadata"]["name"]
        eviction = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": rk.ns},
        }
        rk.cluster.kubectl(
            "create", "--raw", f"/api/v1/namespaces/{rk.ns}/pods/{name}/eviction",
            "-f", "-", input=json.dumps(eviction),
        )  # fmt: skip
        rk.wait(f"{name} to be replaced", lambda: rk.ready_pods("iris") == REPLICAS, timeout=120)
        rk.wait(f"{name} to be gone", lambda n=name: rk.get("pod", n) is None, timeout=120)
    result = finish(generator)
    record("stable pods evicted one by one", result)
    no_failures(result)


def test_a_good_canary_passes_its_analysis_on_real_metrics_and_is_promoted(
    rk: RealDriver, load: Callable[[], Load], pod_prometheus: PodPrometheus
) -> None:
    """The same analysis as above, on a canary that answers every input: each measurement of its
    real error rate is 0, it goes through its steps and is promoted."""
    selector = 'namespace="{{namespace}}",revision="{{canary.revision}}"'
    failures = f"sum(rate(model_infer_request_failure_total{{{selector}}}[30s]))"
    successes = f"sum(rate(model_infer_request_success_total{{{selector}}}[30s]))"
    answered = f"sum(increase(model_infer_request_success_total{{{selector}}}[30s]))"
    analysis = {
        "interval": "10s",
        "failureLimit": 0,
        "minSamples": 20,
        "prometheus": {"address": pod_prometheus.address},
        "metrics": [
            {
                "name": "error-rate",
                "query": f"{failures} / ({failures} + {successes})",
                "samplesQuery": answered,
                "max": 0.05,
            }
        ],
    }
    steps = [{"setWeight": 25}, {"pause": {"duration": "20s"}}]
    deployed(rk, {"strategy": "Canary", "steps": steps, "analysis": analysis, **FAST})
    generator = load()
    new_version(rk, "1.1.0")
    rk.wait("1.1.0 to be promoted", stable_is(rk, "1.1.0"), timeout=300)
    result = finish(generator)
    record("canary passing its analysis, promoted", result)
    no_failures(result)
    # promotion needs a Successful latest measurement at every step with weight
    assert rk.md("iris")["status"]["stable"]["version"] == "1.1.0"
