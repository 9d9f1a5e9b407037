"""Which bytes served (issue 14), on KWOK: the operator reads the model digest `slipway fetch`
reports and the server's image digest from the pods' status, records them per revision, flags a
revision whose pods disagree, and pins the recorded digest on a revision that stops serving, so
that an undo to it verifies the same bytes.

KWOK runs no container: its pods never run the fetch init container and report no imageID. These
tests therefore write into the pods' status, by hand, exactly what a kubelet writes there: the
init container's termination message (the file `slipway fetch` leaves at /dev/termination-log,
built here by the fetcher's own `fetch_report`) and the container runtime's imageID.
tests/e2e/realnode/test_digests.py shows the same on real pods, fetched and run.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from slipway.storage.report import fetch_report
from tests.e2e.conftest import Driver, canary_model_deployment

pytestmark = pytest.mark.usefixtures("operator")

A, B = "a" * 64, "b" * 64
IMAGE = "docker.io/seldonio/mlserver@sha256:" + "c" * 64
STEPS = [{"setWeight": 50}, {"pause": {}}]


def report(k: Driver, pod: dict[str, Any], sha256: str, image: str = IMAGE) -> None:
    """Write what the kubelet would: the fetcher's termination message and the image's digest."""
    status = {
        "status": {
            "initContainerStatuses": [
                {
                    "name": "storage-initializer",
                    "image": pod["spec"]["initContainers"][0]["image"],
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "message": fetch_report(sha256, "s3://models/fraud/1.0.0"),
                        }
                    },
                }
            ],
            "containerStatuses": [
                {
                    "name": "server",
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": image,
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {}},
                }
            ],
        }
    }
    name = pod["metadata"]["name"]
    k.cluster.kubectl(
        "patch", "pod", name, "-n", k.ns, "--subresource=status", "--type=strategic",
        "-p", json.dumps(status),
    )  # fmt: skip


def serving_pods(k: Driver, revision: str) -> list[dict[str, Any]]:
    pods = k.items("pods", f"serving.slipway.dev/revision={revision}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def status(k: Driver) -> dict[str, Any]:
    return dict(k.md("fraud").get("status") or {})


def mismatch(k: Driver) -> dict[str, Any]:
    return next((c for c in status(k).get("conditions") or [] if c["type"] == "DigestMismatch"), {})


def fetcher_args(k: Driver, revision: str) -> list[str]:
    deployment = k.get("deployment", f"fraud-{revision}")
    assert deployment is not None
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    return list(init["args"])


def reasons(k: Driver) -> set[str]:
    """The reasons of the namespace's Events (the operator posts them just after the status)."""
    out = k.cluster.kubectl("get", "events", "-n", k.ns, "-o", "json").stdout
    return {e["reason"] for e in json.loads(out)["items"]}


def test_digests_are_recorded_and_pods_that_disagree_are_flagged(k: Driver) -> None:
    k.apply(canary_model_deployment("fraud", STEPS, replicas=2))
    revision = k.wait_phase("fraud", "Ready")["status"]["stable"]["revision"]
    for pod in serving_pods(k, revision):
        report(k, pod, A)

    st = k.wait("the digests recorded", lambda: (s := status(k))["stable"].get("modelDigest") and s)
    assert (st["stable"]["modelDigest"], st["stable"]["imageDigest"]) == (f"sha256:{A}", IMAGE)
    assert st["history"][0]["modelDigest"] == f"sha256:{A}"
    assert not mismatch(k)

    # one pod fetched other bytes (an object changed under the revision, then a pod restarted)
    odd = serving_pods(k, revision)[0]
    report(k, odd, B)
    condition = k.wait(
        "DigestMismatch", lambda: mismatch(k).get("status") == "True" and mismatch(k)
    )
    assert condition["reason"] == "ModelDigestsDiffer"
    assert f"{odd['metadata']['name']} report sha256:{B}" in condition["message"]
    assert f"(recorded: sha256:{A})" in condition["message"]
    assert status(k)["stable"]["modelDigest"] == f"sha256:{A}"  # the record stands
    k.wait("the DigestMismatch Event", lambda: "DigestMismatch" in reasons(k))

    report(k, odd, A)
    k.wait("the condition cleared", lambda: mismatch(k).get("status") == "False")
    assert mismatch(k)["reason"] == "DigestsAgree"


def test_an_undo_verifies_the_bytes_its_revision_recorded(k: Driver) -> None:
    k.apply(canary_model_deployment("fraud", STEPS, replicas=2))
    first = k.wait_phase("fraud", "Ready")["status"]["stable"]["revision"]
    for pod in serving_pods(k, first):
        report(k, pod, A)
    k.wait("the digest recorded", lambda: status(k)["stable"].get("modelDigest"))
    assert "--sha256" not in fetcher_args(k, first)  # serving: its pods are never rolled for it

    k.patch("md", "fraud", {"spec": {"model": {"version": "2.0.0", "uri": "s3://models/fraud/2"}}})
    k.wait("the pause", lambda: status(k).get("phase") == "Paused")
    k.plugin("promote", "fraud")
    k.wait("2.0.0 stable", lambda: status(k)["stable"]["version"] == "2.0.0")

    pinned = k.wait(
        "the old revision pinned to its digest once its pods are gone",
        lambda: next(
            (
                h["pinned"].get("modelSha256")
                for h in status(k)["history"]
                if h["revision"] == first
            ),
            None,
        ),
        timeout=60,
    )
    assert pinned == A
    args = k.wait(
        "its Deployment to verify it", lambda: "--sha256" in (a := fetcher_args(k, first)) and a
    )
    assert args[args.index("--sha256") + 1] == A
    assert k.get("deployment", f"fraud-{first}")["spec"]["replicas"] == 0

    k.plugin("undo", "fraud")
    k.wait("1.0.0 back", lambda: status(k)["stable"]["revision"] == first, timeout=90)
    args = fetcher_args(k, first)
    assert args[args.index("--sha256") + 1] == A
