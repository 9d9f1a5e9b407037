"""Who served which bytes when, on real pods (issue 14): people act through `kubectl slipway --as`
with the chart's admission policies on (RBAC on), the real pods report the digest of the model
they fetched and the image they run, and `kubectl slipway history` shows both beside who applied,
promoted and undid each revision. The history is printed (`pytest -s` shows it).
"""

from __future__ import annotations

import json
from typing import Any

from slipway.storage.digest import sha256_of_file, tree_digest
from tests.conftest import Cluster
from tests.e2e.realnode.conftest import RealDriver, iris
from tests.governance import governed

STEPS = [{"setWeight": 50}, {"pause": {}}]


def model(version: str, uri: str) -> dict[str, Any]:
    md = iris(
        version,
        replicas=2,
        rollout={"strategy": "Canary", "steps": STEPS, "scaleDownDelaySeconds": 1},
    )
    md["spec"]["model"]["uri"] = uri
    return md


def status(rk: RealDriver) -> dict[str, Any]:
    return dict(rk.md("iris").get("status") or {})


def stable_at(rk: RealDriver, version: str) -> bool:
    st = status(rk)
    return bool(st.get("phase") == "Ready" and st["stable"]["version"] == version)


def test_history_names_the_people_and_the_bytes_of_each_revision(
    rk: RealDriver, cluster: Cluster
) -> None:
    uris, digests = {}, {}
    for version in ("1.0.0", "1.1.0"):
        key = f"history/{rk.ns}/{version}"
        rk.models.store.upload(rk.models.trained[version], f"{key}/model.joblib")
        uris[version] = f"s3://models/{key}"
        file_digest = sha256_of_file(rk.models.trained[version])
        digests[version] = "sha256:" + tree_digest({"model.joblib": file_digest})

    with governed(cluster, rk.ns) as gov:
        gov.bind("alice", "edit")
        gov.bind("paula", gov.role("approver"))

        def apply_as_alice(version: str) -> None:
            text = json.dumps(model(version, uris[version]))
            proc = gov.kubectl_as("alice", "apply", "-f", "-", input=text)
            assert proc.returncode == 0, proc.stderr

        apply_as_alice("1.0.0")
        rk.wait_phase("iris", "Ready", timeout=300)
        apply_as_alice("1.1.0")
        rk.wait("the canary at its pause", lambda: status(rk).get("phase") == "Paused", 300)

        refused = rk.plugin("--as", "alice", "promote", "iris", check=False)
        assert refused.returncode == 1
        assert "the 'promote' verb" in refused.stderr, refused.stderr
        rk.plugin("--as", "paula", "promote", "iris")
        rk.wait("1.1.0 stable", lambda: stable_at(rk, "1.1.0"), 300)
        rk.plugin("--as", "paula", "undo", "iris")
        st = rk.wait(
            "1.0.0 back",
            lambda: (
                (s := status(rk)).get("phase") == "Ready"
                and s["stable"]["version"] == "1.0.0"
                and s["stable"].get("modelDigest")
                and s
            ),
            300,
        )

    # the revision undone to is stable again, its entry saying so; the one undone ended
    back, promoted = st["history"]
    assert (back["version"], back["promotedBy"], back["promotion"]) == ("1.0.0", "paula", "Undo")
    assert back["appliedBy"] == "alice"
    assert (promoted["version"], promoted["promotedBy"], promoted["appliedBy"]) == (
        "1.1.0",
        "paula",
        "alice",
    )
    assert (promoted["endReason"], promoted["endedBy"]) == ("Undone", "paula")
    # the digests the real pods reported are those of the bytes in the store
    assert back["modelDigest"] == digests["1.0.0"]
    assert promoted["modelDigest"] == digests["1.1.0"]
    for entry in (back, promoted):
        # imported images (no registry here) have an image id, not a repository digest
        image = entry["imageDigest"]
        assert "@sha256:" in image or image.startswith("sha256:"), entry

    shown = rk.plugin("history", "iris", "--wide").stdout
    print(f"\n$ kubectl slipway history iris -n {rk.ns} --wide\n{shown}")
    lines = shown.splitlines()
    assert len(lines) == 3, shown
    assert "paula" in lines[1] and "Undo" in lines[1] and digests["1.0.0"] in lines[1]
    assert "Undone by paula" in lines[2] and digests["1.1.0"] in lines[2]
