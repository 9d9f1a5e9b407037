"""The reconcile workers' API client keeps a pooled connection for each of them (and a few more).

At N=5000 the operator logged "Connection pool is full, discarding connection ... size: 10": the
client's default pool is 5 per CPU, and every request beyond it opened a connection (a TLS
handshake) only to throw it away."""

from __future__ import annotations

from pathlib import Path

from slipway.cli import _load_api_client

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: t}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
"""


def test_the_pool_holds_a_connection_for_every_worker_and_more(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    api = _load_api_client(str(kubeconfig), pool_size=24)
    assert api.configuration.host == "https://127.0.0.1:6443"
    assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] == 24
