"""Pure helpers of the reconcile: merge patches, crash-loop detection, conditions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from slipway.api import Condition
from slipway.reconcile import merge_patch, pods_failing, ready_pods, set_condition

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


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


def test_set_condition_moves_the_transition_time_only_when_the_status_changes() -> None:
    before = [Condition(type="Ready", status="True", reason="A", last_transition_time="t0")]
    same = set_condition(before, "Ready", "True", "B", "m", 2, NOW)
    assert same[0].last_transition_time == "t0" and same[0].reason == "B"
    flipped = set_condition(before, "Ready", "False", "C", "m", 2, NOW)
    assert flipped[0].last_transition_time == "2026-11-26T12:00:00Z"
    added = set_condition([], "Degraded", "True", "D", "m", 2, NOW)
    assert [c.type for c in added] == ["Degraded"]
