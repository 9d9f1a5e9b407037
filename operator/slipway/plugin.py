"""`kubectl slipway`: status, manual rollout control and history of a ModelDeployment.

Actions are annotations that the operator consumes (serving.slipway.dev/action); `undo` is the one
command that writes spec, as `kubectl rollout undo` does: it puts a previous revision's serving spec
back, and the operator rolls to it at once, reusing its kept Deployment.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from slipway import ACTION_ANNOTATION, GROUP, KIND, VERSION
from slipway.api import CanaryStatus
from slipway.governance.annotations import ACTION_BY, UNDO_TO, describe_actor

API_VERSION = f"{GROUP}/{VERSION}"

SERVING_FIELDS = ("model", "runtime", "resources", "template")


class PluginError(Exception):
    """A problem the user can act on; printed without a traceback."""


class Conflict(PluginError):
    """The object changed between reading and writing it (its resourceVersion moved on)."""


# kubectl's connection flags: (flags, dest, default, action, help)
_CONNECTION_OPTIONS: tuple[tuple[tuple[str, ...], str, Any, str, str], ...] = (
    (("-n", "--namespace"), "namespace", None, "store", "namespace (default: the context's)"),
    (("--context",), "context", None, "store", "kubeconfig context to use"),
    (("--kubeconfig",), "kubeconfig", None, "store", "kubeconfig file (default: KUBECONFIG)"),
    (("--as",), "as_user", None, "store", "act as this user, as kubectl --as does"),
    (
        ("--as-group",),
        "as_group",
        [],
        "append",
        "with --as: act as a member of this group, as kubectl --as-group does (once)",
    ),
)


def _add_connection_options(
    parser: argparse.ArgumentParser, *, after_the_command: bool = False
) -> None:
    """kubectl's connection flags. kubectl takes them before or after the command, so does the
    plugin: after it they are hidden from the help and leave unset what is not given there
    (SUPPRESS), so that a flag given before the command still counts."""
    for flags, dest, default, action, help_ in _CONNECTION_OPTIONS:
        parser.add_argument(
            *flags,
            dest=dest,
            action=action,
            default=argparse.SUPPRESS if after_the_command else default,
            help=argparse.SUPPRESS if after_the_command else help_,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl slipway", description="Inspect and steer Slipway ModelDeployments."
    )
    _add_connection_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("status", "a readable summary: revisions, weights, step, last measurements"),
        ("promote", "go to the next step (--full: skip the remaining steps)"),
        ("abort", "roll the canary back; stable keeps serving"),
        ("retry", "start a rolled-back or aborted canary again"),
        ("pause", "hold the canary at its step"),
        ("resume", "go on after a pause"),
        ("undo", "roll back to a previous revision at once"),
        ("history", "revisions promoted to stable: digests, who promoted them, how they ended"),
    ]:
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("name", help="ModelDeployment name")
        _add_connection_options(cmd, after_the_command=True)
        if name == "promote":
            cmd.add_argument("--full", action="store_true", help="skip the remaining steps")
        if name == "history":
            cmd.add_argument(
                "--wide", action="store_true", help="the model's and the image's digests in full"
            )
        if name == "undo":
            cmd.add_argument(
                "--to-revision",
                type=int,
                default=None,
                help="the NUMBER from `kubectl slipway history` (default: the previous one)",
            )
    return parser


class Client:
    """The few API calls the plugin makes (kubeconfig and context handled like kubectl)."""

    def __init__(
        self,
        kubeconfig: str | None,
        context: str | None,
        as_user: str | None = None,
        as_groups: Sequence[str] = (),
    ) -> None:
        from kubernetes import config

        from slipway.kube import Kube

        try:
            api = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise PluginError(f"cannot load kubeconfig: {exc}") from exc
        if context is not None:
            active = next((c for c in contexts if c["name"] == context), active)
        if len(as_groups) > 1 or (as_groups and as_user is None):
            raise PluginError("--as-group goes with --as, once")
        if as_user is not None:
            # impersonation: the API server authorizes the request as that user (RBAC: impersonate)
            api.set_default_header("Impersonate-User", as_user)
            for group in as_groups:
                api.set_default_header("Impersonate-Group", group)
        self.default_namespace = (active or {}).get("context", {}).get("namespace") or "default"
        self.kube = Kube(api)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        from slipway.kube import ApiError

        try:
            found = self.kube.get(API_VERSION, KIND, namespace, name)
        except ApiError as exc:
            raise PluginError(api_message(exc.status, exc.body, str(exc))) from exc
        if found is None:
            raise PluginError(f'modeldeployment "{name}" not found in namespace "{namespace}"')
        return found

    def patch(
        self,
        namespace: str,
        name: str,
        body: Any,
        content_type: str = "application/merge-patch+json",
    ) -> None:
        from slipway.kube import ApiError

        try:
            self.kube.patch(API_VERSION, KIND, namespace, name, body, content_type)
        except ApiError as exc:
            error = Conflict if exc.conflict else PluginError
            raise error(api_message(exc.status, exc.body, str(exc))) from exc


def api_message(status: int, body: str, fallback: str) -> str:
    """What the API server said, as kubectl prints it: the message of its Status object (a
    refusal by an admission policy names the verb there)."""
    try:
        said = json.loads(body).get("message")
    except (ValueError, AttributeError):
        said = None
    return f"{said} ({status})" if isinstance(said, str) and said else fallback


def history_rows(md: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """History entries numbered from the oldest (1) up, newest first, as `history` prints them."""
    entries = list((md.get("status") or {}).get("history") or [])
    return [(len(entries) - i, entry) for i, entry in enumerate(entries)]


def short_digest(digest: str | None) -> str:
    """sha256:HEX as its first 12 hex digits, an image's digest after the image's last path
    part; anything else as it is."""
    if not digest:
        return "-"
    name, _, rest = digest.rpartition("@")
    algorithm, colon, hex_digits = rest.partition(":")
    if not colon or algorithm != "sha256":
        return digest
    short = f"sha256:{hex_digits[:12]}"
    return f"{name.rsplit('/', 1)[-1]}@{short}" if name else short


def ended(entry: Mapping[str, Any], stable: str | None) -> str:
    """Why a revision in history stopped being stable, and who made it so."""
    if entry.get("revision") == stable:
        return "(stable)"
    reason = entry.get("endReason")
    if not reason:
        return "-"
    by = entry.get("endedBy")
    return f"{reason}" + (f" by {by}" if by else "") + f" at {entry.get('endedAt', '?')}"


_HISTORY_COLUMNS = (
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
)


def format_history(md: Mapping[str, Any], wide: bool = False) -> str:
    """Every revision that served as stable: what it was (version, uri, the model's and the
    server image's digests), when and by whom it was promoted, and why it ended. `wide`: the
    digests in full."""
    stable = ((md.get("status") or {}).get("stable") or {}).get("revision")
    digest = (lambda d: d or "-") if wide else short_digest
    rows = [list(_HISTORY_COLUMNS)]
    for number, entry in history_rows(md):
        rows.append(
            [
                str(number),
                entry.get("revision", ""),
                entry.get("version", "") or "-",
                entry.get("promotedAt", "") or "-",
                ", ".join(entry.get("approvedBy") or []) or entry.get("promotedBy", "") or "-",
                entry.get("promotion", "") or "-",
                digest(entry.get("modelDigest")),
                digest(entry.get("imageDigest")),
                ended(entry, stable),
                entry.get("uri", ""),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HISTORY_COLUMNS) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    )


def format_status(md: Mapping[str, Any]) -> str:
    """A summary a person can read at a glance."""
    meta, spec, status = md["metadata"], md.get("spec") or {}, md.get("status") or {}
    steps = (spec.get("rollout") or {}).get("steps") or []
    out = [
        f"Name:      {meta['namespace']}/{meta['name']}",
        f"Phase:     {status.get('phase', 'Pending')}"
        + (
            ""
            if status.get("observedGeneration") == meta.get("generation")
            else "  (the operator has not seen the latest spec yet)"
        ),
        f"Ready:     {status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        f"URL:       {status.get('url', '-')}",
    ]
    stable = status.get("stable")
    if stable:
        out.append(
            f"Stable:    {stable.get('version', '')} (revision {stable.get('revision')}, "
            f"{stable.get('readyReplicas', 0)}/{stable.get('replicas', 0)} ready)"
        )
    canary = status.get("canary")
    if canary:
        # a status written by Slipway 0.1 (booleans, no state) reads the same
        parsed = CanaryStatus.model_validate(canary)
        out.append(
            f"Canary:    {parsed.version} (revision {parsed.revision}, "
            f"{parsed.ready_replicas}/{parsed.replicas} ready), "
            f"weight {parsed.weight}%, step {parsed.step}/{len(steps)}, {parsed.state.value}"
        )
        if parsed.reason is not None:
            out.append(f"           {parsed.reason.value}: {parsed.message}")
        # who promoted, paused or aborted it (an aborted canary never enters history)
        for taken in parsed.actions[-5:]:
            step = "" if taken.step is None else f" (step {taken.step})"
            out.append(f"  {taken.action:<12} by {describe_actor(taken.by)} at {taken.at}{step}")
    conditions = status.get("conditions") or []
    if conditions:
        out.append("Conditions:")
        for cond in conditions:
            out.append(
                f"  {cond['type']:<12} {cond['status']:<6} {cond.get('reason', '')}"
                + (f": {cond['message']}" if cond.get("message") else "")
            )
    measurements = ((status.get("analysis") or {}).get("measurements")) or []
    if measurements:
        out.append("Measurements (newest last):")
        for m in measurements[-5:]:
            bounds = " ".join(f"{k} {m[k]}" for k in _THRESHOLDS if m.get(k) is not None)
            out.append(
                f"  {m.get('at', '')}  {m['metric']:<20} {m.get('value')!s:<12} {bounds:<16} "
                f"{m['verdict']}  {m.get('message', '')}"
            )
    return "\n".join(out)


_THRESHOLDS = ("min", "max", "maxRatioToStable", "maxIncreaseOverStable")


def undo_ops(md: Mapping[str, Any], to_revision: int | None) -> tuple[list[dict[str, Any]], str]:
    """JSON patch that puts a previous revision's serving spec back, and a line saying which."""
    rows = history_rows(md)
    stable = ((md.get("status") or {}).get("stable") or {}).get("revision")
    if to_revision is None:
        older = [(n, e) for n, e in rows if e.get("revision") != stable]
        if not older:
            raise PluginError("no previous revision to undo to (see `kubectl slipway history`)")
        number, entry = older[0]
    else:
        match = [(n, e) for n, e in rows if n == to_revision]
        if not match:
            raise PluginError(
                f"no revision number {to_revision}; numbers: " + ", ".join(str(n) for n, _ in rows)
            )
        number, entry = match[0]
    template = entry.get("template")
    if not template:
        raise PluginError(f"revision {number} has no recorded serving spec to go back to")
    ops = [
        {"op": "add", "path": f"/spec/{field}", "value": template[field]}
        for field in SERVING_FIELDS
        if field in template
    ]
    # says it is an undo (the `undo` verb, and who undid it in history), in the same write
    if (md.get("metadata") or {}).get("annotations"):
        key = UNDO_TO.replace("~", "~0").replace("/", "~1")
        ops.append(
            {"op": "add", "path": f"/metadata/annotations/{key}", "value": entry["revision"]}
        )
    else:
        ops.append(
            {"op": "add", "path": "/metadata/annotations", "value": {UNDO_TO: entry["revision"]}}
        )
    return (
        ops,
        f"rolling back to revision {number} ({entry.get('revision')}, {entry.get('version')})",
    )


# how long an action waits for one asked before it to be taken by the operator
PENDING_WAIT_SECONDS = 30.0


class ActionClient(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch(self, namespace: str, name: str, body: Any, content_type: str = ...) -> None: ...


def request_action(
    client: ActionClient,
    namespace: str,
    name: str,
    action: str,
    wait: float = PENDING_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Write the action annotation once no other action waits for the operator, on the object as
    read (its resourceVersion): two people promoting at once are two approvals, taken one after
    the other, never one lost under the other."""
    deadline = clock() + wait
    told = False
    while True:
        md = client.get(namespace, name)  # a clear "not found" before writing
        meta = md.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        pending = annotations.get(ACTION_ANNOTATION)
        if pending is None:
            body = {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "annotations": {ACTION_ANNOTATION: action},
                }
            }
            try:
                client.patch(namespace, name, body)
                return
            except Conflict:
                pass  # written meanwhile: read it again
        else:
            by = annotations.get(ACTION_BY)
            waiting = f"{pending!r}" + (f" (asked by {by})" if by else "")
            if clock() >= deadline:
                raise PluginError(
                    f"the action {waiting} has waited {wait:g}s for Slipway to take it: is the "
                    "operator running? (kubectl slipway status)"
                )
            if not told:
                print(f"waiting for Slipway to take the action {waiting} first", file=sys.stderr)
                told = True
        sleep(0.25)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        kube = Client(args.kubeconfig, args.context, args.as_user, args.as_group)
        namespace = args.namespace or kube.default_namespace
        if args.command in ("status", "history", "undo"):
            md = kube.get(namespace, args.name)
            if args.command == "status":
                print(format_status(md))
            elif args.command == "history":
                print(format_history(md, wide=args.wide))
            else:
                ops, said = undo_ops(md, args.to_revision)
                kube.patch(namespace, args.name, ops, "application/json-patch+json")
                print(f"modeldeployment/{args.name}: {said}")
            return 0
        action = "promote-full" if args.command == "promote" and args.full else args.command
        request_action(kube, namespace, args.name, action)
        print(f"modeldeployment/{args.name}: {action} requested")
        return 0
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
