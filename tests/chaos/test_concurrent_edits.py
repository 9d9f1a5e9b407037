"""The test and the operator write the same objects at once: hand edits of the fields Slipway
manages are put back, the user's own edits of the ModelDeployment are never reverted, conflicts
are retried, and the status ends consistent with the last spec."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.chaos.conftest import (
    MD_LABEL,
    SCALE,
    Api,
    model_deployment,
    report,
    seeded,
    version_patch,
    wait_consistent,
)
from tests.conftest import Cluster
from tests.e2e.conftest import Operator

pytestmark = pytest.mark.chaos

NAMES = ["edit-0", "edit-1", "edit-2"]
NOTE = "chaos.example/note"


class Editor(threading.Thread):
    """Runs one kind of edit again and again until stopped; counts them, keeps what it wrote."""

    def __init__(self, api: Api, edit: Callable[[Api, int], None]) -> None:
        super().__init__(daemon=True, name=edit.__name__)
        self.api, self.edit = api, edit
        self.count = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.edit(self.api, self.count)
            except Exception as exc:  # (a 404 while a revision is replaced)
                self.failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            self.count += 1
            self.stop.wait(0.2)


def stable_of(api: Api, name: str) -> str:
    return f"{name}-{api.md(name)['status']['stable']['revision']}"


def scale_the_deployment_by_hand(api: Api, i: int) -> None:
    name = NAMES[i % len(NAMES)]
    api.apps.patch_namespaced_deployment(stable_of(api, name), api.ns, {"spec": {"replicas": 7}})


def relabel_and_reselect_the_services(api: Api, i: int) -> None:
    name = NAMES[i % len(NAMES)]
    patch = {
        "metadata": {"labels": {"app.kubernetes.io/version": "hand-edited"}},
        "spec": {"selector": {"app": "hijacked"}},
    }
    api.core.patch_namespaced_service(f"{name}-stable" if i % 2 else name, api.ns, patch)


def test_hand_edits_are_put_back_and_user_edits_are_never_reverted(
    cluster: Cluster, namespace: str, api: Api, operator: Operator
) -> None:
    rng = seeded("edits")
    for name in NAMES:
        api.create(model_deployment(name, steps=[{"setWeight": 50}, {"pause": {"duration": "1s"}}]))
    wait_consistent(api, SCALE.converge_seconds, NAMES, "the first deployment")

    # what the user last wrote, per ModelDeployment: it must be there at the end
    last: dict[str, dict[str, object]] = {name: {} for name in NAMES}

    def edit_the_modeldeployments(api: Api, i: int) -> None:
        name = NAMES[i % len(NAMES)]
        patch: dict[str, object] = {"metadata": {"annotations": {NOTE: f"edit {i}"}}}
        spec: dict[str, object] = {"replicas": rng.choice([2, 3])}
        if i % 7 == 0:
            spec.update(version_patch(name, f"1.{i}.0")["spec"])
        patch["spec"] = spec
        api.patch_md(name, patch)
        last[name]["note"] = f"edit {i}"
        last[name]["replicas"] = spec["replicas"]
        if "model" in spec:
            last[name]["version"] = f"1.{i}.0"

    editors = [
        Editor(Api(cluster, namespace), edit)
        for edit in (
            scale_the_deployment_by_hand,
            relabel_and_reselect_the_services,
            edit_the_modeldeployments,
        )
    ]
    for editor in editors:
        editor.start()
    time.sleep(SCALE.edit_seconds)
    for editor in editors:
        editor.stop.set()
    for editor in editors:
        editor.join(timeout=30)

    snapshot, settled = wait_consistent(
        api, SCALE.converge_seconds, NAMES, "convergence after the concurrent edits"
    )
    for name in NAMES:
        md = snapshot.mds[name]
        assert md["metadata"]["annotations"][NOTE] == last[name]["note"], name
        assert md["spec"]["replicas"] == last[name]["replicas"], name
        if "version" in last[name]:
            assert md["spec"]["model"]["version"] == last[name]["version"], name
        for svc in snapshot.owned("Service", name):
            labels = svc["metadata"]["labels"]
            assert labels["app.kubernetes.io/version"] == md["spec"]["model"]["version"], svc
            assert "app" not in svc["spec"]["selector"] and MD_LABEL in svc["spec"]["selector"]
    md_editor = editors[-1]
    assert not md_editor.failures, md_editor.failures[:5]
    assert operator.proc is not None and operator.proc.poll() is None, operator.log_tail()
    conflicts = operator.metric("slipway_reconcile_errors_total", reason="conflict")
    report(
        "concurrent edits: "
        + ", ".join(f"{e.name} x{e.count}" for e in editors)
        + f" in {SCALE.edit_seconds:.0f}s; converged {settled:.1f}s after the last edit; "
        f"{conflicts:.0f} conflicts retried by the operator; "
        f"{operator.metric('slipway_reconcile_errors_total'):.0f} reconcile errors in all"
    )
