"""Real servers on 127.0.0.1 for the `slipway fetch` tests, each started and stopped by a test.

- `http_server`: Python's http.server over a directory, plus paths that answer 403, drop the
  connection half-way through a body, or do so only the first few times.
- `moto_s3_server`: moto's S3 in server mode, in its own process and its own virtualenv under
  ~/.cache/slipway (moto needs botocore, which needs python-dateutil<3, which the project's
  kubernetes client cannot use, so it cannot live in the project's venv). The first run on a
  machine creates that virtualenv from PyPI; `python tests/fetch_servers.py install-moto` does
  it ahead of time. The server exits by itself after SERVER_LIFETIME seconds.
- `hub_server`: the few Hugging Face Hub API routes that huggingface_hub's snapshot_download
  calls (model info, file tree, resolve), serving files from a dict.
- `populate_hub_cache`: a Hugging Face cache directory laid out as huggingface_hub writes it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

MOTO_REQUIREMENT = "moto[server]==5.2.5"
SERVER_LIFETIME = 300  # seconds; a server outliving its test run stops by itself
CACHE = Path(os.environ.get("SLIPWAY_CACHE", Path.home() / ".cache" / "slipway"))


# --- plain HTTP -------------------------------------------------------------------------------


@dataclass
class HttpServer:
    url: str
    requests: Counter[str]  # path -> how many GETs it got


def _handler(root: Path, requests: Counter[str], flaky_failures: int) -> type:
    class Handler(http.server.SimpleHTTPRequestHandler):
        """Files under `root`; /forbidden/* is 403; /broken/* drops every body half-way;
        /flaky/* drops it the first `flaky_failures` times, then serves it whole."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            if self.path.startswith("/forbidden/"):
                self.send_error(403)
                return
            self.path = _strip_prefix(self.path)
            super().do_HEAD()

        def do_GET(self) -> None:
            path = self.path
            if self.command == "GET":
                requests[path] += 1
            if path.startswith("/forbidden/"):
                self.send_error(403)
                return
            broken = path.startswith("/broken/") or (
                path.startswith("/flaky/") and requests[path] <= flaky_failures
            )
            self.path = _strip_prefix(path)
            if not broken:
                super().do_GET()
                return
            file = root / unquote(urlsplit(self.path).path).lstrip("/")
            if not file.is_file():
                self.send_error(404)
                return
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    return Handler


def _strip_prefix(path: str) -> str:
    for prefix in ("/broken/", "/flaky/"):
        if path.startswith(prefix):
            return "/" + path[len(prefix) :]
    return path


@contextmanager
def _serving(handler: type) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    stopper = threading.Timer(SERVER_LIFETIME, server.shutdown)
    stopper.daemon = True
    stopper.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stopper.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def http_server(root: Path, *, flaky_failures: int = 1) -> Iterator[HttpServer]:
    requests: Counter[str] = Counter()
    with _serving(_handler(root, requests, flaky_failures)) as url:
        yield HttpServer(url, requests)


# --- S3 (moto) --------------------------------------------------------------------------------


def moto_python() -> Path:
    """A Python with moto[server]: $SLIPWAY_MOTO_PYTHON, or a virtualenv cached under CACHE."""
    if os.environ.get("SLIPWAY_MOTO_PYTHON"):
        return Path(os.environ["SLIPWAY_MOTO_PYTHON"])
    venv = CACHE / ("moto-" + MOTO_REQUIREMENT.split("==")[1])
    python = venv / "bin" / "python"
    if python.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=venv.name + ".", dir=CACHE))
    print(f"installing {MOTO_REQUIREMENT} into {venv} (once per machine)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
    subprocess.run(
        [str(building / "bin" / "python"), "-m", "pip", "install", "-q", MOTO_REQUIREMENT],
        check=True,
        timeout=600,
    )
    try:
        building.rename(venv)
    except OSError:  # another run finished first
        shutil.rmtree(building, ignore_errors=True)
    return python


def wait_for_http(url: str, process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Until `url` answers; an error naming it when `process` exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing answered at {url}") from None
            time.sleep(0.1)


def start_moto(
    host: str = "127.0.0.1", lifetime: float = SERVER_LIFETIME
) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on a free port of `host`, in its own process group, exiting by itself
    after `lifetime` seconds; the process and its endpoint URL."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    main = (
        "import os, sys, threading; "
        f"stop = threading.Timer({lifetime}, os._exit, (0,)); stop.daemon = True; stop.start(); "
        "from moto.server import main; main(sys.argv[1:])"
    )
    process = subprocess.Popen(
        [str(moto_python()), "-c", main, "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://{host}:{port}"
    try:
        wait_for_http(f"{endpoint}/moto-api/data.json", process, timeout=60)
    except RuntimeError:
        process.kill()
        raise
    return process, endpoint


def stop_process(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Start moto's server on a free loopback port; yield its endpoint URL."""
    process, endpoint = start_moto()
    try:
        yield endpoint
    finally:
        stop_process(process)


def moto_enforce_auth(endpoint: str, enforce: bool) -> None:
    """Make moto check request signatures against its IAM (unknown keys get 403), or stop."""
    body = b"0" if enforce else b"inf"
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain"},  # else the body is parsed as a form and lost
    )
    urllib.request.urlopen(request, timeout=5).close()


def s3_create_bucket(endpoint: str, bucket: str) -> None:
    request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
    urllib.request.urlopen(request, timeout=5).close()


# --- Hugging Face Hub -------------------------------------------------------------------------


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def populate_hub_cache(
    hub_cache: Path, repo_id: str, files: dict[str, bytes], commit: str, ref: str = "main"
) -> None:
    """Lay out a model in a hub cache as huggingface_hub does: blobs, snapshots, refs."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    for relpath, data in files.items():
        blob = repo / "blobs" / git_blob_id(data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / relpath
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


@dataclass
class HubServer:
    url: str
    authorizations: list[str]  # the Authorization header of each request, "" when absent


def _hub_handler(
    repo_id: str, files: dict[str, bytes], commit: str, token: str | None, seen: list[str]
) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def _answer(self, *, head: bool) -> None:
            auth = self.headers.get("Authorization", "")
            seen.append(auth)
            path = unquote(urlsplit(self.path).path)
            if token is not None and auth != f"Bearer {token}":
                self._send(401, b'{"error": "Invalid credentials"}', head=head)
                return
            info = f"/api/models/{repo_id}/revision/"
            tree = f"/api/models/{repo_id}/tree/"
            resolve = f"/{repo_id}/resolve/"
            if path.startswith(info):
                body = {
                    "id": repo_id,
                    "sha": commit,
                    "siblings": [{"rfilename": name} for name in sorted(files)],
                }
                self._send(200, json.dumps(body).encode(), head=head)
            elif path.startswith(tree):
                entries = [
                    {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
                    for name, data in sorted(files.items())
                ]
                self._send(200, json.dumps(entries).encode(), head=head)
            elif path.startswith(resolve) and path[len(resolve) :].partition("/")[2] in files:
                data = files[path[len(resolve) :].partition("/")[2]]
                extra = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_id(data)}"'}
                self._send(200, data, head=head, extra=extra, json_body=False)
            else:
                self._send(404, b'{"error": "Repository not found"}', head=head)

        def _send(
            self,
            status: int,
            body: bytes,
            *,
            head: bool,
            extra: dict[str, str] | None = None,
            json_body: bool = True,
        ) -> None:
            self.send_response(status)
            if json_body:
                self.send_header("Content-Type", "application/json")
            if status == 404:
                self.send_header("X-Error-Code", "RepoNotFound")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

    return Handler


@contextmanager
def hub_server(
    repo_id: str, files: dict[str, bytes], commit: str, *, token: str | None = None
) -> Iterator[HubServer]:
    seen: list[str] = []
    with _serving(_hub_handler(repo_id, files, commit, token, seen)) as url:
        yield HubServer(url, seen)


if __name__ == "__main__":
    if sys.argv[1:] == ["install-moto"]:
        print(moto_python())
    else:
        sys.exit("usage: python tests/fetch_servers.py install-moto")
