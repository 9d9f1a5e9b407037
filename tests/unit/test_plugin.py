"""`kubectl slipway`: its pure parts (what status and history print, what undo writes, the
command line). The e2e suite drives the plugin against the real cluster."""

from __future__ import annotations

from typing import Any

import pytest

from slipway.governance import UNDO_TO
from slipway.plugin import (
    ACTION_ANNOTATION,
    Conflict,
    PluginError,
    api_message,
    build_parser,
    format_history,
    format_status,
    history_rows,
    request_action,
    short_digest,
    undo_ops,
)

TEMPLATE_1 = {"model": {"version": "1.0.0", "uri": "s3://m/1", "format": "sklearn"}}
TEMPLATE_2 = {
    "model": {"version": "2.0.0", "uri": "s3://m/2", "format": "sklearn"},
    "runtime": {"port": 9000},
    "resources": {"requests": {"cpu": "1"}},
}


def md(status: dict[str, Any] | None = None, generation: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud", "namespace": "ml", "generation": generation},
        "spec": {"replicas": 4, **spec},
        "status": status,
    }


def history(*entries: tuple[str, str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Newest first, as the operator keeps it."""
    return [
        {
            "revision": revision,
            "version": version,
            "uri": f"s3://m/{version}",
            "promotedAt": f"2026-11-26T10:0{i}:00Z",
            **({"template": template} if template else {}),
        }
        for i, (revision, version, template) in enumerate(entries)
    ]


STABLE = {"revision": "aaaa", "version": "2.0.0", "replicas": 4, "readyReplicas": 4}
CONDITIONS = [
    {"type": "Ready", "status": "True", "reason": "Serving", "message": "4/4 pods Ready"},
    {"type": "Degraded", "status": "False", "reason": "Healthy", "message": ""},
]


@pytest.mark.parametrize(
    ("status", "generation", "present", "absent"),
    [
        pytest.param(
            None,
            1,
            ["Name:      ml/fraud", "Phase:     Pending", "Ready:     0/4", "URL:       -"],
            ["Stable:", "Canary:", "Conditions:", "Measurements"],
            id="nothing observed yet",
        ),
        pytest.param(
            {
                "phase": "Ready",
                "observedGeneration": 3,
                "readyReplicas": 4,
                "url": "http://fraud.ml.svc.cluster.local:8080",
                "stable": STABLE,
                "conditions": CONDITIONS,
            },
            3,
            [
                "Phase:     Ready\n",
                "Ready:     4/4",
                "URL:       http://fraud.ml.svc.cluster.local:8080",
                "Stable:    2.0.0 (revision aaaa, 4/4 ready)",
                "Conditions:\n  Ready        True   Serving: 4/4 pods Ready\n"
                "  Degraded     False  Healthy",
            ],
            ["Canary:", "has not seen", "Healthy:"],
            id="ready, conditions as a block, an empty message left out",
        ),
        pytest.param(
            {"phase": "Ready", "observedGeneration": 2, "stable": STABLE},
            3,
            ["Phase:     Ready  (the operator has not seen the latest spec yet)"],
            [],
            id="a spec the operator has not seen yet",
        ),
        pytest.param(
            {
                "phase": "Paused",
                "observedGeneration": 3,
                "stable": STABLE,
                "canary": {
                    "revision": "bbbb",
                    "version": "2.1.0",
                    "replicas": 1,
                    "readyReplicas": 1,
                    "weight": 25,
                    "step": 2,
                    "paused": True,
                    "pauseReason": "waiting at step 2 (pause) until promoted",
                },
            },
            3,
            [
                "Canary:    2.1.0 (revision bbbb, 1/1 ready), weight 25%, step 2/3, Paused",
                "           UserPaused: waiting at step 2 (pause) until promoted",
            ],
            [],
            id="paused canary with its reason, as Slipway 0.1 wrote it",
        ),
        pytest.param(
            {
                "phase": "Paused",
                "observedGeneration": 3,
                "stable": STABLE,
                "canary": {
                    "revision": "bbbb",
                    "version": "2.1.0",
                    "replicas": 1,
                    "readyReplicas": 1,
                    "weight": 25,
                    "step": 1,
                    "state": "Paused",
                    "reason": "WaitingForPromotion",
                    "message": "step 2/3 (pause until promoted) waits for promote",
                },
            },
            3,
            [
                "Canary:    2.1.0 (revision bbbb, 1/1 ready), weight 25%, step 1/3, Paused",
                "           WaitingForPromotion: step 2/3 (pause until promoted) waits for",
            ],
            [],
            id="a canary waiting for promotion",
        ),
        pytest.param(
            {
                "phase": "RolledBack",
                "observedGeneration": 3,
                "stable": STABLE,
                "canary": {
                    "revision": "bbbb",
                    "version": "2.1.0",
                    "weight": 0,
                    "step": 1,
                    "aborted": True,
                    "paused": True,
                    "failureReason": "AnalysisFailed: error-rate 0.03 > max 0.01",
                },
                "analysis": {
                    "measurements": [
                        {
                            "metric": f"m{i}",
                            "value": 0.03,
                            "max": 0.01,
                            "verdict": "Failed",
                            "at": f"t{i}",
                        }
                        for i in range(7)
                    ]
                },
            },
            3,
            [
                "weight 0%, step 1/3, RolledBack",  # rolled back wins over paused
                "           AnalysisFailed: error-rate 0.03 > max 0.01",
                "Measurements (newest last):",
                "  t6  m6                   0.03         max 0.01         Failed",
            ],
            ["  t1  m1"],  # only the last five
            id="rolled back with measurements",
        ),
        pytest.param(
            {
                "phase": "Progressing",
                "observedGeneration": 3,
                "stable": STABLE,
                "analysis": {
                    "measurements": [
                        {
                            "metric": "latency-p99",
                            "value": 0.09,
                            "stableValue": 0.05,
                            "maxRatioToStable": 1.5,
                            "verdict": "Failed",
                            "message": "canary 0.09 > 1.5 x stable 0.05 (maxRatioToStable)",
                            "at": "t1",
                        }
                    ]
                },
            },
            3,
            ["latency-p99          0.09         maxRatioToStable 1.5 Failed  canary 0.09 > 1.5 x"],
            [],
            id="a measurement against stable",
        ),
        pytest.param(
            {
                "phase": "Degraded",
                "observedGeneration": 3,
                "stable": STABLE,
                "canary": {
                    "revision": "bbbb",
                    "version": "2.1.0",
                    "state": "Aborted",
                    "reason": "Aborted",
                    "message": "aborted by the user",
                    "step": 1,
                    "actions": [
                        {"action": "pause", "at": "2026-12-02T10:00:00Z", "step": 1},
                        {"action": "abort", "by": "alice", "at": "2026-12-02T10:05:00Z"},
                    ],
                },
            },
            3,
            [
                "  pause        by unknown (no admission stamp) at 2026-12-02T10:00:00Z (step 1)",
                "  abort        by alice at 2026-12-02T10:05:00Z",
            ],
            [],
            id="who paused and who aborted",
        ),
    ],
)
def test_status(
    status: dict[str, Any] | None, generation: int, present: list[str], absent: list[str]
) -> None:
    steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}]
    text = format_status(md(status, generation, rollout={"steps": steps}))
    for part in present:
        assert part in text, f"{part!r} not in:\n{text}"
    for part in absent:
        assert part not in text, f"{part!r} in:\n{text}"


def test_history_numbers_from_the_oldest_and_marks_the_stable() -> None:
    entries = history(("cccc", "3.0.0", None), ("bbbb", "2.0.0", None), ("aaaa", "1.0.0", None))
    obj = md({"stable": {"revision": "bbbb"}, "history": entries})
    assert [(n, e["revision"]) for n, e in history_rows(obj)] == [
        (3, "cccc"),
        (2, "bbbb"),
        (1, "aaaa"),
    ]
    lines = format_history(obj).splitlines()
    assert lines[0].split() == [
        "NUMBER",
        "REVISION",
        "VERSION",
        "PROMOTED",
        "BY",
        "HOW",
        "MODEL",
        "IMAGE",
        "ENDED",
        "URI",
    ]
    assert lines[1].split() == [
        "3",
        "cccc",
        "3.0.0",
        "2026-11-26T10:00:00Z",
        "-",
        "-",
        "-",
        "-",
        "-",
        "s3://m/3.0.0",
    ]
    assert "(stable)" in lines[2]
    assert "(stable)" not in lines[1] + lines[3]


def test_history_says_who_promoted_what_bytes_and_how_each_ended() -> None:
    model, image = "sha256:" + "ab" * 32, "docker.io/seldonio/mlserver@sha256:" + "cd" * 32
    [new, old] = history(("bbbb", "2.0.0", None), ("aaaa", "1.0.0", None))
    new |= {"promotedBy": "paula", "promotion": "Promote", "modelDigest": model}
    new |= {"imageDigest": image}
    old |= {"promotedBy": "alice", "promotion": "Initial", "endReason": "PromotedOver"}
    old |= {"endedBy": "paula", "endedAt": "2026-11-26T10:09:00Z"}
    obj = md({"stable": {"revision": "bbbb"}, "history": [new, old]})

    short = format_history(obj).splitlines()
    wide = format_history(obj, wide=True).splitlines()

    assert short[1].split()[4:9] == [
        "paula",
        "Promote",
        "sha256:abababababab",
        "mlserver@sha256:cdcdcdcdcdcd",
        "(stable)",
    ]
    assert " ".join(short[2].split()[4:6]) == "alice Initial"
    assert "PromotedOver by paula at 2026-11-26T10:09:00Z" in short[2]
    assert model in wide[1] and image in wide[1]


@pytest.mark.parametrize(
    ("digest", "short"),
    [
        (None, "-"),
        ("sha256:" + "0123456789ab" * 5 + "cdef", "sha256:0123456789ab"),
        ("docker.io/seldonio/mlserver@sha256:" + "f" * 64, "mlserver@sha256:ffffffffffff"),
        ("registry.local/mlserver:1.7.1", "registry.local/mlserver:1.7.1"),
    ],
)
def test_digests_are_shortened_like_kubectl_shortens_ids(digest: str | None, short: str) -> None:
    assert short_digest(digest) == short


def test_history_of_a_model_never_promoted_is_just_the_header() -> None:
    assert format_history(md(None)).split() == [
        "NUMBER",
        "REVISION",
        "VERSION",
        "PROMOTED",
        "BY",
        "HOW",
        "MODEL",
        "IMAGE",
        "ENDED",
        "URI",
    ]


@pytest.mark.parametrize(
    ("stable", "to_revision", "template", "said"),
    [
        pytest.param(
            "bbbb", None, TEMPLATE_1, "rolling back to revision 1 (aaaa, 1.0.0)", id="previous"
        ),
        pytest.param(
            "cccc", None, TEMPLATE_2, "rolling back to revision 2 (bbbb, 2.0.0)", id="skips stable"
        ),
        pytest.param(
            "cccc", 1, TEMPLATE_1, "rolling back to revision 1 (aaaa, 1.0.0)", id="--to-revision"
        ),
    ],
)
def test_undo_puts_a_previous_serving_spec_back(
    stable: str, to_revision: int | None, template: dict[str, Any], said: str
) -> None:
    entries = history(
        ("cccc", "3.0.0", {"model": {"version": "3.0.0"}}),
        ("bbbb", "2.0.0", TEMPLATE_2),
        ("aaaa", "1.0.0", TEMPLATE_1),
    )
    if stable == "bbbb":
        entries = entries[1:]
    ops, message = undo_ops(md({"stable": {"revision": stable}, "history": entries}), to_revision)
    assert message == said
    target = next(e["revision"] for e in entries if e.get("template") == template)
    assert ops == [
        *({"op": "add", "path": f"/spec/{f}", "value": value} for f, value in template.items()),
        {"op": "add", "path": "/metadata/annotations", "value": {UNDO_TO: target}},
    ]


def test_undo_adds_its_annotation_beside_the_others() -> None:
    entries = history(("bbbb", "2.0.0", TEMPLATE_2), ("aaaa", "1.0.0", TEMPLATE_1))
    obj = md({"stable": {"revision": "bbbb"}, "history": entries})
    obj["metadata"]["annotations"] = {"serving.slipway.dev/applied-by": "bob"}

    ops, _ = undo_ops(obj, None)

    assert ops[-1] == {
        "op": "add",
        "path": "/metadata/annotations/serving.slipway.dev~1undo-to",
        "value": "aaaa",
    }


@pytest.mark.parametrize(
    ("entries", "stable", "to_revision", "error"),
    [
        pytest.param([], None, None, "no previous revision", id="no history"),
        pytest.param(
            [("aaaa", "1.0.0", TEMPLATE_1)], "aaaa", None, "no previous revision", id="only stable"
        ),
        pytest.param(
            [("bbbb", "2.0.0", TEMPLATE_2), ("aaaa", "1.0.0", TEMPLATE_1)],
            "bbbb",
            7,
            "no revision number 7; numbers: 2, 1",
            id="unknown number",
        ),
        pytest.param(
            [("bbbb", "2.0.0", TEMPLATE_2), ("aaaa", "1.0.0", None)],
            "bbbb",
            None,
            "revision 1 has no recorded serving spec",
            id="no template",
        ),
    ],
)
def test_undo_refuses_with_a_reason(
    entries: list[tuple[str, str, dict[str, Any] | None]],
    stable: str | None,
    to_revision: int | None,
    error: str,
) -> None:
    obj = md({"stable": {"revision": stable} if stable else None, "history": history(*entries)})
    with pytest.raises(PluginError, match=error):
        undo_ops(obj, to_revision)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status", "fraud"], {"command": "status", "name": "fraud", "namespace": None}),
        (["-n", "ml", "pause", "fraud"], {"command": "pause", "namespace": "ml"}),
        (
            ["promote", "fraud", "-n", "ml"],
            {"command": "promote", "namespace": "ml", "full": False},
        ),
        (["promote", "--full", "fraud"], {"command": "promote", "full": True}),
        (["undo", "fraud", "--to-revision", "2"], {"command": "undo", "to_revision": 2}),
        (["undo", "fraud"], {"command": "undo", "to_revision": None}),
        (["--context", "prod", "history", "fraud"], {"context": "prod", "command": "history"}),
        # kubectl's flags after the command too (the README's `promote fraud -n ml --as alice`)
        (
            ["promote", "fraud", "-n", "ml", "--as", "alice"],
            {"namespace": "ml", "as_user": "alice", "as_group": []},
        ),
        (
            ["status", "fraud", "--context", "prod", "--kubeconfig", "k", "--as-group", "g"],
            {"context": "prod", "kubeconfig": "k", "as_group": ["g"], "as_user": None},
        ),
        (
            ["--as", "bob", "--as-group", "g", "-n", "ml", "abort", "fraud"],
            {"as_user": "bob", "as_group": ["g"], "namespace": "ml", "context": None},
        ),
    ],
)
def test_command_line(argv: list[str], expected: dict[str, Any]) -> None:
    args = vars(build_parser().parse_args(argv))
    assert {key: args[key] for key in expected} == expected


@pytest.mark.parametrize(
    "argv", [[], ["status"], ["rollback", "fraud"], ["undo", "fraud", "--to-revision", "x"]]
)
def test_command_line_refuses(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_the_action_annotation_is_the_contract_name() -> None:
    assert ACTION_ANNOTATION == "serving.slipway.dev/action"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            '{"kind":"Status","message":"modeldeployments \\"fraud\\" is forbidden: user '
            '\'alice\' may not promote","reason":"Forbidden"}',
            "modeldeployments \"fraud\" is forbidden: user 'alice' may not promote (403)",
        ),
        ("<html>proxy error</html>", "403 Forbidden: <html>proxy error</html>"),
        ('["not", "a", "status"]', "403 Forbidden: <html>proxy error</html>"),
    ],
)
def test_an_api_refusal_is_printed_as_its_message(body: str, said: str) -> None:
    assert api_message(403, body, "403 Forbidden: <html>proxy error</html>") == said


class FakeCluster:
    """Plays the API server for `request_action`: a pending action the operator takes after a
    few reads, and a write that another one beat (a 409 the test injects)."""

    def __init__(self, pending_reads: int = 0, conflicts: int = 0) -> None:
        self.pending_reads = pending_reads
        self.conflicts = conflicts
        self.writes: list[Any] = []
        self.version = 1

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        annotations = {}
        if self.pending_reads > 0:
            self.pending_reads -= 1
            annotations = {ACTION_ANNOTATION: "pause", "serving.slipway.dev/action-by": "alice"}
        return {"metadata": {"resourceVersion": str(self.version), "annotations": annotations}}

    def patch(self, namespace: str, name: str, body: Any, content_type: str = "") -> None:
        if self.conflicts > 0:
            self.conflicts -= 1
            self.version += 1
            raise Conflict("the object has been modified (409)")
        self.writes.append(body)


def test_an_action_waits_for_the_one_before_it_and_writes_on_what_it_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster = FakeCluster(pending_reads=2, conflicts=1)

    request_action(cluster, "ml", "fraud", "promote", sleep=lambda _: None)

    assert cluster.writes == [
        {"metadata": {"resourceVersion": "2", "annotations": {ACTION_ANNOTATION: "promote"}}}
    ]
    assert "waiting for Slipway to take the action 'pause' (asked by alice) first" in (
        capsys.readouterr().err
    )


def test_an_action_left_waiting_says_so_after_a_while() -> None:
    cluster = FakeCluster(pending_reads=1000)
    ticks = iter(range(0, 1000, 10))

    with pytest.raises(PluginError, match="has waited 30s for Slipway to take it"):
        request_action(
            cluster, "ml", "fraud", "promote", sleep=lambda _: None, clock=lambda: next(ticks)
        )
    assert cluster.writes == []
