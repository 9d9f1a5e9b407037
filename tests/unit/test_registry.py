"""The model registry's pure parts (models:/ uris, credentials, what an answer means for what
serves) and the resolver's schedule. The MLflow server itself is real in
tests/integration/test_registry_mlflow.py and tests/e2e/test_registry.py; here the resolver's
lookups are a function of the test's (what it schedules is the subject, not MLflow), and the
answers no real MLflow gives (a redirect, a page of HTML, a body too big) come from a loopback
HTTP server of the test's."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator, Mapping

import pytest

from slipway.api import ModelDeployment, ModelDeploymentStatus, RegistryResolution
from slipway.controller import Key
from slipway.reconcile import waits_for_registry
from slipway.registry import (
    MODEL_RESOLVED,
    Lookup,
    RegistryError,
    RegistryRef,
    RegistryResolver,
    Resolved,
    auth_headers,
    fetchable,
    outcome,
    parse_registry_uri,
    report,
    resolve,
    resolved,
)
from slipway.resources import revision_of
from slipway.rollout import Decision

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
STAMP = "2026-12-01T10:00:00Z"
ARTIFACTS = "s3://mlflow/1/abc/artifacts/model"


def md(
    uri: str = "models:/fraud@champion", status: dict[str, object] | None = None
) -> ModelDeployment:
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "fraud", "namespace": "ml", "generation": 1},
            "spec": {
                "model": {
                    "uri": uri,
                    "format": "sklearn",
                    "registry": {
                        "mlflow": {"trackingUri": "http://mlflow:5000", "pollInterval": "30s"}
                    },
                    "storage": {"secretName": "s3"},
                },
            },
            "status": status or {},
        }
    )


@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        (
            "models:/fraud@champion",
            RegistryRef("models:/fraud@champion", "fraud", alias="champion"),
        ),
        ("models:/fraud/7", RegistryRef("models:/fraud/7", "fraud", version="7")),
        (
            "models:/fraud.v2@prod-eu",
            RegistryRef("models:/fraud.v2@prod-eu", "fraud.v2", alias="prod-eu"),
        ),
    ],
)
def test_a_models_uri_names_a_version_by_alias_or_number(uri: str, ref: RegistryRef) -> None:
    assert parse_registry_uri(uri) == ref


@pytest.mark.parametrize(
    "uri", ["models:/fraud", "models://fraud@x", "models:/fraud/0", "models:/a/b/1", "s3://m"]
)
def test_other_uris_are_refused_naming_the_field(uri: str) -> None:
    with pytest.raises(ValueError, match=r"spec\.model\.uri"):
        parse_registry_uri(uri)


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("s3://b/k", True),
        ("gs://b/k", True),
        ("https://h/m.onnx", True),
        ("hf://org/m", True),
        ("mlflow-artifacts:/0/r/artifacts/model", False),
        ("/srv/mlflow/artifacts/1/model", False),
        ("runs:/abc/model", False),
        ("file:///tmp/model", False),
    ],
)
def test_the_fetcher_reads_only_some_artifact_locations(uri: str, ok: bool) -> None:
    assert fetchable(uri) is ok


@pytest.mark.parametrize(
    ("credentials", "header"),
    [
        ({}, None),
        ({"MLFLOW_TRACKING_TOKEN": "t0k"}, "Bearer t0k"),
        (
            {"MLFLOW_TRACKING_USERNAME": "ci", "MLFLOW_TRACKING_PASSWORD": "pw"},
            "Basic " + base64.b64encode(b"ci:pw").decode(),
        ),
        ({"MLFLOW_TRACKING_TOKEN": "t0k", "MLFLOW_TRACKING_USERNAME": "ci"}, "Bearer t0k"),
    ],
)
def test_credentials_become_the_header_mlflow_clients_send(
    credentials: dict[str, str], header: str | None
) -> None:
    assert auth_headers(credentials).get("Authorization") == header


# -- what an answer means ----------------------------------------------------------------------


def lookup(answer: Resolved | RegistryError | None) -> Lookup:
    return Lookup(answer=answer, next_check=T0 + dt.timedelta(seconds=30))


RECORDED = {
    "registry": {
        "uri": "models:/fraud@champion",
        "version": "6",
        "artifactUri": "s3://mlflow/1/old/artifacts/model",
        "resolvedAt": "2026-11-30T09:00:00Z",
    }
}


def test_an_answer_is_what_serves_and_the_revision_follows_it() -> None:
    found = outcome(md(), lookup(Resolved("7", ARTIFACTS)), STAMP)

    assert found.resolution == RegistryResolution(
        uri="models:/fraud@champion", version="7", artifact_uri=ARTIFACTS, resolved_at=STAMP
    )
    assert (found.status, found.reason) == ("True", "Resolved")
    serving = resolved(md(), found.resolution).spec.serving()
    assert (serving.model.uri, serving.model.version, serving.model.registry) == (
        ARTIFACTS,
        "7",
        None,
    )
    assert serving.model.storage is not None  # the artifacts are fetched with storage's Secret
    moved = resolved(
        md(), found.resolution.model_copy(update={"version": "8", "artifact_uri": "s3://x"})
    )
    assert revision_of(moved.spec.serving()) != revision_of(serving)


def test_the_same_answer_again_keeps_its_time_so_nothing_is_written() -> None:
    same = Resolved("6", "s3://mlflow/1/old/artifacts/model")
    found = outcome(md(status=RECORDED), lookup(same), STAMP)
    assert found.resolution is not None and found.resolution.resolved_at == "2026-11-30T09:00:00Z"


@pytest.mark.parametrize(
    ("status", "serves", "says"),
    [
        (RECORDED, "6", "version 6 (resolved 2026-11-30T09:00:00Z) keeps serving"),
        ({}, None, "nothing is served until it resolves"),
    ],
)
def test_an_error_keeps_what_was_resolved_last(
    status: dict[str, object], serves: str | None, says: str
) -> None:
    error = RegistryError("RegistryUnavailable", "MLflow at http://mlflow:5000 did not answer")
    found = outcome(md(status=status), lookup(error), STAMP)

    assert (found.status, found.reason) == ("False", "RegistryUnavailable")
    assert (found.resolution.version if found.resolution else None) == serves
    assert found.message.endswith(says)


def test_a_record_for_another_uri_is_not_served() -> None:
    error = RegistryError("AliasNotFound", "no alias")
    found = outcome(md("models:/fraud@challenger", status=RECORDED), lookup(error), STAMP)
    assert found.resolution is None


def test_while_the_first_answer_is_on_its_way_nothing_is_decided() -> None:
    found = outcome(md(), lookup(None), STAMP)
    assert found.pending and found.resolution is None
    assert waits_for_registry(found)


@pytest.mark.parametrize(
    ("uri", "status", "answer", "waits"),
    [
        pytest.param("models:/fraud@champion", {}, None, True, id="never resolved: waits"),
        pytest.param(
            "models:/fraud@champion", RECORDED, None, False, id="resolved before a restart"
        ),
        pytest.param(
            "models:/fraud@challenger", RECORDED, None, True, id="resolved for another uri"
        ),
        pytest.param(
            "models:/fraud@champion", RECORDED, Resolved("7", ARTIFACTS), False, id="answered"
        ),
        pytest.param(
            "models:/fraud@champion",
            {},
            RegistryError("RegistryUnavailable", "down"),
            False,
            id="an error is decided on (the spec is held)",
        ),
    ],
)
def test_a_reconcile_waits_for_the_registry_only_while_nothing_was_resolved_for_its_uri(
    uri: str, status: dict[str, object], answer: Resolved | RegistryError | None, waits: bool
) -> None:
    """An operator restarted (or a standby taking over) has no answer yet for any models:/ uri:
    one resolved before, recorded in status, is decided on meanwhile, so that a registry slow
    to answer (4 lookups at a time, 10 s each when it drops packets) never holds a rollback, an
    action or a timer of every such ModelDeployment until its turn comes."""
    found = outcome(md(uri, status=status), lookup(answer), STAMP)
    assert waits_for_registry(found) is waits
    if not waits and answer is None:
        assert found.resolution is not None and found.resolution.version == "6"


def decision(status: ModelDeploymentStatus, requeue: float | None = None) -> Decision:
    return Decision(status, [], 100, 0, [], requeue, port=8080)


def test_the_report_records_the_answer_the_condition_and_the_next_poll() -> None:
    before = ModelDeploymentStatus.model_validate(RECORDED)
    found = outcome(md(status=RECORDED), lookup(Resolved("7", ARTIFACTS)), STAMP)
    status = ModelDeploymentStatus.model_validate({"stable": {"revision": "abc"}})

    done = report(before, decision(status, requeue=90.0), found, "abc", T0, STAMP)

    assert done.status.registry == found.resolution
    [condition] = [c for c in done.status.conditions if c.type == MODEL_RESOLVED]
    assert (condition.status, condition.reason) == ("True", "Resolved")
    assert done.status.stable.registry_uri == "models:/fraud@champion"
    assert done.requeue_after == 30.0
    assert [(e.reason, e.message) for e in done.events] == [
        ("RegistryResolved", f"models:/fraud@champion is version 7 (at {ARTIFACTS})")
    ]


def test_a_failing_registry_warns_once_and_keeps_its_condition_time() -> None:
    error = RegistryError("RegistryUnavailable", "MLflow did not answer")
    found = outcome(md(status=RECORDED), lookup(error), STAMP)
    first = report(
        ModelDeploymentStatus.model_validate(RECORDED),
        decision(ModelDeploymentStatus()),
        found,
        "abc",
        T0,
        STAMP,
    )
    assert [e.reason for e in first.events] == ["RegistryUnavailable"]

    later = report(first.status, decision(first.status), found, "abc", T0, "2026-12-01T10:05:00Z")
    assert later.events == []
    [condition] = [c for c in later.status.conditions if c.type == MODEL_RESOLVED]
    assert condition.last_transition_time == STAMP


def test_a_spec_that_leaves_the_registry_drops_its_record_and_condition() -> None:
    found = outcome(md(status=RECORDED), lookup(Resolved("6", ARTIFACTS)), STAMP)
    with_it = report(
        ModelDeploymentStatus(), decision(ModelDeploymentStatus()), found, "abc", T0, STAMP
    )

    without = report(with_it.status, decision(with_it.status), None, "abc", T0, STAMP)

    assert without.status.registry is None
    assert MODEL_RESOLVED not in [c.type for c in without.status.conditions]


# -- the resolver's schedule -------------------------------------------------------------------


class Registry:
    """Answers lookups with what the test says, counting them; a lookup may be held."""

    def __init__(self) -> None:
        self.answers: list[Resolved | RegistryError] = []
        self.calls = 0
        self.release = threading.Event()
        self.release.set()

    def __call__(self, ref: RegistryRef, tracking: str, credentials: Mapping[str, str]) -> Resolved:
        self.calls += 1
        self.release.wait(10)
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, RegistryError):
            raise answer
        return answer


KEY = Key("ml", "fraud")


def settled(resolver: RegistryResolver, now: dt.datetime) -> Lookup | None:
    """`lookup` once the lookup it may have started has ended."""
    first = resolver.lookup(KEY, md(), now)
    entry = resolver._entries.get(KEY)
    if entry is not None and entry.future is not None:
        entry.future.exception(timeout=10)
    return first


def test_lookups_run_once_per_poll_interval_and_wake_the_reconcile() -> None:
    registry = Registry()
    registry.answers = [Resolved("1", ARTIFACTS), Resolved("2", ARTIFACTS)]
    woken: list[Key] = []
    resolver = RegistryResolver(notify=woken.append, resolver=registry)

    assert settled(resolver, T0) == Lookup(answer=None, next_check=T0 + dt.timedelta(seconds=30))
    assert resolver.lookup(KEY, md(), T0).answer == Resolved("1", ARTIFACTS)
    assert resolver.lookup(KEY, md(), T0 + dt.timedelta(seconds=29)).answer == Resolved(
        "1", ARTIFACTS
    )
    assert (registry.calls, woken) == (1, [KEY])

    settled(resolver, T0 + dt.timedelta(seconds=31))  # due: a second lookup
    assert resolver.lookup(KEY, md(), T0 + dt.timedelta(seconds=32)).answer == Resolved(
        "2", ARTIFACTS
    )
    assert registry.calls == 2


def test_a_lookup_that_hangs_holds_no_reconcile() -> None:
    registry = Registry()
    registry.answers = [Resolved("1", ARTIFACTS)]
    registry.release.clear()
    resolver = RegistryResolver(resolver=registry)

    assert resolver.lookup(KEY, md(), T0).answer is None  # returns at once
    assert resolver.lookup(KEY, md(), T0 + dt.timedelta(minutes=5)).answer is None
    assert registry.calls == 1  # one lookup in flight, not one per reconcile
    registry.release.set()


def test_errors_are_answers_and_credentials_need_the_api() -> None:
    registry = Registry()
    registry.answers = [RegistryError("AliasNotFound", "no alias")]
    resolver = RegistryResolver(resolver=registry)
    settled(resolver, T0)
    answer = resolver.lookup(KEY, md(), T0).answer
    assert isinstance(answer, RegistryError) and answer.reason == "AliasNotFound"

    with_secret = md()
    assert with_secret.spec.model.registry is not None
    with_secret.spec.model.registry.mlflow.secret_name = "mlflow-token"
    resolver = RegistryResolver(resolver=registry)  # kube None: no Secret can be read
    resolver.lookup(KEY, with_secret, T0)
    entry = resolver._entries[KEY]
    assert entry.future is not None
    error = entry.future.exception(timeout=10)
    assert isinstance(error, RegistryError) and error.reason == "RegistryCredentialsUnreadable"


# -- answers no MLflow gives -------------------------------------------------------------------


@pytest.fixture
def odd_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/redirect/"):
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                return
            if self.path.startswith("/code/"):
                # an error code no MLflow sends: long, with markup and a line break
                code = "<script>" + "X" * 5000 + "\nlooks like a log line"
                body = json.dumps({"error_code": code, "message": "no"}).encode()
                self.send_response(418)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            body = (
                b"<html>login</html>" if self.path.startswith("/html/") else b"{" + b" " * (2 << 20)
            )
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("prefix", "reason", "says"),
    [
        ("redirect", "RegistryUnreadable", "answered HTTP 302"),
        ("html", "RegistryUnreadable", "answered HTTP 200 with something other than JSON"),
        ("big", "RegistryUnreadable", "the answer is over 1 MiB"),
    ],
)
def test_an_answer_that_is_not_mlflow_s_is_said_in_slipway_s_words(
    odd_server: str, prefix: str, reason: str, says: str
) -> None:
    with pytest.raises(RegistryError) as caught:
        resolve(parse_registry_uri("models:/fraud@champion"), f"{odd_server}/{prefix}", {})
    assert caught.value.reason == reason
    assert says in caught.value.message


def test_an_error_code_is_said_as_a_word_of_at_most_64_characters(odd_server: str) -> None:
    with pytest.raises(RegistryError) as caught:
        resolve(parse_registry_uri("models:/fraud@champion"), f"{odd_server}/code", {})
    assert caught.value.reason == "RegistryUnreadable"
    said = caught.value.message.split("answered HTTP 418 ", 1)[1]
    assert said == "script" + "X" * 58


def test_a_registry_nobody_listens_at_is_unavailable() -> None:
    with pytest.raises(RegistryError) as caught:
        resolve(parse_registry_uri("models:/fraud/1"), "http://127.0.0.1:9", {}, timeout=2)
    assert caught.value.reason == "RegistryUnavailable"
