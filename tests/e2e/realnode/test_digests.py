"""Which bytes served, on real pods (issue 14): `slipway fetch` in the init container reports the
digest of what it placed through its termination message, the kubelet puts it in the pod's status
with the server image's imageID, and the operator records both per revision; a pod that fetched
other bytes (the object changed under the revision) raises DigestMismatch; and an undo to a
revision verifies its recorded digest: it serves the same bytes, or fails saying they changed.

Each test keeps its models under a prefix of its own (s3://models/digests/<namespace>/...), since
it overwrites them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slipway.storage.digest import sha256_of_file, tree_digest
from slipway.storage.report import digest_in_report
from tests.e2e.realnode.conftest import RealDriver, iris
from tests.e2e.realnode.models import ROWS, infer, predict


def publish(rk: RealDriver, version: str, key: str) -> str:
    """Upload the trained `version` as s3://models/digests/<ns>/<key>/model.joblib; its uri."""
    rk.models.store.upload(rk.models.trained[version], f"digests/{rk.ns}/{key}/model.joblib")
    return f"s3://models/digests/{rk.ns}/{key}"


def digest_of(model_file: Path) -> str:
    """What `slipway fetch` reports for a prefix holding this one file (the directory rule)."""
    return "sha256:" + tree_digest({"model.joblib": sha256_of_file(model_file)})


def at(uri: str, version: str, replicas: int = 2) -> dict[str, Any]:
    md = iris(version, replicas=replicas, rollout={"scaleDownDelaySeconds": 1})
    md["spec"]["model"]["uri"] = uri
    return md


def status(rk: RealDriver) -> dict[str, Any]:
    return dict(rk.md("iris").get("status") or {})


def test_real_pods_report_the_bytes_they_fetched_and_the_image_they_run(rk: RealDriver) -> None:
    uri = publish(rk, "1.0.0", "mutable")
    expected = digest_of(rk.models.trained["1.0.0"])
    rk.apply(at(uri, "1.0.0"))
    rk.wait_phase("iris", "Ready", timeout=240)

    st = rk.wait("the digests", lambda: (s := status(rk))["stable"].get("modelDigest") and s)
    assert st["stable"]["modelDigest"] == expected
    assert "@sha256:" in st["stable"]["imageDigest"] or st["stable"]["imageDigest"].startswith(
        "sha256:"
    )
    assert st["history"][0]["modelDigest"] == expected
    for pod in rk.pods_ready_on_node("iris"):
        [init] = pod["status"]["initContainerStatuses"]
        assert digest_in_report(init["state"]["terminated"]["message"]) == expected

    # the object changes under the revision; a new pod fetches other bytes
    publish(rk, "1.1.0", "mutable")
    rk.cluster.kubectl("scale", "md", "iris", "-n", rk.ns, "--replicas=3")
    condition = rk.wait(
        "DigestMismatch",
        lambda: next(
            (c for c in status(rk).get("conditions") or [] if c["type"] == "DigestMismatch"), None
        ),
        timeout=240,
    )
    assert (condition["status"], condition["reason"]) == ("True", "ModelDigestsDiffer")
    assert digest_of(rk.models.trained["1.1.0"]) in condition["message"]
    assert status(rk)["stable"]["modelDigest"] == expected  # the record stands
    print("\n" + rk.plugin("history", "iris", "--wide").stdout)


def test_an_undo_serves_the_same_bytes_or_fails_saying_they_changed(rk: RealDriver) -> None:
    first = publish(rk, "1.0.0", "first")
    second = publish(rk, "1.1.0", "second")
    expected = digest_of(rk.models.trained["1.0.0"])
    rk.apply(at(first, "1.0.0"))
    revision = rk.wait_phase("iris", "Ready", timeout=240)["status"]["stable"]["revision"]
    rk.wait("its digest", lambda: status(rk)["stable"].get("modelDigest") == expected)
    rk.apply(at(second, "1.1.0"))
    rk.wait("1.1.0 stable", lambda: status(rk)["stable"]["version"] == "1.1.0", timeout=240)
    rk.wait(
        "1.0.0 pinned to its digest once its pods are gone",
        lambda: any(
            h["revision"] == revision and h["pinned"].get("modelSha256") == expected[7:]
            for h in status(rk)["history"]
        ),
        timeout=120,
    )

    # someone overwrites 1.0.0's object: the undo refuses to serve what is not 1.0.0
    publish(rk, "1.1.0", "first")
    rk.plugin("undo", "iris")
    failed = rk.wait(
        "the undo to fail on the checksum",
        lambda: "sha256 mismatch" in json.dumps(status(rk)) and status(rk),
        timeout=240,
    )
    assert failed["stable"]["version"] == "1.1.0"  # what served keeps serving
    assert failed["phase"] in ("RolledBack", "Degraded")

    # the right bytes are back: the same undo, retried, serves them
    publish(rk, "1.0.0", "first")
    rk.plugin("retry", "iris")
    rk.wait("1.0.0 back", lambda: status(rk)["stable"]["revision"] == revision, timeout=300)
    rk.wait_phase("iris", "Ready", timeout=120)
    served = infer(rk.routable("iris"), "iris", ROWS[:9])["outputs"][0]["data"]
    assert served == predict(rk.models.trained["1.0.0"], ROWS[:9])
    print("\n" + rk.plugin("history", "iris").stdout)
