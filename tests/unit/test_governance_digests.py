"""Which bytes served: digests read from pod status, recorded per revision, a condition when the
pods of a revision disagree, and the digest an undone revision verifies."""

from __future__ import annotations

from typing import Any

import pytest

from slipway.api import ModelSpec, RevisionPins
from slipway.governance import DIGEST_MISMATCH
from slipway.governance.digests import (
    PodDigests,
    RevisionDigests,
    observed_digests,
    pod_digests,
    unknowable,
)
from slipway.resources.storage import storage_initializer
from slipway.rollout import Action
from slipway.storage.report import fetch_report
from tests.unit.test_governance_records import WAIT_FOR_PROMOTION, Governed, deployed
from tests.unit.test_rollout import model_deployment

A, B = "a" * 64, "b" * 64
IMAGE = "docker.io/seldonio/mlserver@sha256:" + "c" * 64
OTHER_IMAGE = "docker.io/seldonio/mlserver@sha256:" + "d" * 64


def pod(
    name: str,
    revision: str = "rev1",
    *,
    report: str | None = None,
    exit_code: int = 0,
    image_id: str | None = IMAGE,
    volume_image: str | None = None,
) -> dict[str, Any]:
    init = {"name": "storage-initializer", "state": {"terminated": {"exitCode": exit_code}}}
    if report is not None:
        init["state"]["terminated"]["message"] = report
    server: dict[str, Any] = {"name": "server", "image": "mlserver:1.7.1"}
    if image_id is not None:
        server["imageID"] = image_id
    if volume_image is not None:
        server["volumeMounts"] = [
            {
                "name": "model",
                "mountPath": "/mnt/models",
                "volumeStatus": {"image": {"imageRef": volume_image}},
            }
        ]
    return {
        "metadata": {"name": name, "labels": {"serving.slipway.dev/revision": revision}},
        "status": {"initContainerStatuses": [init], "containerStatuses": [server]},
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(
            pod("p", report=fetch_report(A, "s3://m/1")),
            PodDigests("p", f"sha256:{A}", IMAGE),
            id="fetched",
        ),
        pytest.param(
            pod("p", report="slipway fetch: s3://m/1: not found", exit_code=3),
            PodDigests("p", None, IMAGE),
            id="failed fetch",
        ),
        pytest.param(
            pod("p", report=fetch_report(A, "s3://m/1"), exit_code=1),
            PodDigests("p", None, IMAGE),
            id="a report from a fetch that did not succeed",
        ),
        pytest.param(pod("p", image_id=None), PodDigests("p"), id="KWOK: nothing reported"),
        pytest.param(
            pod("p", volume_image="registry.local/models/fraud@sha256:" + B),
            PodDigests("p", None, IMAGE, "registry.local/models/fraud@sha256:" + B),
            id="oci image volume",
        ),
        pytest.param({"metadata": {"name": "p"}}, PodDigests("p"), id="no status yet"),
    ],
)
def test_a_pod_reports_its_model_and_image_in_its_status(
    status: dict[str, Any], expected: PodDigests
) -> None:
    assert pod_digests(status) == expected


def test_reports_are_grouped_by_revision_and_digest() -> None:
    pods = [
        pod("p2", report=fetch_report(A, "s3://m")),
        pod("p1", report=fetch_report(A, "s3://m")),
        pod("p3", report=fetch_report(B, "s3://m"), image_id=OTHER_IMAGE),
        pod("q1", "rev2"),
        {"metadata": {"name": "unlabelled"}},
    ]
    found = observed_digests(pods)

    assert set(found) == {"rev1", "rev2"}
    assert found["rev1"].models() == {f"sha256:{A}": ["p1", "p2"], f"sha256:{B}": ["p3"]}
    assert found["rev1"].images() == {IMAGE: ["p1", "p2"], OTHER_IMAGE: ["p3"]}
    assert found["rev2"].models() == {}


@pytest.mark.parametrize(
    ("uri", "mounted", "says"),
    [
        ("s3://m/1", {}, None),
        ("hf://org/model@main", {}, None),
        ("pvc://claim/fraud", {}, "pvc:// is mounted, not fetched"),
        ("oci://registry/m:1", {}, "the kubelet mounted not reported yet"),
        ("oci://registry/m:1", {"registry/m@sha256:" + A: ["p"]}, "mounted registry/m@sha256:a"),
    ],
)
def test_what_cannot_be_known_is_said(
    uri: str, mounted: dict[str, list[str]], says: str | None
) -> None:
    note = unknowable(uri, mounted)
    assert (note is None) if says is None else (note is not None and says in note)


def reports(*pods: tuple[str, str | None, str | None]) -> RevisionDigests:
    return RevisionDigests(tuple(PodDigests(name, model, image) for name, model, image in pods))


