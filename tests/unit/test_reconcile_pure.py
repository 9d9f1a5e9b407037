"""Pure helpers of the reconcile: merge patches, crash-loop detection, the facts it gathers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from slipway.api import ModelDeployment, RevisionPins
from slipway.kube import ApiError
from slipway.reconcile import (
    desired_services,
    evaluation_result,
    job_ended,
    merge_patch,
    pod_failures,
    pods_failing,
    pods_refused,
    ready_pods,
    server_message,
    unbuildable,
)
from slipway.rollout import DesiredRevision
from slipway.rollout.model import Track

PINS = RevisionPins(server_image="docker.io/seldonio/mlserver:1.7.1", pod_shape=2)


@pytest.mark.parametrize(
    "old, new, patch",
    [
        ({}, {"a": 1}, {"a": 1}),
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {}, {"a": None}),
        (
            {"canary": {"step": 1, "failureReason": "x"}},
            {"canary": {"step": 0}},
            {"canary": {"step": 0, "failureReason": None}},
        ),
        ({"canary": {"step": 1}}, {}, {"canary": None}),
        ({"history": [1, 2]}, {"history": [2]}, {"history": [2]}),
        ({"a": {"b": {"c": 1, "d": 2}}}, {"a": {"b": {"c": 1}}}, {"a": {"b": {"d": None}}}),
        ({"a": None}, {"a": 0}, {"a": 0}),
    ],
)
def test_merge_patch_turns_old_into_new(
    old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert merge_patch(old, new) == patch
    assert apply_merge_patch(old, patch) == new


def apply_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def pod(name: str, *containers: dict[str, Any], ready: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": list(containers),
        },
    }


@pytest.mark.parametrize(
    "container, crashing, named",
    [
        (
            {"name": "server", "ready": True, "restartCount": 0, "state": {"running": {}}},
            False,
            False,
        ),
        (
            {
                "name": "server",
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            },
            True,
            True,
        ),
        (
            {"name": "server", "restartCount": 5, "ready": False, "state": {"running": {}}},
            True,
            True,
        ),
        (
            {
                "name": "server",
                "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff"}},
            },
            False,
            True,
        ),
        (
            {
                "name": "storage-initializer",
                "restartCount": 0,
                "state": {
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": 'secret "model-creds" not found',
                    }
                },
            },
            True,
            True,
        ),
        (
            {
                "name": "server",
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            },
            False,
            False,
        ),
    ],
)
def test_pods_failing_tells_crash_loops_from_pods_that_cannot_start(
    container: dict[str, Any], crashing: bool, named: bool
) -> None:
    looping, reason = pods_failing([pod("p-1", container)])
    assert looping is crashing
    assert (reason is not None) is named
    if named:
        assert reason is not None and "p-1" in reason


def test_a_failing_fetch_is_named_with_what_it_last_said() -> None:
    said = "slipway fetch: s3://m/1: sha256 mismatch: expected aaaa, got bbbb"
    fetcher = {
        "name": "storage-initializer",
        "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
        "lastState": {"terminated": {"exitCode": 5, "message": said + "\n"}},
    }
    looping, reason = pods_failing([pod("p-1", fetcher)])

    assert looping is True
    assert reason is not None and reason.endswith(f"back-off 40s; it last said: {said}")


def test_ready_pods_counts_ready_pods_and_ignores_terminating_ones() -> None:
    pods = [pod("a", ready=True), pod("b", ready=False), pod("c", ready=True)]
    pods[2]["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:00Z"
    assert ready_pods(pods, {"readyReplicas": 7}) == 1
    assert ready_pods([], {"readyReplicas": 7}) == 7


def model(**model: Any) -> ModelDeployment:
    spec = {"version": "1.0.0", "uri": "s3://models/iris/1", "format": "sklearn", **model}
    return ModelDeployment.from_body(
        {"metadata": {"name": "iris", "namespace": "ml"}, "spec": {"model": spec}}
    )


@pytest.mark.parametrize(
    "spec, words",
    [
        # each of these gets past the CRD only if the CRD is older than the operator (the rules
        # came later): the builders still refuse them, naming the field
        ({"uri": "pvc://models/../etc"}, ["spec.model.uri", "'..'"]),
        ({"uri": "pvc:///iris"}, ["spec.model.uri", "must name a claim"]),
        ({"uri": "s3:///iris"}, ["spec.model.uri", "bucket name is empty"]),
        ({"uri": "hf://org/model@"}, ["spec.model.uri", "revision after @ is empty"]),
        ({"format": "custom"}, ["spec.runtime.image is required"]),
    ],
)
def test_a_spec_the_builders_refuse_is_named_not_raised(
    spec: dict[str, Any], words: list[str]
) -> None:
    errors = unbuildable(model(**spec), "abc", PINS)
    assert errors and all(any(w in e for e in errors) for w in words), errors


def test_a_spec_the_builders_accept_has_no_errors() -> None:
    assert unbuildable(model(uri="pvc://models/iris/1"), "abc", PINS) == ()


def test_pods_refused_is_the_replica_failure_message_of_the_deployment() -> None:
    message = 'pods "x" is forbidden: exceeded quota: pods, requested: pods=1'
    status = {
        "conditions": [
            {"type": "Available", "status": "True"},
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": message,
            },
        ]
    }
    assert pods_refused(status) == message
    assert pods_refused({"conditions": [{"type": "ReplicaFailure", "status": "False"}]}) is None
    assert pods_refused({}) is None


def test_server_message_is_the_status_message_or_the_http_status() -> None:
    body = '{"kind": "Status", "message": "admission webhook denied it", "code": 403}'
    assert server_message(ApiError(403, "Forbidden", body)) == "admission webhook denied it"
    assert server_message(ApiError(422, "Unprocessable Entity", "not json")) == (
        "422 Unprocessable Entity"
    )


# -- the evaluation Job: ended or not, and what its pod reported ---------------------------------


def job(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {"type": kind, "status": status, "reason": "DeadlineExceeded", "message": text}
                for kind, status, text in conditions
            ]
        }
    }


@pytest.mark.parametrize(
    "conditions, ended",
    [
        ((), (False, None)),
        ((("SuccessCriteriaMet", "True", ""),), (False, None)),  # its pod may still be there
        ((("Complete", "True", ""),), (True, None)),
        ((("Failed", "False", ""),), (False, None)),
        (
            (("Failed", "True", "Job was active longer than specified deadline"),),
            (True, "DeadlineExceeded: Job was active longer than specified deadline"),
        ),
    ],
)
def test_a_job_has_ended_when_it_is_complete_or_failed(
    conditions: tuple[tuple[str, str, str], ...], ended: tuple[bool, str | None]
) -> None:
    assert job_ended(job(*conditions)) == ended


def evaluation_pod(message: str | None, created: str = "2024-05-01T12:00:00Z") -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": 0 if message else 137, "reason": "Completed"}
    if message is not None:
        terminated["message"] = message
    return {
        "metadata": {"name": "p", "creationTimestamp": created},
        "status": {
            "containerStatuses": [{"name": "evaluate", "state": {"terminated": terminated}}]
        },
    }


def test_the_result_is_the_termination_message_of_the_evaluate_container() -> None:
    message = '{"lines":150,"compared":150,"agreement":0.98,"canary":{"requests":150}}'
    result, problem = evaluation_result([evaluation_pod(message)])
    assert result is not None and problem == ""
    assert (result.lines, result.agreement, result.canary.requests) == (150, 0.98, 150)


def test_without_a_readable_result_it_says_why() -> None:
    assert evaluation_result([]) == (None, "its pod is gone")
    result, problem = evaluation_result([evaluation_pod(None)])
    assert result is None
    assert problem == "the evaluation container ended (Completed, exit code 137) without a result"
    result, problem = evaluation_result([evaluation_pod("not json")])
    assert result is None and "not one Slipway can read" in problem


def test_the_newest_pod_with_a_result_is_read() -> None:
    old = evaluation_pod('{"lines": 1}', created="2024-05-01T12:00:00Z")
    new = evaluation_pod('{"lines": 2}', created="2024-05-01T12:05:00Z")
    result, _ = evaluation_result([old, new])
    assert result is not None and result.lines == 2


def test_each_failing_pod_is_told_with_when_it_was_created_and_a_pod_going_away_is_not() -> None:
    crashing = {
        "name": "server",
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
    }
    old = pod("p-old", crashing)
    old["metadata"]["creationTimestamp"] = "2024-05-01T12:00:00Z"
    new = pod("p-new", crashing)
    new["metadata"]["creationTimestamp"] = "2024-05-01T12:05:00Z"
    leaving = pod("p-leaving", crashing)
    leaving["metadata"]["deletionTimestamp"] = "2024-05-01T12:05:01Z"

    failures = pod_failures([old, new, leaving])

    assert [(f.pod, f.crashing, f.created_at) for f in failures] == [
        ("p-old", True, dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)),
        ("p-new", True, dt.datetime(2024, 5, 1, 12, 5, tzinfo=dt.UTC)),
    ]
    assert pods_failing([leaving]) == (False, None)


# --- the Services: where they point, and the model they say they serve ------------------------

NAME, VERSION = "app.kubernetes.io/name", "app.kubernetes.io/version"
REVISION = "serving.slipway.dev/revision"


def iris(version: str = "1.0.0", *, route: bool = False, **model: Any) -> ModelDeployment:
    spec: dict[str, Any] = {
        "model": {"version": version, "uri": f"s3://models/iris/{version}", "format": "sklearn"}
    }
    spec["model"].update(model)
    if route:
        spec["rollout"] = {"trafficRouting": {"gatewayAPI": {"httpRoute": "iris"}}}
    return ModelDeployment.from_body(
        {"metadata": {"name": "iris", "namespace": "ml"}, "spec": spec}
    )


def revision(
    rev: str, version: str, track: Track | None, port: int = 8080, **model: Any
) -> DesiredRevision:
    serving = {"model": {"version": version, "uri": f"s3://models/iris/{version}", **model}}
    return DesiredRevision(rev, serving, 2, track, PINS, port)


def services(
    md: ModelDeployment, revisions: list[DesiredRevision], service_revision: str | None = None
) -> dict[str, dict[str, Any]]:
    built = desired_services(md, revisions, service_revision, 8080)
    return {s["metadata"]["name"]: s for s in built}


def said(service: dict[str, Any]) -> tuple[str | None, int, str, str]:
    """What a Service selects (a revision, or None: every serving pod), the port it listens on,
    and the model it says it serves."""
    labels = service["metadata"]["labels"]
    port = service["spec"]["ports"][0]["port"]
    return service["spec"]["selector"].get(REVISION), port, labels[NAME], labels[VERSION]


# a stable recorded by a newer operator, with a field this one does not know: it cannot be
# rebuilt (its Deployment is kept as it runs), and its Services still say what it serves
UNBUILDABLE = DesiredRevision(
    "s1", {"model": {"version": "1.0.0", "fieldOfANewerOperator": 1}}, 2, "stable", PINS, 8080
)


@pytest.mark.parametrize(
    "md, revisions, service_revision, expected",
    [
        pytest.param(
            iris(),
            [revision("s1", "1.0.0", "stable")],
            None,
            {"iris": (None, 8080, "iris", "1.0.0"), "iris-stable": ("s1", 8080, "iris", "1.0.0")},
            id="one-revision",
        ),
        pytest.param(
            iris("2.0.0"),
            [revision("c2", "2.0.0", "canary", port=9090), revision("s1", "1.0.0", "stable")],
            None,
            {
                "iris": (None, 8080, "iris", "1.0.0"),
                "iris-stable": ("s1", 8080, "iris", "1.0.0"),
                "iris-canary": ("c2", 9090, "iris", "2.0.0"),
            },
            id="a-canary-on-another-port",
        ),
        pytest.param(
            iris("2.0.0"),
            [revision("c2", "2.0.0", "canary"), revision("s1", "1.0.0", "stable")],
            "s1",
            {
                "iris": ("s1", 8080, "iris", "1.0.0"),
                "iris-stable": ("s1", 8080, "iris", "1.0.0"),
                "iris-canary": ("c2", 8080, "iris", "2.0.0"),
            },
            id="the-canary-shielded-by-an-evaluation",
        ),
        pytest.param(
            iris("2.0.0"),
            [revision("s1", "1.0.0", "stable"), revision("c2", "2.0.0", None)],
            None,
            {"iris": (None, 8080, "iris", "1.0.0"), "iris-stable": ("s1", 8080, "iris", "1.0.0")},
            id="rolled-back",
        ),
        pytest.param(
            iris("2.0.0", route=True),
            [revision("s2", "2.0.0", "stable", port=9000), revision("o1", "1.0.0", None)],
            None,
            {
                "iris": (None, 8080, "iris", "2.0.0"),
                "iris-stable": ("s2", 9000, "iris", "2.0.0"),
                "iris-canary": ("s2", 9000, "iris", "2.0.0"),
            },
            id="a-route-between-canaries",
        ),
        pytest.param(
            iris("2.0.0", name="iris-v2"),
            [revision("c2", "2.0.0", "canary", name="iris-v2"), revision("s1", "1.0.0", "stable")],
            None,
            {
                "iris": (None, 8080, "iris", "1.0.0"),
                "iris-stable": ("s1", 8080, "iris", "1.0.0"),
                "iris-canary": ("c2", 8080, "iris-v2", "2.0.0"),
            },
            id="a-canary-renaming-the-model",
        ),
        pytest.param(
            iris("2.0.0"),
            [revision("c2", "2.0.0", "canary"), UNBUILDABLE],
            None,
            {
                "iris": (None, 8080, "iris", "1.0.0"),
                "iris-stable": ("s1", 8080, "iris", "1.0.0"),
                "iris-canary": ("c2", 8080, "iris", "2.0.0"),
            },
            id="a-stable-this-operator-cannot-rebuild",
        ),
        pytest.param(
            iris("2.0.0", name="iris-v2"),
            [DesiredRevision("s1", {"model": "?"}, 2, "stable", PINS, 8080)],
            None,
            {
                "iris": (None, 8080, "iris-v2", "2.0.0"),
                "iris-stable": ("s1", 8080, "iris-v2", "2.0.0"),
            },
            id="a-recorded-model-it-cannot-read-says-the-specs",
        ),
        pytest.param(
            iris("2.0.0"), [], None, {"iris": (None, 8080, "iris", "2.0.0")}, id="no-revision"
        ),
    ],
)
def test_each_service_selects_its_revision_and_says_the_model_it_serves(
    md: ModelDeployment,
    revisions: list[DesiredRevision],
    service_revision: str | None,
    expected: dict[str, tuple[str | None, int, str, str]],
) -> None:
    found = services(md, revisions, service_revision)
    assert {name: said(service) for name, service in found.items()} == expected


@pytest.mark.parametrize("route", [False, True], ids=["ratio", "route"])
@pytest.mark.parametrize("port", [8080, 9000])
@pytest.mark.parametrize("name", [None, "iris-v2"])
def test_a_new_versions_canary_leaves_name_and_name_stable_as_they_are(
    route: bool, port: int, name: str | None
) -> None:
    """What saves two writes when a canary starts: Services <name> and <name>-stable are the
    same before the canary and while it runs, whatever its version, port and model name."""
    stable = revision("s1", "1.0.0", "stable")
    renamed = {"name": name} if name else {}
    canary = revision("c2", "2.0.0", "canary", port=port, **renamed)
    alone = services(iris(route=route), [stable])
    with_canary = services(iris("2.0.0", route=route, **renamed), [canary, stable])
    for service in ("iris", "iris-stable"):
        assert with_canary[service] == alone[service], service
