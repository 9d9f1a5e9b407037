"""`make bench`: the operator against the physical floor, on the local control plane.

    python -m bench.run --n 200 [--skip-floor] [--rollout-n 50] [--idle-seconds 60]

1. The floor: a plain client server-side applies exactly the children the operator would create
   for N ModelDeployments (same builders, same manifests), until every Deployment is available.
2. Convergence: the operator runs as in production (`python -m slipway run`, its own process);
   N ModelDeployments are created at once; time until every one is Ready at its generation.
3. Writes: the operator's own `slipway_api_writes_total` per ModelDeployment, kube-apiserver's
   `apiserver_request_total` deltas beside it, and the operator's writes while idle.
4. Rollouts: a version change with a zero-length pause, and a crash-looping canary until
   RolledBack, for one ModelDeployment and for --rollout-n at once.

Results go to bench/results/<date>.json and .md (`<date>-n<N>` for any N but 200); a second run
on the same day overwrites them. The cluster is the one hack/cluster.sh runs
($SLIPWAY_CLUSTER_DIR, default .cluster/).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import importlib.metadata
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from bench import report
from bench.cluster import (
    Api,
    CpuMeter,
    OperatorProcess,
    Tracker,
    add_kwok_nodes,
    apiserver_requests,
    cluster_dir,
    create_namespace,
    delete_namespaces,
    install_crd,
    kubernetes_version,
    leftover_namespaces,
    remove_bench_nodes,
)
from slipway import DEFAULT_OPERATOR_IMAGE, GROUP, PLURAL, VERSION, __version__
from slipway.api import ModelDeployment, ServingSpec
from slipway.kube import ApiError, Kube
from slipway.reconcile import pods_failing, ready_pods
from slipway.resources import (
    deployment_name,
    desired_deployment,
    desired_service,
    pins_for,
    revision_of,
)
from slipway.resources.metadata import MODEL_DEPLOYMENT_LABEL, REVISION_LABEL

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FAULT_LABEL = "slipway.test/fault"
# the resources a ModelDeployment's reconcile touches, for the apiserver's view of the writes
MD_RESOURCES = ("modeldeployments", "deployments", "services", "events", "replicasets", "pods")
NAMESPACE_GONE_SECONDS = 300.0
DELETE_THREADS = 64
# the versions of the paired rollbacks (the operator's own batches use 1 to 5)
PAIRED_SERIAL = 100
# --profile: each operator half of the paired rollbacks sampled for its first seconds
PAIRED_PROFILE_SECONDS = 3
PAIRED_PROFILE_RATE = 250


def md_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def md_names(n: int) -> list[str]:
    return [f"bench-{i:04d}" for i in range(n)]


def model_version(serial: int) -> dict[str, str]:
    version = f"{serial}.0.0"
    return {"version": version, "uri": f"s3://models/bench/{version}"}


def bench_md(name: str, namespace: str) -> dict[str, Any]:
    """The ModelDeployment every run creates: sklearn, 2 replicas, a canary with a 0s pause."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {**model_version(1), "format": "sklearn"},
            "replicas": 2,
            "rollout": {
                "strategy": "Canary",
                "steps": [{"setWeight": 50}, {"pause": {"duration": "0s"}}],
                "scaleDownDelaySeconds": 0,
            },
        },
    }


def floor_children(name: str, namespace: str) -> list[dict[str, Any]]:
    """The Deployment and the two Services the operator creates for `bench_md(name)`.

    Built by the operator's own builders; without owner references, since no ModelDeployment
    exists to own them (the garbage collector would delete them).
    """
    spec = FloorSpec.of(name, namespace, serial=1)
    return [
        spec.deployment(spec, "stable", spec.md.spec.replicas),
        spec.service(None, None),
        spec.service("stable", spec),
    ]


