"""`slipway` (run the operator, print the CRD, fetch a model, evaluate a canary) and
`kubectl-slipway` (the plugin)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from slipway import DEFAULT_OPERATOR_IMAGE, __version__


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the operator (kopf underneath)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument(
        "--metrics-port", type=int, default=8080, help="Prometheus metrics port (0: off)"
    )
    run.add_argument("--metrics-address", default="0.0.0.0", help="address the metrics bind to")
    run.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz",
    )
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    run.add_argument("--log-format", choices=["text", "json"], default="text")
    peering = run.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering", metavar="NAME", default=None, help="kopf peering object (for HA replicas)"
    )
    peering.add_argument(
        "--standalone", action="store_true", help="no peering (a single replica); the default"
    )
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="kopf peering priority (default with --peering: lower the later the operator "
        "starts, so a newer replica stands by behind the active one)",
    )
    run.add_argument(
        "--peering-lifetime",
        type=_lifetime,
        default=60,
        metavar="SECONDS",
        help="how long a peer's keep-alive lasts (kopf's, default 60; kopf writes one every "
        "5-10 s less): an operator first acts that long after it began to see the peering "
        "object, and a standby that has seen it that long replaces a dead active peer within it",
    )
    run.add_argument(
        "--operator-image",
        default=os.environ.get("SLIPWAY_OPERATOR_IMAGE", DEFAULT_OPERATOR_IMAGE),
        help="image of the model-fetching init containers (Slipway's own image)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=16,
        help="reconciles running at once (default 16: each mostly waits on the API server, and "
        "fewer leave it idle while ModelDeployments wait)",
    )
    notify = run.add_argument_group(
        "notifications",
        "rollout notifications, sent to the channels a ModelDeployment names in its "
        "serving.slipway.dev/notify annotation",
    )
    notify.add_argument(
        "--notify-channel",
        action="append",
        default=[],
        metavar="NAME=KIND",
        help="a channel (repeatable); KIND: webhook (JSON) or slack; its URL is read from "
        "the environment variable SLIPWAY_NOTIFY_URL_<NAME> (upper case, '-' as '_')",
    )
    notify.add_argument(
        "--notify-timeout", type=float, default=5.0, help="seconds one POST may take"
    )
    notify.add_argument(
        "--notify-retries", type=int, default=3, help="retries of a failed POST (with backoff)"
    )
    notify.add_argument(
        "--notify-queue-size",
        type=int,
        default=100,
        help="messages waiting to be sent; more are dropped (and counted)",
    )
    run.add_argument(
        "--pod-monitors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create a prometheus-operator PodMonitor per ModelDeployment when the cluster has "
        "the PodMonitor CRD (--no-pod-monitors: never touch PodMonitors)",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=float(os.environ.get("SLIPWAY_RESYNC_SECONDS", "0")),
        help="list every watched object afresh that often (default 0: never; the watches resume "
        "where they were, and list afresh only when the API server no longer has their place)",
    )
    run.add_argument(
        "--kubeconfig", default=None, help="kubeconfig (default: in-cluster, then KUBECONFIG)"
    )


def _lifetime(text: str) -> int:
    seconds = int(text)
    if seconds < 5:
        raise argparse.ArgumentTypeError(
            "at least 5 seconds (kopf writes a keep-alive each second)"
        )
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slipway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"slipway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    sub.add_parser("crd", help="print the ModelDeployment CRD (generated from the API models)")
    fetch = sub.add_parser("fetch", help="download a model into a directory (init containers)")
    from slipway.storage import add_fetch_arguments

    add_fetch_arguments(fetch)
    evaluate = sub.add_parser(
        "evaluate", help="send an evaluation set to the canary and to stable (evaluation Jobs)"
    )
    from slipway.evaluation.command import add_evaluate_arguments

    add_evaluate_arguments(evaluate)
    args = parser.parse_args(argv)
    if args.command == "crd":
        from slipway.crd import crd_yaml

        sys.stdout.write(crd_yaml())
        return 0
    if args.command == "fetch":
        from slipway.storage import run_fetch

        return run_fetch(args)
    if args.command == "evaluate":
        from slipway.evaluation.command import run_evaluate

        return run_evaluate(args)
    return run_operator(args)


def _load_api_client(kubeconfig: str | None, pool_size: int) -> Any:
    """The reconcile workers' client, with `pool_size` pooled connections: beyond its pool,
    urllib3 opens a connection for a request and throws it away after it (a TLS handshake for
    each, on both sides; the client's default pool is 5 per CPU, fewer than the workers)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def run_operator(args: argparse.Namespace) -> int:
    if args.kubeconfig:
        # before kopf (and so the kubernetes client) is imported: it reads KUBECONFIG on import
        os.environ["KUBECONFIG"] = args.kubeconfig
    import kopf

    from slipway import handlers, metrics, notifier

    kopf.configure(
        debug=args.log_level == "debug",
        verbose=args.log_level == "debug",
        quiet=args.log_level in ("warning", "error"),
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger().setLevel(args.log_level.upper())
    if args.log_level != "debug":
        # kopf says "Handler ... succeeded" for every watch event; our own log says what matters
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        sender = notifier.from_environment(
            args.notify_channel,
            queue_size=args.notify_queue_size,
            timeout=args.notify_timeout,
            retries=args.notify_retries,
        )
    except notifier.ConfigError as exc:
        sys.stderr.write(f"slipway run: {exc}\n")
        return 2
    metrics.watch_gc()
    if args.metrics_port:
        metrics.start_metrics_server(args.metrics_port, args.metrics_address)
    if sender is not None:
        sender.start()
        notifier.configure(sender)
        logging.getLogger(__name__).info(
            "notification channels: %s",
            ", ".join(f"{c.name} ({c.kind})" for c in sender.channels.values()),
        )
    # each worker holds a connection while it reconciles; the analysis and registry threads and
    # the status and Event writes of other threads share a few more
    api_client = _load_api_client(args.kubeconfig, pool_size=args.workers + 8)
    from slipway.peering import own_identity, seniority_priority

    identity = own_identity()
    priority = args.priority
    if args.peering is not None and priority is None:
        # replicas of one Deployment cannot be given priorities by hand: the older one wins
        priority = seniority_priority()
    if args.peering is not None:
        logging.getLogger(__name__).info(
            "peering %s as %s with priority %d", args.peering, identity, priority
        )
    handlers.setup(
        handlers.Options(
            api_client=api_client,
            operator_image=args.operator_image,
            workers=args.workers,
            namespaces=tuple(args.namespace),
            resync_seconds=args.resync_seconds,
            peering=args.peering,
            identity=identity,
            priority=priority or 0,
            peering_lifetime=args.peering_lifetime,
            pod_monitors=args.pod_monitors,
        )
    )
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority or 0,
        identity=identity,  # type: ignore[arg-type]
        liveness_endpoint=args.liveness,
    )
    if sender is not None:
        sender.stop()  # sends what is queued, for a few seconds at most
    return 0


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    from slipway.plugin import main as plugin_main

    return plugin_main(argv)
