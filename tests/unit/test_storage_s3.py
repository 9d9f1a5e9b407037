"""`slipway fetch` from S3, against moto's S3 server on 127.0.0.1 (see tests/fetch_servers.py).

Credentials and the endpoint reach the fetcher the way a pod gives them: environment variables.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import obstore
import pytest
from obstore.store import S3Store

from slipway.storage import ExitCode, fetch_main
from slipway.storage.digest import tree_digest
from slipway.storage.placement import READY_MARKER

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch_servers import moto_enforce_auth, moto_s3_server, s3_create_bucket

BUCKET = "models"
FILES = {
    "fraud/2.1.0/model.joblib": b"joblib" * 5000,
    "fraud/2.1.0/settings/model-settings.json": b'{"name": "fraud"}',
    "fraud/2.1.0/README": b"fraud detector",
    "fraud/2.1.00/not-this-one": b"a sibling prefix, not part of fraud/2.1.0",
}
DIR_SHA = tree_digest(
    {
        name.removeprefix("fraud/2.1.0/"): hashlib.sha256(data).hexdigest()
        for name, data in FILES.items()
        if name.startswith("fraud/2.1.0/")
    }
)
KEYS = {"AWS_ACCESS_KEY_ID": "slipway-test", "AWS_SECRET_ACCESS_KEY": "slipway-secret"}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_s3_server() as endpoint:
        s3_create_bucket(endpoint, BUCKET)
        store = S3Store(
            BUCKET,
            endpoint=endpoint,
            region="us-east-1",
            access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
            client_options={"allow_http": True},
        )
        for key, data in FILES.items():
            obstore.put(store, key, data)
        yield endpoint


@pytest.fixture
def s3_env(s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    return s3


def fetch(*argv: str) -> int:
    return fetch_main([*argv, "--backoff", "0.01", "--timeout", "5"])


def test_a_single_object_lands_under_its_key_name(s3_env: str, tmp_path: Path) -> None:
    data = FILES["fraud/2.1.0/model.joblib"]
    sha = hashlib.sha256(data).hexdigest()
    assert fetch(f"s3://{BUCKET}/fraud/2.1.0/model.joblib", str(tmp_path), "--sha256", sha) == 0
    assert (tmp_path / "model.joblib").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [READY_MARKER, "model.joblib"]


@pytest.mark.parametrize("uri", [f"s3://{BUCKET}/fraud/2.1.0", f"s3://{BUCKET}/fraud/2.1.0/"])
def test_a_prefix_lands_as_a_directory_tree_with_its_digest(
    s3_env: str, tmp_path: Path, uri: str
) -> None:
    assert fetch(uri, str(tmp_path), "--sha256", DIR_SHA) == ExitCode.OK
    placed = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert placed == [READY_MARKER, "README", "model.joblib", "settings/model-settings.json"]
    assert (tmp_path / "settings/model-settings.json").read_bytes() == b'{"name": "fraud"}'


def test_the_endpoint_can_also_come_from_s3_endpoint(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("S3_ENDPOINT", s3_env)
    assert fetch(f"s3://{BUCKET}/fraud/2.1.0/README", str(tmp_path)) == ExitCode.OK
    assert (tmp_path / "README").read_bytes() == b"fraud detector"


@pytest.mark.parametrize(
    "uri",
    [f"s3://{BUCKET}/fraud/9.9.9", f"s3://{BUCKET}/fraud/2.1.0/model.pkl", "s3://no-bucket/x"],
)
def test_a_missing_object_says_no_such_object(
    s3_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    assert fetch(uri, str(tmp_path)) == ExitCode.NOT_FOUND
    assert capsys.readouterr().err == f"slipway fetch: {uri}: no such object\n"
    assert list(tmp_path.iterdir()) == []


def test_a_checksum_mismatch_fails_and_leaves_the_directory_empty(
    s3_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "f" * 64
    assert fetch(f"s3://{BUCKET}/fraud/2.1.0", str(tmp_path), "--sha256", wrong) == 5
    assert f"sha256 mismatch: expected {wrong}, got {DIR_SHA}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unknown_credentials_are_access_denied(
    s3_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moto_enforce_auth(s3_env, True)  # moto now checks signatures against its (empty) IAM
    try:
        assert fetch(f"s3://{BUCKET}/fraud/2.1.0", str(tmp_path)) == ExitCode.ACCESS_DENIED
    finally:
        moto_enforce_auth(s3_env, False)
    err = capsys.readouterr().err
    assert err.startswith(f"slipway fetch: s3://{BUCKET}/fraud/2.1.0: access denied (check ")
    assert "AWS_ACCESS_KEY_ID" in err
    assert list(tmp_path.iterdir()) == []