@dataclass(frozen=True)
class FloorSpec:
    """A ModelDeployment of the bench at one version, as the floor's builders need it."""

    md: ModelDeployment
    serving: ServingSpec
    revision: str

    @classmethod
    def of(cls, name: str, namespace: str, serial: int, crashing: bool = False) -> FloorSpec:
        body = bench_md(name, namespace)
        body["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
        body["spec"]["model"].update(model_version(serial))
        if crashing:
            body["spec"]["template"] = {"labels": {FAULT_LABEL: "crash"}}
        md = ModelDeployment.from_body(body)
        serving = md.spec.serving()
        return cls(md=md, serving=serving, revision=revision_of(serving))

    def deployment(self, of: FloorSpec, track: str | None, replicas: int) -> dict[str, Any]:
        """The Deployment of revision `of` (this spec's or an older one), as the operator
        applies it while this spec is the ModelDeployment's."""
        pins = pins_for(of.serving, self.md.name, DEFAULT_OPERATOR_IMAGE)
        manifest = desired_deployment(self.md, of.serving, of.revision, track, replicas, pins)
        manifest["metadata"].pop("ownerReferences", None)
        return manifest

    def service(
        self, track: str | None, of: FloorSpec | None, serving: FloorSpec | None = None
    ) -> dict[str, Any]:
        """Service <name> (track None) or <name>-<track> on the pods of revision `of` (None: on
        every serving pod), labelled with the model it serves (`serving`'s, or `of`'s)."""
        port = self.md.spec.runtime.port
        model = (serving or of or self).serving.model.model_dump(mode="json", by_alias=True)
        manifest = desired_service(self.md, track, of.revision if of else None, port, model)
        manifest["metadata"].pop("ownerReferences", None)
        return manifest

    @property
    def deployment_name(self) -> str:
        return deployment_name(self.md.name, self.revision)


def ready_replicas(deployment: Mapping[str, Any] | None) -> int:
    return int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)


