"""Registry lookups off the reconcile workers, at most once per poll interval.

A reconcile never waits for the registry: it asks `lookup` for the latest answer, which starts a
lookup in this resolver's threads when one is due (never answered yet, or the poll interval has
passed since the last one), and a finished lookup wakes that ModelDeployment's reconcile. A
registry that never answers costs one thread for the lookup's timeout, never a worker, and the
answer the ModelDeployment had stays what it serves.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from slipway.api import ModelDeployment, duration_seconds
from slipway.controller import Key
from slipway.kube import ApiError, Kube
from slipway.registry.mlflow import RegistryError, Resolved, resolve
from slipway.registry.reference import RegistryRef, parse_registry_uri

log = logging.getLogger(__name__)

LOOKUP_THREADS = 4

Resolve = Callable[[RegistryRef, str, Mapping[str, str]], Resolved]


@dataclass(frozen=True)
class Lookup:
    """The latest answer for a ModelDeployment's models:/ uri (None: the first is on its way)."""

    answer: Resolved | RegistryError | None
    next_check: dt.datetime  # when the next lookup is due


@dataclass
class _Entry:
    ident: tuple[str, str, str]  # uri, tracking uri, secret name: a change starts afresh
    answer: Resolved | RegistryError | None = None
    checked: dt.datetime | None = None
    future: concurrent.futures.Future[Resolved] | None = None


class RegistryResolver:
    """Resolves models:/ uris in threads of its own; `lookup` is called from reconciles."""

    def __init__(
        self,
        kube: Kube | None = None,
        notify: Callable[[Key], None] | None = None,
        resolver: Resolve = resolve,
    ) -> None:
        self.kube = kube  # reads the credentials Secret; None: no credentials
        self.notify = notify  # wakes the reconcile of a key whose lookup ended
        self._resolve = resolver
        self._lock = threading.Lock()
        self._entries: dict[Key, _Entry] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def lookup(self, key: Key, md: ModelDeployment, now: dt.datetime) -> Lookup | None:
        """The latest answer for md's models:/ uri, starting a lookup when one is due; None when
        the uri is not a registry's."""
        model = md.spec.model
        if not model.registry_ref or model.registry is None:
            self.forget(key)
            return None
        mlflow = model.registry.mlflow
        ident = (model.uri, mlflow.tracking_uri, mlflow.secret_name or "")
        every = dt.timedelta(seconds=duration_seconds(mlflow.poll_interval))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.ident != ident:
                if entry is not None and entry.future is not None:
                    entry.future.cancel()
                entry = self._entries[key] = _Entry(ident=ident)
            if entry.future is not None and entry.future.done():
                entry.answer, entry.checked = _answer(entry.future), now
                entry.future = None
            due = entry.checked is None or now >= entry.checked + every
            if due and entry.future is None:
                entry.future = self._start(key, md)
            next_check = (entry.checked or now) + every
            return Lookup(answer=entry.answer, next_check=next_check)

    def forget(self, key: Key) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None and entry.future is not None:
            entry.future.cancel()

    def _start(self, key: Key, md: ModelDeployment) -> concurrent.futures.Future[Resolved]:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                LOOKUP_THREADS, thread_name_prefix="slipway-registry"
            )
        future = self._pool.submit(self._lookup, md)
        future.add_done_callback(lambda _: self.notify(key) if self.notify is not None else None)
        return future

    def _lookup(self, md: ModelDeployment) -> Resolved:
        model = md.spec.model
        assert model.registry is not None
        mlflow = model.registry.mlflow
        credentials = self._credentials(md.namespace, mlflow.secret_name)
        return self._resolve(parse_registry_uri(model.uri), mlflow.tracking_uri, credentials)

    def _credentials(self, namespace: str, secret: str | None) -> dict[str, str]:
        if not secret:
            return {}
        where = f"spec.model.registry.mlflow.secretName: Secret {secret!r}"
        if self.kube is None:
            raise RegistryError("RegistryCredentialsUnreadable", f"{where}: no API access")
        try:
            found = self.kube.get("v1", "Secret", namespace, secret)
        except ApiError as error:
            if error.status == 403:
                raise RegistryError(
                    "RegistryCredentialsUnreadable",
                    f"{where}: the operator may not read Secrets (the chart's "
                    "modelRegistry.readCredentialSecrets)",
                ) from None
            raise RegistryError(
                "RegistryCredentialsUnreadable", f"{where}: {error.status}"
            ) from None
        if found is None:
            raise RegistryError(
                "RegistryCredentialsUnreadable", f"{where} does not exist in {namespace!r}"
            )
        data = found.get("data") or {}
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}


def _answer(future: concurrent.futures.Future[Resolved]) -> Resolved | RegistryError | None:
    if future.cancelled():
        return None
    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, RegistryError):
        return error
    log.error("registry lookup failed", exc_info=error)
    return RegistryError("RegistryUnavailable", f"the lookup failed: {type(error).__name__}")