def test_a_revision_records_the_digests_its_pods_agree_on() -> None:
    governed = Governed(md=model_deployment())
    governed.reports = {
        governed.revision: reports(("p1", f"sha256:{A}", IMAGE), ("p2", f"sha256:{A}", IMAGE))
    }
    governed.converge()

    stable, [entry] = governed.status.stable, governed.status.history
    assert (stable.model_digest, stable.image_digest) == (f"sha256:{A}", IMAGE)
    assert (entry.model_digest, entry.image_digest) == (f"sha256:{A}", IMAGE)
    assert DIGEST_MISMATCH not in [c.type for c in governed.status.conditions]


def test_pods_of_one_revision_that_disagree_raise_a_condition_and_one_warning() -> None:
    governed = Governed(md=model_deployment())
    rev = governed.revision
    governed.reports = {rev: reports(("p1", f"sha256:{A}", IMAGE), ("p2", f"sha256:{B}", IMAGE))}
    governed.converge()
    governed.reconcile()

    [condition] = [c for c in governed.status.conditions if c.type == DIGEST_MISMATCH]
    assert (condition.status, condition.reason) == ("True", "ModelDigestsDiffer")
    assert f"p1 report sha256:{A}; p2 report sha256:{B}" in condition.message
    assert "pin spec.model.storage.sha256" in condition.message
    assert governed.status.stable.model_digest is None  # no agreement, no record
    assert len(governed.messages(DIGEST_MISMATCH)) == 1
    since = condition.last_transition_time

    # the odd pod is replaced by one that agrees: the condition clears, its time moves
    governed.reports = {rev: reports(("p1", f"sha256:{A}", IMAGE), ("p3", f"sha256:{A}", IMAGE))}
    governed.wait(30)
    [condition] = [c for c in governed.status.conditions if c.type == DIGEST_MISMATCH]
    assert (condition.status, condition.reason) == ("False", "DigestsAgree")
    assert condition.last_transition_time != since
    assert governed.status.stable.model_digest == f"sha256:{A}"


def test_a_new_pod_with_other_bytes_than_the_record_raises_the_condition() -> None:
    governed = Governed(md=model_deployment())
    rev = governed.revision
    governed.reports = {rev: reports(("p1", f"sha256:{A}", IMAGE))}
    governed.converge()
    governed.reports = {
        rev: reports(("p1", f"sha256:{A}", IMAGE), ("p9", f"sha256:{B}", OTHER_IMAGE))
    }
    governed.reconcile()

    [condition] = [c for c in governed.status.conditions if c.type == DIGEST_MISMATCH]
    assert condition.reason == "DigestsDiffer"  # the model and the image both moved
    assert f"(recorded: sha256:{A})" in condition.message
    assert f"(recorded: {IMAGE})" in condition.message
    assert governed.status.stable.model_digest == f"sha256:{A}"  # the record stays


def test_a_revision_that_stops_serving_is_pinned_to_its_digest_and_an_undo_verifies_it() -> None:
    governed = deployed(WAIT_FOR_PROMOTION)
    first = governed.revision
    governed.reports = {first: reports(("p1", f"sha256:{A}", IMAGE))}
    governed.reconcile()
    governed.apply("1.1.0", by="bob")
    governed.converge()
    governed.act(Action.PROMOTE, by="paula")
    governed.converge()
    old = next(h for h in governed.status.history if h.revision == first)
    assert old.pinned is not None and old.pinned.model_sha256 is None  # its pods still run

    governed.reports = {}  # its pods are gone
    governed.wait(60)
    old = next(h for h in governed.status.history if h.revision == first)
    assert old.pinned is not None and old.pinned.model_sha256 == A
    [kept] = [d for d in governed.last.revisions if d.revision == first]
    assert (kept.replicas, kept.pinned.model_sha256) == (0, A)

    governed.change(version="1.0.0")  # kubectl slipway undo
    governed.pins = old.pinned  # the shell pins a revision it knows to its record (reconcile._pin)
    decision = governed.reconcile()
    [back] = [d for d in decision.revisions if d.revision == first]
    assert back.replicas > 0 and back.pinned.model_sha256 == A
    assert governed.status.canary.pinned.model_sha256 == A


@pytest.mark.parametrize(
    ("storage", "verify", "expected"),
    [
        ({}, None, None),
        ({}, A, A),
        ({"sha256": B}, A, B),  # what the spec says wins
        ({"sha256": B}, None, B),
    ],
)
def test_the_fetcher_verifies_the_spec_s_digest_or_else_the_pinned_one(
    storage: dict[str, str], verify: str | None, expected: str | None
) -> None:
    model = ModelSpec.model_validate(
        {"version": "1", "uri": "s3://m/1", "format": "sklearn", "storage": storage}
    )
    args = storage_initializer(model, "slipway:1", verify_sha256=verify)["args"]
    assert (args[args.index("--sha256") + 1] if "--sha256" in args else None) == expected


def test_pins_without_a_digest_read_as_before() -> None:
    assert RevisionPins(server_image="x").model_sha256 is None
    assert "modelSha256" not in RevisionPins(server_image="x").wire()
