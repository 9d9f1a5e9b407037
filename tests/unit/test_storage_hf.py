"""`slipway fetch hf://...` through huggingface_hub: online against a loopback server that
answers the Hub API routes snapshot_download uses, and offline from a prepared local cache."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.storage import ExitCode, fetch_main
from slipway.storage.digest import tree_digest
from slipway.storage.placement import READY_MARKER

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch_servers import HubServer, hub_server, populate_hub_cache

REPO = "acme/tiny-model"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_slipway_test_token"
FILES = {
    "config.json": b'{"model_type": "tiny"}',
    "model.safetensors": bytes(range(256)) * 64,
    "tokenizer/vocab.txt": b"[PAD]\n[UNK]\nhello\n",
}
SNAPSHOT_SHA = tree_digest({name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()})


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with hub_server(REPO, FILES, COMMIT, token=TOKEN) as running:
        yield running


@pytest.fixture
def online(hub: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HubServer:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "unused-hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return hub


def fetch(*argv: str) -> int:
    return fetch_main([*argv, "--backoff", "0.01", "--timeout", "5", "--retries", "1"])


def model_files(dest: Path) -> dict[str, bytes]:
    return {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file() and p.name != READY_MARKER
    }


@pytest.mark.parametrize("uri", [f"hf://{REPO}", f"hf://{REPO}@main", f"hf://{REPO}@{COMMIT}"])
def test_a_hub_snapshot_lands_with_its_tree_and_nothing_else(
    online: HubServer, tmp_path: Path, uri: str
) -> None:
    dest = tmp_path / "models"
    assert fetch(uri, str(dest), "--sha256", SNAPSHOT_SHA) == ExitCode.OK
    assert model_files(dest) == FILES  # no .cache/huggingface bookkeeping left behind
    assert (dest / READY_MARKER).is_file()
    assert f"Bearer {TOKEN}" in online.authorizations


def test_a_wrong_token_is_access_denied(
    online: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    assert fetch(f"hf://{REPO}", str(tmp_path)) == ExitCode.ACCESS_DENIED
    assert "access denied (HTTP 401: check HF_TOKEN)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_repository_is_not_found(
    online: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fetch("hf://acme/no-such-model", str(tmp_path)) == ExitCode.NOT_FOUND
    err = capsys.readouterr().err
    assert err == "slipway fetch: hf://acme/no-such-model: no such repository " + (
        "(a private one needs HF_TOKEN)\n"
    )


def test_a_snapshot_checksum_mismatch_leaves_nothing_at_the_final_path(
    online: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "a" * 64
    assert fetch(f"hf://{REPO}", str(tmp_path), "--sha256", wrong) == 5
    assert f"sha256 mismatch: expected {wrong}, got {SNAPSHOT_SHA}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf-home"
    populate_hub_cache(home / "hub", REPO, FILES, COMMIT)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # would refuse, were it called
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return home


def test_offline_the_snapshot_is_copied_out_of_the_local_cache_as_plain_files(
    offline_cache: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "models"
    assert fetch(f"hf://{REPO}", str(dest), "--sha256", SNAPSHOT_SHA) == ExitCode.OK
    assert model_files(dest) == FILES
    assert not any(p.is_symlink() for p in dest.rglob("*"))


def test_offline_a_model_missing_from_the_cache_is_not_found(
    offline_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fetch("hf://acme/elsewhere", str(tmp_path / "m")) == ExitCode.NOT_FOUND
    assert "no such snapshot in the local cache (HF_HUB_OFFLINE is set)" in capsys.readouterr().err
