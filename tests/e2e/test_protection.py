"""Serving never gets worse because of Slipway (issue 15, items 1 and 3): a revision that serves is
kept until its replacement serves as much, and Services and the URL follow what serves."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Driver, Operator, canary_model_deployment
from tests.e2e.test_canary import V2, canary, canary_md, condition, paused_at, start, status
from tests.e2e.test_serving import ReadySampler

pytestmark = pytest.mark.usefixtures("operator")

# KWOK's two nodes have 8 GPUs each: pods asking for 5 fit one per node, so 2 of 4 get Ready
# (kwok_faults: the test needs those nodes, as the fault tests do)
GPUS_PER_POD = 5


def gpu_model(version: str, **rollout: Any) -> dict[str, Any]:
    md = canary_model_deployment("gpu", [], version=version, replicas=4, **rollout)
    md["spec"]["rollout"]["strategy"] = "Rolling"
    md["spec"]["resources"] = {"limits": {"nvidia.com/gpu": GPUS_PER_POD}}
    return md


@pytest.mark.usefixtures("kwok_faults")
def test_a_partly_ready_first_revision_is_never_torn_down_for_one_that_does_not_serve(
    k: Driver,
) -> None:
    """A GPU shortage leaves the first revision with 2 of 4 pods Ready; a new version that cannot
    get Ready either is rolled out as a canary and rolled back at its deadline, and the two Ready
    pods serve throughout."""
    k.apply(gpu_model("1.0.0", progressDeadlineSeconds=15))
    k.wait("2 of 4 pods Ready", lambda: k.ready_pods("gpu") == 2)
    # a first status waits a few seconds for the pods (FIRST_REPORT_SECONDS)
    first = k.wait(
        "the first revision recorded",
        lambda: (k.md("gpu").get("status") or {}).get("stable", {}).get("revision"),
    )

    with ReadySampler(k, "gpu") as sampler:
        k.patch("md", "gpu", {"spec": {"model": {"version": "2.0.0", "uri": "s3://m/gpu/2"}}})
        md = k.wait(
            "the new revision to be rolled back at its deadline",
            lambda: (m := k.md("gpu"))["status"].get("phase") == "RolledBack" and m,
            timeout=120,
        )
    assert md["status"]["stable"]["revision"] == first
    assert condition(md["status"], "Degraded")["reason"] == "ProgressDeadlineExceeded"
    assert min(sampler.samples) >= 2, f"Ready pods fell below 2: {sampler.samples}"
    deployment = k.get("deployment", f"gpu-{first}")
    assert deployment is not None and deployment["spec"]["replicas"] == 4


@pytest.mark.usefixtures("kwok_faults")
def test_a_canary_at_full_weight_that_starts_crashing_is_rolled_back_to_a_partly_ready_stable(
    k: Driver, operator: Operator
) -> None:
    """A first revision at 2 of 4 Ready (a GPU shortage) and a canary without GPUs at
    `setWeight: 100`, whose 4 Ready pods took the stable's down to none. When the canary's pods
    have all started crashing by the time the operator looks (it was restarted meanwhile; with
    it running, it acts on the first pod's crash while the others are still Ready), nothing is
    Ready, yet it is the canary that failed: it is rolled back and the stable's Deployment scaled
    up again, never made stable in its place with the stable's Deployment deleted (as it was on
    the code of before: a crash-looping model serving everything, nothing to undo to)."""
    md = gpu_model("1.0.0")
    md["spec"]["rollout"].update(
        strategy="Canary", steps=[{"setWeight": 100}, {"pause": {}}], scaleDownDelaySeconds=1
    )
    k.apply(md)
    k.wait("2 of 4 pods Ready", lambda: k.ready_pods("gpu") == 2)
    first = k.wait(
        "the first revision recorded",
        lambda: (k.md("gpu").get("status") or {}).get("stable", {}).get("revision"),
    )
    k.patch(
        "md",
        "gpu",
        {
            "spec": {
                "model": {"version": "2.0.0", "uri": "s3://m/gpu/2"},
                "resources": {"limits": {"nvidia.com/gpu": None}},
            }
        },
    )
    second = k.wait(
        "the canary at 100 %, the stable at no pod",
        lambda: (
            (c := (k.md("gpu").get("status") or {}).get("canary") or {}).get("weight") == 100
            and (d := k.get("deployment", f"gpu-{first}")) is not None
            and d["spec"]["replicas"] == 0
            and c["revision"]
        ),
        timeout=120,
    )
    k.wait("4 canary pods Ready", lambda: k.ready_pods("gpu") == 4)

    # every canary pod crashing before the operator looks again (it was away: a restart, a
    # peering handover; or they went down together), so that nothing is Ready when it decides
    operator.stop()
    try:
        for pod in k.items("pods", f"serving.slipway.dev/revision={second}"):
            k.cluster.kubectl(
                "label", "pod", pod["metadata"]["name"], "-n", k.ns, "slipway.test/fault=crash"
            )
        k.wait("no pod Ready", lambda: k.ready_pods("gpu") == 0)
    finally:
        operator.start()
    md = k.wait(
        "the canary rolled back",
        lambda: (m := k.md("gpu"))["status"].get("phase") == "RolledBack" and m,
        timeout=120,
    )

    assert md["status"]["stable"]["revision"] == first
    assert md["status"]["canary"]["revision"] == second
    assert condition(md["status"], "Degraded")["reason"] == "CanaryCrashLooping"
    deployment = k.get("deployment", f"gpu-{first}")
    assert deployment is not None and deployment["spec"]["replicas"] == 4
    replaced = k.cluster.kubectl(
        "get", "events", "-n", k.ns, "--field-selector", "reason=Replaced", "-o", "name"
    ).stdout
    assert replaced.strip() == "", replaced


def test_a_port_change_moves_services_and_url_only_with_the_promotion(k: Driver) -> None:
    """The stable pods listen on 8080 until the canary that listens on 9090 is promoted: Service
    `fraud` and `fraud-stable` (and status.url) keep 8080 until then, `fraud-canary` has 9090."""
    start(k, canary_md())
    k.patch("md", "fraud", {"spec": {**V2, "runtime": {"port": 9090}}})
    new = paused_at(k, 25)["revision"]

    def port(service: str) -> int:
        svc = k.get("service", service)
        assert svc is not None, service
        return int(svc["spec"]["ports"][0]["port"])

    assert (port("fraud"), port("fraud-stable"), port("fraud-canary")) == (8080, 8080, 9090)
    assert status(k)["url"].endswith(":8080")

    k.plugin("promote", "fraud")
    k.wait(
        "the promotion",
        lambda: status(k).get("stable", {}).get("revision") == new and not canary(k),
    )
    k.wait("Service fraud to follow", lambda: port("fraud") == 9090)
    assert port("fraud-stable") == 9090
    assert status(k)["url"].endswith(":9090")