def is_ready_at_generation(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    return bool(
        status.get("phase") == "Ready"
        and status.get("observedGeneration") == obj["metadata"].get("generation")
    )


def is_promoted(version: str) -> Callable[[Mapping[str, Any]], bool]:
    def check(obj: Mapping[str, Any]) -> bool:
        stable = (obj.get("status") or {}).get("stable") or {}
        return stable.get("version") == version and is_ready_at_generation(obj)

    return check


def is_rolled_back(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    return bool(
        status.get("phase") == "RolledBack"
        and status.get("observedGeneration") == obj["metadata"].get("generation")
    )


def generation_of(obj: Mapping[str, Any] | None) -> int:
    return int(((obj or {}).get("metadata") or {}).get("generation") or 0)


def rolled_back_after(generations: Mapping[str, int]) -> Callable[[Mapping[str, Any]], bool]:
    """Rolled back at a generation later than each one's in `generations` (by name)."""

    def check(obj: Mapping[str, Any]) -> bool:
        name = obj["metadata"]["name"]
        return is_rolled_back(obj) and generation_of(obj) > generations.get(name, 0)

    return check


def revision_pods(found: Mapping[str, dict[str, Any]], of: FloorSpec) -> list[dict[str, Any]]:
    """The pods, among `found`, of revision `of` of its ModelDeployment."""
    return [
        pod
        for pod in found.values()
        if (labels := pod["metadata"].get("labels") or {}).get(REVISION_LABEL) == of.revision
        and labels.get(MODEL_DEPLOYMENT_LABEL) == of.md.name
    ]


def all_pods_ready(found: Mapping[str, dict[str, Any]]) -> bool:
    """Every pod among `found` Ready and none on its way out (as the operator counts them)."""
    return ready_pods(list(found.values()), {}) == len(found)


def ready_of(found: Mapping[str, dict[str, Any]], of: FloorSpec) -> int:
    """Ready pods of revision `of`, counted as the operator counts them (not those on their way
    out)."""
    return ready_pods(revision_pods(found, of), {})


def is_available(obj: Mapping[str, Any]) -> bool:
    wanted = int((obj.get("spec") or {}).get("replicas", 1))
    return int((obj.get("status") or {}).get("readyReplicas") or 0) >= wanted


def log(message: str) -> None:
    print(f"[bench {dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class Profiler:
    """py-spy (the `profile` extra) sampling the operator while it converges."""

    proc: subprocess.Popen[bytes]
    out: Path

    @classmethod
    def start(
        cls, pid: int, out: Path | None, seconds: float, rate: int = 50, gil: bool = False
    ) -> Profiler | None:
        """Sample `pid` for `seconds` (or until stopped) into `out`; with `gil`, only the thread
        holding the interpreter at each sample, so that the samples' count over `rate` times
        `seconds` is the share of the time the interpreter was busy."""
        if out is None:
            return None
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if spy is None:
            raise SystemExit("--profile needs py-spy: pip install -e '.[profile]'")
        args = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
                "--format", "raw", "--duration", str(int(seconds)), "-o", str(out)]  # fmt: skip
        if gil:
            args.append("--gil")
        return cls(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)

    def stop(self) -> dict[str, Any] | None:
        """Stop sampling (py-spy writes what it has on SIGINT); the top of the profile."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if not self.out.exists():
            said = self.proc.stderr.read()[-500:] if self.proc.stderr is not None else b""
            log(f"py-spy wrote no profile: {said!r}")
            return None
        top = report.profile_top(self.out.read_text())
        self.out.with_suffix(".md").write_text(report.profile_text(top))
        return top


@dataclass
class Bench:
    """The bench's own client (a pool of `threads`) and the phases it times."""

    api: Api
    kube: Kube
    threads: int
    timeout: float
    meter: CpuMeter
    profile: Path | None = None  # where py-spy writes the operator's profile of convergence

    def in_parallel(self, fn: Callable[[str], Any], names: Sequence[str]) -> dict[str, float]:
        """Run fn(name) for every name on the client pool; when each was sent."""
        started: dict[str, float] = {}

        def one(name: str) -> None:
            started[name] = time.monotonic()
            fn(name)

        with ThreadPoolExecutor(self.threads, thread_name_prefix="client") as pool:
            for _ in pool.map(one, names):
                pass
        return started

    def delete_namespace(self, namespace: str) -> list[str]:
        """Delete a namespace and wait (up to a phase's timeout) until it is gone; [namespace]
        if it is still there. Its Services go first, deleted one by one, 64 at a time: left
        to the namespace controller, the collection delete of 10,000 Services timed out again and
        again on a busy API server, and took more than half an hour, beside the next phase; one
        by one from 16 threads, 4 a second; from 48, 10 a second."""
        path = f"/api/v1/namespaces/{namespace}/services"

        def delete(name: str) -> None:
            with contextlib.suppress(ApiError):  # gone already, or the namespace's own delete
                self.api.request("DELETE", f"{path}/{name}")

        with contextlib.suppress(ApiError):
            found = self.api.request("GET", path).get("items", [])
            # a Service's delete waits seconds on a busy API server without using its CPU: more
            # at once than the client pool's threads
            with ThreadPoolExecutor(DELETE_THREADS, thread_name_prefix="delete") as pool:
                for _ in pool.map(delete, [item["metadata"]["name"] for item in found]):
                    pass
        return delete_namespaces(self.api, [namespace], max(NAMESPACE_GONE_SECONDS, self.timeout))

    # -- 1. the floor -------------------------------------------------------------------------

    def floor(self, namespace: str, n: int, rollout_n: int = 0) -> dict[str, Any]:
        create_namespace(self.api, namespace)
        children = {name: floor_children(name, namespace) for name in md_names(n)}
        deployment_of = {name: c[0]["metadata"]["name"] for name, c in children.items()}
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        cpu: dict[str, Any] = {}

        def apply_children(name: str) -> None:
            for manifest in children[name]:
                self.kube.apply(manifest)

        with Tracker(self.api, path) as tracker:
            with self.meter.phase(cpu):
                tracker.expect(deployment_of.values(), is_available)
                t0 = time.monotonic()
                started = self.in_parallel(apply_children, list(children))
                applied = time.monotonic() - t0
                seen = tracker.wait(self.timeout)
            done = max(seen.values())
            per_object = [seen[deployment_of[name]] - started[name] for name in children]
            from_start = [seen[deployment_of[name]] - t0 for name in children]
            figures = {
                "floor_seconds": round(done - t0, 3),
                "floor_apply_seconds": round(applied, 3),
                "floor_time_to_ready_seconds": report.summarize(per_object),
                "floor_time_to_ready_from_start_seconds": report.summarize(from_start),
                "floor_writes_per_object": len(next(iter(children.values()))),
                "floor_cpu": cpu,
            }
            if rollout_n > 0:
                figures.update(self.floor_rollouts(tracker, namespace, md_names(n), rollout_n))
        return figures

    def floor_rollouts(
        self, deployments: Tracker, namespace: str, names: Sequence[str], batch: int
    ) -> dict[str, Any]:
        """The rollouts and rollbacks of `rollouts`, by a plain client: the child writes the
        operator makes for them (its log at debug level lists them), in the same order, each as
        soon as what the operator waits for is there (the canary's pods Ready; a canary pod
        failing), with every ModelDeployment of a batch at once."""
        one, many = _groups(names, batch)
        # the pods of the ModelDeployments rolled out (their stable's and their canaries')
        rolled = ",".join(sorted({*one, *many}))
        pods = Tracker(
            self.api,
            f"/api/v1/namespaces/{namespace}/pods",
            f"{MODEL_DEPLOYMENT_LABEL} in ({rolled})",
        )
        stable: dict[str, int] = dict.fromkeys(names, 1)
        figures: dict[str, Any] = {}
        with pods:
            for key, serial, crashing in (
                ("floor_rollout_seconds", 2, False),
                ("floor_rollback_seconds", 4, True),
            ):
                log(f"{key}: 1, then {len(many)} at once")

                def change(name: str, serial: int = serial, crashing: bool = crashing) -> None:
                    old = FloorSpec.of(name, namespace, stable[name])
                    new = FloorSpec.of(name, namespace, serial, crashing)
                    if crashing:
                        self.floor_rollback(pods, new)
                    else:
                        self.floor_rollout(deployments, pods, old, new)
                        stable[name] = serial

                def change_batch(name: str, serial: int = serial) -> None:
                    change(name, serial + 1)

                single = self.timed(change, one)[0]
                spread = self.timed(change_batch, many)
                figures[key] = {
                    "single": round(single, 3),
                    "n": len(many),
                    "batch": report.summarize(spread),
                }
        return figures

    def timed(self, fn: Callable[[str], Any], names: Sequence[str]) -> list[float]:
        """Run fn(name) for every name at once; seconds from the start until each returned."""
        t0 = time.monotonic()
        done: dict[str, float] = {}

        def one(name: str) -> None:
            fn(name)
            done[name] = time.monotonic() - t0

        with ThreadPoolExecutor(max(1, len(names)), thread_name_prefix="floor") as pool:
            for _ in pool.map(one, names):
                pass
        return [done[name] for name in names]

    def floor_rollout(
        self, deployments: Tracker, pods: Tracker, old: FloorSpec, new: FloorSpec
    ) -> None:
        """A version change through setWeight 50 and a 0 s pause, promoted (2 replicas).

        The operator's step is at its weight once the canary has a Ready pod and the stable is
        down to one (its Ready pods, as `ready_pods` counts them: a pod being deleted is not);
        only then does its 0 s pause end and the canary scale to full size. Argo Rollouts' basic
        canary waits for the same (its ReplicaSets at their desired counts)."""
        canary = new.deployment_name
        self._start_canary(new)
        deployments.wait_for(lambda d: ready_replicas(d.get(canary)) >= 1, self.timeout)
        self.kube.apply(new.deployment(old, "stable", 1))
        pods.wait_for(lambda found: ready_of(found, old) <= 1, self.timeout)
        self.kube.apply(new.deployment(new, "canary", 2))
        deployments.wait_for(lambda d: ready_replicas(d.get(canary)) >= 2, self.timeout)
        for manifest in (
            new.deployment(new, "stable", 2),
            new.deployment(old, None, 0),
            new.service(None, None, new),
            new.service("stable", new),
        ):
            self.kube.apply(manifest)
        self.kube.delete("v1", "Service", new.md.namespace, f"{new.md.name}-canary")

    def _start_canary(self, new: FloorSpec, replaced: FloorSpec | None = None) -> None:
        """What the operator writes when a canary starts: its Deployment with one pod and
        <name>-canary on it (<name>, on every serving pod, and <name>-stable, on the old
        revision, say the old version until the promotion: they stay as they are). A canary
        rolled back before (`replaced`) loses its Deployment in between, as the operator's."""
        self.kube.apply(new.deployment(new, "canary", 1))
        if replaced is not None:
            self.kube.delete("apps/v1", "Deployment", new.md.namespace, replaced.deployment_name)
        self.kube.apply(new.service("canary", new))

    def floor_rollback(
        self, pods: Tracker, new: FloorSpec, replaced: FloorSpec | None = None
    ) -> None:
        """A version whose pods crash: the canary, until a pod of it fails, then scaled to 0."""
        self._start_canary(new, replaced)

        def failing(found: Mapping[str, dict[str, Any]]) -> bool:
            return pods_failing(revision_pods(found, new))[0]

        pods.wait_for(failing, self.timeout)
        self.kube.apply(new.deployment(new, "canary", 0))

    def paired_rollbacks(
        self,
        tracker: Tracker,
        namespace: str,
        floor_namespace: str,
        names: Sequence[str],
        batch: int,
        rounds: int,
        operator: OperatorProcess | None = None,
    ) -> dict[str, Any]:
        """Rollbacks of `batch` at once, the operator's and the floor's by turns on the same
        cluster, `rounds` times (who goes first alternates), after the operator's own batches;
        with `operator`, its work in each side's halves (it watches the floor's objects too).

        The floor's phase runs before the operator's, on a cluster holding nothing else; here
        both run on the cluster as the operator's phase left it, the operator running, so what
        the order and the cluster's state do to either side falls on both. The floor's objects
        are the batch's in a namespace of their own (their stable Ready, and one rollback not
        timed, so that each timed one, like the operator's, replaces a rolled-back canary: a
        Deployment deleted, <name>-canary changed, not created). Between halves, every pod of
        the side just timed is Ready (the crashing canaries' pods gone)."""
        many = _groups(names, batch)[1]
        selector = f"{MODEL_DEPLOYMENT_LABEL} in ({','.join(sorted(many))})"
        floor_pods = Tracker(self.api, f"/api/v1/namespaces/{floor_namespace}/pods", selector)
        operator_pods = Tracker(self.api, f"/api/v1/namespaces/{namespace}/pods", selector)
        canary: dict[str, FloorSpec] = {}

        def floor_once(name: str, serial: int) -> None:
            new = FloorSpec.of(name, floor_namespace, serial, crashing=True)
            self.floor_rollback(floor_pods, new, canary.get(name))
            canary[name] = new

        def operator_round(serial: int) -> list[float]:
            patch = {
                "model": model_version(serial),
                "template": {"labels": {FAULT_LABEL: "crash"}},
            }
            # each is rolled back already (by the batch, by the round before): its next
            # generation's rollback is the one timed
            before = {name: generation_of(tracker.latest(name)) for name in many}
            return self.change(tracker, namespace, many, patch, rolled_back_after(before))

        log(f"paired rollbacks: {len(many)} floor objects in {floor_namespace}")
        create_namespace(self.api, floor_namespace)
        path = f"/apis/apps/v1/namespaces/{floor_namespace}/deployments"
        with Tracker(self.api, path) as deployments, floor_pods, operator_pods:
            children = {name: floor_children(name, floor_namespace) for name in many}
            deployments.expect([c[0]["metadata"]["name"] for c in children.values()], is_available)
            self.in_parallel(lambda name: [self.kube.apply(m) for m in children[name]], many)
            deployments.wait(self.timeout)
            self.timed(lambda name: floor_once(name, PAIRED_SERIAL), many)  # not timed: see above
            floor_pods.wait_for(all_pods_ready, self.timeout)
            timed: list[dict[str, Any]] = []
            work: dict[str, dict[str, float]] = {"operator": {}, "floor": {}}
            profiles: list[dict[str, Any]] = []
            # the operator's queue waits by lane and its reconciles' durations in its halves
            waited: dict[str, dict[float, float]] = {}
            for r in range(rounds):
                serial = PAIRED_SERIAL + 1 + r
                halves: dict[str, list[float]] = {}
                order = ("floor", "operator") if r % 2 == 0 else ("operator", "floor")
                log(f"paired rollbacks, round {r + 1} of {rounds}: {order[0]} first")
                for side in order:
                    before = operator.work() if operator is not None else {}
                    if side == "floor":
                        halves[side] = self.timed(
                            functools.partial(floor_once, serial=serial), many
                        )
                        floor_pods.wait_for(all_pods_ready, self.timeout)
                    else:
                        timings = operator.timings() if operator is not None else {}
                        spy = self._spy_on_round(operator, r)
                        halves[side] = operator_round(serial)
                        top = spy.stop() if spy is not None else None
                        if top is not None:
                            held = report.interpreter_held(
                                top, PAIRED_PROFILE_RATE, PAIRED_PROFILE_SECONDS
                            )
                            profiles.append({"round": r + 1, "interpreter_held": held})
                        operator_pods.wait_for(all_pods_ready, self.timeout)
                        if operator is not None:
                            report.add_grown(waited, timings, operator.timings())
                    if operator is not None:
                        for k, v in operator.work().items():
                            work[side][k] = work[side].get(k, 0.0) + v - before.get(k, 0.0)
                timed.append(
                    {
                        "first": order[0],
                        "operator": report.summarize(halves["operator"]),
                        "floor": report.summarize(halves["floor"]),
                    }
                )
        summary = report.paired_summary(timed, len(many))
        if profiles:
            summary["profiles"] = profiles
        if waited:
            summary["operator_waits"] = report.wait_summary({}, waited)
        if operator is not None and rounds:
            summary["work"] = {
                side: report.work_done({}, totals, len(many), rounds)
                for side, totals in work.items()
            }
        return summary

    def _spy_on_round(self, operator: OperatorProcess | None, r: int) -> Profiler | None:
        """With --profile: py-spy on the first seconds of the operator's half of round `r`, where
        its first status writes queue behind the batch's patches; only the thread holding the
        interpreter at each sample (`--gil`), so the samples say how busy it was and with what."""
        if self.profile is None or operator is None:
            return None
        out = self.profile.with_name(self.profile.stem + f"-paired-r{r + 1}.raw")
        return Profiler.start(
            operator.pid, out, PAIRED_PROFILE_SECONDS, rate=PAIRED_PROFILE_RATE, gil=True
        )

    # -- 2. convergence -----------------------------------------------------------------------

    def converge(
        self, tracker: Tracker, operator: OperatorProcess, namespace: str, names: Sequence[str]
    ) -> dict[str, Any]:
        requests_before = apiserver_requests(self.api)
        writes_before = operator.writes()
        reconciles_before = operator.reconciles()
        waits_before = operator.queue_waits()
        gc_before = operator.gc_pauses()
        cpu_before = operator.cpu_seconds()
        cpu: dict[str, Any] = {}
        profiler = Profiler.start(operator.pid, self.profile, self.timeout)
        with self.meter.phase(cpu):
            tracker.expect(names, is_ready_at_generation)
            t0 = time.monotonic()
            started = self.in_parallel(
                lambda name: self.api.request(
                    "POST", md_path(namespace), body=bench_md(name, namespace)
                ),
                names,
            )
            created = time.monotonic() - t0
            seen = tracker.wait(self.timeout)
        done = max(seen.values())
        profile = profiler.stop() if profiler is not None else None
        log(f"all {len(names)} Ready after {done - t0:.1f}s; waiting for the operator to settle")
        settled = self.settle(operator)
        waits = report.wait_summary(waits_before, operator.queue_waits())
        gc_pauses = report.gc_summary(gc_before, operator.gc_pauses())
        writes = report.delta(writes_before, operator.writes())
        requests = report.delta(requests_before, apiserver_requests(self.api))
        per_object = [seen[name] - started[name] for name in names]
        total_writes = sum(writes.values())
        status = operator.proc_status()
        # the apiserver's count of what only the operator writes: ModelDeployment status,
        # and Deployments and Services (the bench's own ModelDeployment creates subtracted)
        operator_only = sum(
            value
            for key, value in report.writes_only(requests).items()
            if (key.resource == "modeldeployments" and key.subresource == "status")
            or (key.resource in ("deployments", "services") and not key.subresource)
        )
        return {
            "operator_seconds": round(done - t0, 3),
            "create_seconds": round(created, 3),
            "time_to_ready_seconds": report.summarize(per_object),
            "settle_seconds": round(settled, 3),
            "cpu_seconds": round(operator.cpu_seconds() - cpu_before, 2),
            "rss_mb_after_convergence": round(report.rss_mb(status), 1),
            "peak_rss_mb_at_convergence": round(report.peak_rss_mb(status), 1),
            "operator_writes": total_writes,
            "operator_writes_by_verb": writes,
            "writes_per_object": round(total_writes / len(names), 3),
            "writes_per_object_without_events": round(
                (total_writes - writes.get("event", 0.0)) / len(names), 3
            ),
            "reconciles_by_result": report.delta(reconciles_before, operator.reconciles()),
            "queue_wait_seconds": waits,
            "gc_pauses": gc_pauses,
            "profile": profile,
            "apiserver_writes_status_deployments_services_per_object": round(
                operator_only / len(names), 3
            ),
            "apiserver_requests_delta": report.for_resources(requests, MD_RESOURCES),
            "convergence_cpu": cpu,
            "repeated_statuses": report.repeated_statuses(tracker.status_changes()),
        }

    def settle(self, operator: OperatorProcess, quiet: float = 3.0, limit: float = 30.0) -> float:
        """Wait until the operator's writes stop moving for `quiet` seconds; how long it took."""
        t0 = time.monotonic()
        last, since = operator.writes(), time.monotonic()
        while time.monotonic() - t0 < limit:
            time.sleep(0.5)
            now = operator.writes()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return time.monotonic() - t0

    # -- 3. idle ------------------------------------------------------------------------------

    def idle(self, operator: OperatorProcess, seconds: float) -> dict[str, Any]:
        writes_before = operator.writes()
        requests_before = apiserver_requests(self.api)
        time.sleep(seconds)
        writes = report.delta(writes_before, operator.writes())
        requests = report.writes_only(report.delta(requests_before, apiserver_requests(self.api)))
        return {
            "idle_seconds": seconds,
            "idle_writes": sum(writes.values()),
            "idle_writes_by_verb": writes,
            "idle_apiserver_writes": report.for_resources(requests, MD_RESOURCES),
        }

    # -- 4. rollouts --------------------------------------------------------------------------

    def change(
        self,
        tracker: Tracker,
        namespace: str,
        names: Sequence[str],
        patch: dict[str, Any],
        done: Callable[[Mapping[str, Any]], bool],
    ) -> list[float]:
        """Patch every spec at once; seconds from each patch until `done` holds for it."""
        tracker.expect(names, done)
        started = self.in_parallel(
            lambda name: self.kube.patch(
                f"{GROUP}/{VERSION}", "ModelDeployment", namespace, name, {"spec": patch}
            ),
            names,
        )
        seen = tracker.wait(self.timeout)
        return [seen[name] - started[name] for name in names]

    def rollouts(
        self,
        tracker: Tracker,
        namespace: str,
        names: Sequence[str],
        batch: int,
        operator: OperatorProcess | None = None,
    ) -> dict[str, Any]:
        """Promotion through a 0s pause, then a crash-looping canary, for 1 and `batch` MDs;
        with `operator`, its garbage collections during each batch too."""
        one, many = _groups(names, batch)

        def change_version(group: Sequence[str], serial: int, crashing: bool) -> list[float]:
            version = model_version(serial)
            patch: dict[str, Any] = {"model": version}
            if crashing:
                patch["template"] = {"labels": {FAULT_LABEL: "crash"}}
            done = is_rolled_back if crashing else is_promoted(version["version"])
            return self.change(tracker, namespace, group, patch, done)

        figures: dict[str, Any] = {}
        for key, serial, crashing in (("rollout_seconds", 2, False), ("rollback_seconds", 4, True)):
            log(f"{key}: 1, then {len(many)} at once")
            single = change_version(one, serial, crashing)[0]
            gc_before = operator.gc_pauses() if operator is not None else None
            work_before = operator.work() if operator is not None else None
            spread = change_version(many, serial + 1, crashing)
            figures[key] = {
                "single": round(single, 3),
                "n": len(many),
                "batch": report.summarize(spread),
            }
            if operator is not None and gc_before is not None and work_before is not None:
                figures[key]["gc_pauses"] = report.gc_summary(gc_before, operator.gc_pauses())
                figures[key]["work"] = report.work_done(work_before, operator.work(), len(many))
        return figures


def _groups(names: Sequence[str], batch: int) -> tuple[list[str], list[str]]:
    """The one rolled out alone, and the batch (without it when there are enough): each change
    is a new version."""
    one = list(names[:1])
    many = list(names[1 : 1 + batch]) if len(names) > batch else list(names[:batch])
    return one, many


def machine(api: Api) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown",
    )  # fmt: skip
    meminfo = Path("/proc/meminfo").read_text()
    mem_kib = next(
        int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_mb": mem_kib // 1024,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "kubernetes": kubernetes_version(api),
        "slipway": __version__,
        "kopf": importlib.metadata.version("kopf"),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=report.DEFAULT_N, help="ModelDeployments")
    parser.add_argument("--skip-floor", action="store_true", help="no floor, no ratio")
    parser.add_argument(
        "--rollout-n",
        type=int,
        default=50,
        help="ModelDeployments rolled out at once (0: no rollout figures)",
    )
    parser.add_argument(
        "--paired-rounds",
        type=int,
        default=4,
        help="rounds of rollbacks of --rollout-n at once, the operator's and the floor's by "
        "turns on the same cluster (0: none; none with --skip-floor)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=60.0,
        help="idleness after convergence during which writes are counted",
    )
    parser.add_argument(
        "--client-threads",
        type=int,
        default=16,
        help="concurrent requests of the bench's own client",
    )
    parser.add_argument(
        "--operator-workers",
        type=int,
        default=None,
        help="passed to `slipway run --workers` (default: its own default)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds a phase may take (default: 120 + N)"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the operator with py-spy while it converges: <stem>-profile.{raw,md}",
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    return args  # fmt: skip


# a write the API server did not answer in time (or answered "busy") is sent again, as the
# operator's work queue would do it: the floor is not to die of a slow moment of the control plane
FLOOR_ATTEMPTS = 5
BUSY = frozenset({429, 500, 502, 503, 504})


class PatientKube(Kube):
    """The bench's own client: Kube, with a timed-out or refused-as-busy request sent again."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(1, FLOOR_ATTEMPTS + 1):
            try:
                return super()._call(method, path, **kwargs)
            except ApiError as exc:
                if exc.status not in BUSY or attempt == FLOOR_ATTEMPTS:
                    raise
            except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError):
                if attempt == FLOOR_ATTEMPTS:
                    raise
            time.sleep(min(2.0**attempt, 10.0))
        raise AssertionError("unreachable")


def run(args: argparse.Namespace) -> dict[str, Any]:
    where = cluster_dir()
    kubeconfig = where / "kubeconfig"
    if not kubeconfig.exists():
        raise SystemExit(f"no cluster at {where} (run `make cluster-up` or hack/cluster.sh up)")
    api = Api(kubeconfig, pool_size=max(args.client_threads, DELETE_THREADS) + 8)
    profile = None
    if args.profile:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = report.result_stem(dt.date.today(), args.n)
        profile = args.out_dir / f"{stem}-profile.raw"
    bench = Bench(
        api,
        PatientKube(api.client),
        args.client_threads,
        args.timeout or 120.0 + args.n,
        CpuMeter(where),
        profile,
    )
    result: dict[str, Any] = {
        "n": args.n,
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average": _load(),
        "machine": machine(api),
        "operator_workers": args.operator_workers,
        "client_threads": args.client_threads,
    }
    for old in leftover_namespaces(api):
        log(f"deleting a namespace an earlier run left: {old}")
        if bench.delete_namespace(old):
            log(f"{old} still deleting: this run shares the machine with its deletion")
    remove_bench_nodes(api)
    install_crd(api)
    run_id = secrets.token_hex(3)
    # two pods per ModelDeployment, a surge pod or two per rollout, a margin for other pods
    # and the paired rollbacks' floor objects: two pods each and a canary's
    added = add_kwok_nodes(api, 2 * args.n + 5 * args.rollout_n + 50)
    if added:
        log(f"added KWOK nodes for the pods: {added}")
    try:
        if args.skip_floor:
            result["floor_seconds"] = None
        else:
            result.update(
                floor_phase(bench, f"slipway-bench-floor-{run_id}", args.n, args.rollout_n)
            )
        operator = OperatorProcess(
            kubeconfig,
            log_path=where / "logs" / "bench-operator.log",
            pid_file=where / "pids" / "bench-operator.pid",
            workers=args.operator_workers,
        )
        result.update(operator_phases(bench, operator, f"slipway-bench-{run_id}", args))
    finally:
        if added:
            remove_bench_nodes(api)
    return _finish(result)


def floor_phase(bench: Bench, namespace: str, n: int, rollout_n: int) -> dict[str, Any]:
    """The floor in its own namespace, deleted (and gone) before anything else runs."""
    log(f"floor: {n} Deployments and {2 * n} Services in {namespace}")
    try:
        figures = bench.floor(namespace, n, rollout_n)
    finally:
        t0 = time.monotonic()
        left = bench.delete_namespace(namespace)
    figures["floor_cleanup_seconds"] = round(time.monotonic() - t0, 1)
    # the operator's phase then shares the machine with the rest of the deletion: the table says so
    figures["floor_namespace_left_deleting"] = bool(left)
    log(f"floor: {figures['floor_seconds']:.1f}s" + (f" ({left} still deleting)" if left else ""))
    return figures


def operator_phases(
    bench: Bench, operator: OperatorProcess, namespace: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Convergence, idleness and rollouts, with the operator running; then clean up."""
    names = md_names(args.n)
    result: dict[str, Any] = {}
    try:
        create_namespace(bench.api, namespace)
        operator.start()
        bench.meter.add("operator", operator.pid)
        log(f"operator pid {operator.pid}; creating {args.n} in {namespace}")
        with Tracker(bench.api, md_path(namespace)) as tracker:
            result.update(bench.converge(tracker, operator, namespace, names))
            log(f"operator: {result['operator_seconds']:.1f}s, "
                f"{result['writes_per_object']} writes per ModelDeployment")  # fmt: skip
            log(f"idle for {args.idle_seconds:.0f}s")
            result.update(bench.idle(operator, args.idle_seconds))
            if args.rollout_n > 0:
                result.update(bench.rollouts(tracker, namespace, names, args.rollout_n, operator))
            if args.rollout_n > 0 and args.paired_rounds > 0 and not args.skip_floor:
                floor_namespace = f"{namespace}-floor"
                try:
                    result["paired_rollback_seconds"] = bench.paired_rollbacks(
                        tracker, namespace, floor_namespace, names, args.rollout_n,
                        args.paired_rounds, operator,
                    )  # fmt: skip
                finally:
                    if left := bench.delete_namespace(floor_namespace):
                        log(f"{left} still deleting")
        result["peak_rss_mb"] = round(report.peak_rss_mb(operator.proc_status()), 1)
        result["operator_alive_at_end"] = operator.alive()
    finally:
        operator.stop()
        log(f"deleting {namespace}")
        if left := bench.delete_namespace(namespace):
            log(f"{left} still deleting")
    return result


def _finish(result: dict[str, Any]) -> dict[str, Any]:
    result.setdefault("rollout_seconds", None)
    result.setdefault("rollback_seconds", None)
    # ratios over the floor; the control plane's CPU ratio is the steadiest of them: what other
    # work on the machine does to wall time (both phases are timed, not run side by side) hardly
    # moves it
    result.update(report.derive(result))
    result["load_average"] = f"{result.get('load_average', '')} -> {_load()}"
    result["finished_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return result


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_results(result: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report.result_stem(dt.date.today(), int(result["n"]))
    json_path, md_path_ = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    md_path_.write_text(report.markdown_table(result))
    return json_path, md_path_


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # `timeout` and CI stop with SIGTERM: exit through the cleanup (operator, namespaces, nodes)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    json_path, table_path = write_results(result, args.out_dir)
    print(report.markdown_table(result))
    log(f"wrote {json_path} and {table_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
