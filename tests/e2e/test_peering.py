"""A standby is passive (issue 15, item 9): with kopf peering, an operator that stands by makes
no API write and runs no reconcile, through its periodic re-lists and the timers it had set while
it was active; and a newer operator (a rolling upgrade of the operator Deployment) stands by
behind the one that is active instead of preempting it.

The re-list period is shortened for these tests (SLIPWAY_RESYNC_SECONDS) so that each one lasts
longer than several periods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, Cluster
from tests.e2e.conftest import Driver, Operator, OperatorFactory
from tests.e2e.test_canary import V2, canary, canary_md, start, status

PEERING = "slipway"
PEERING_CRDS = ROOT / "charts" / "slipway" / "charts" / "kopf-peering" / "crds"
RESYNC_SECONDS = 2
# a keep-alive lasts 20 s (kopf writes one every 10-15 s): an operator first acts 20 s after it
# began to see the peering object, not 60
LIFETIME = ("--peering-lifetime", "20")
# what the operator's peering gate logs when it starts or stops acting
ACTIVE, STANDING_BY = f"peering {PEERING}: active", f"peering {PEERING}: standing by"
FAST_RELIST = {"SLIPWAY_RESYNC_SECONDS": str(RESYNC_SECONDS)}


@pytest.fixture
def peering_crds(cluster: Cluster) -> None:
    """kopf's peering CRDs."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS))
    for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")


def create_peering(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=f"apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {{name: {PEERING}}}\n",
    )  # fmt: skip


@pytest.fixture
def peering(cluster: Cluster, namespace: str, peering_crds: None) -> None:
    """kopf's peering CRDs and the KopfPeering object of the test's namespace."""
    create_peering(cluster, namespace)


def peers(k: Driver) -> dict[str, dict[str, object]]:
    body = k.cluster.kubectl("get", "kopfpeering", PEERING, "-n", k.ns, "-o", "json").stdout
    return dict(json.loads(body).get("status") or {})


def peered(k: Driver, operators: OperatorFactory, name: str, *priority: str) -> Operator:
    """An operator in the namespace's peering; returned once its keep-alive is recorded."""
    count = len(peers(k))
    op = operators("--peering", PEERING, *LIFETIME, *priority, env=FAST_RELIST, name=name)
    k.wait(f"{name}'s keep-alive", lambda: len(peers(k)) > count, timeout=30)
    return op


def missed_keep_alive(op: Operator, namespace: str) -> bool:
    """Whether kopf logged (at debug) a keep-alive that found no peering object."""
    line = f"Keep-alive in {PEERING!r} in {namespace!r}: not found."
    return line in op.log()


def activity(op: Operator) -> tuple[float, float]:
    return op.metric("slipway_reconcile_total"), op.metric("slipway_api_writes_total")


@pytest.fixture
def operators(own_operators: OperatorFactory, peering: None) -> Iterator[OperatorFactory]:
    yield own_operators


def test_a_standby_runs_no_reconcile_and_writes_nothing_through_its_relists(
    k: Driver, operators: OperatorFactory
) -> None:
    leader = peered(k, operators, "leader", "--priority", "200")
    standby = peered(k, operators, "standby", "--priority", "100")
    started = time.monotonic()
    steps = [{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}]
    start(k, canary_md(steps=steps))
    k.patch("md", "fraud", {"spec": V2})
    k.wait(
        "the leader's promotion",
        lambda: (
            (s := status(k)).get("stable", {}).get("version") == "2.0.0"
            and s.get("phase") == "Ready"
        ),
    )
    # pods the standby saw are gone now; its re-lists see that, and must not act on it
    time.sleep(max(0.0, started + 4 * RESYNC_SECONDS - time.monotonic()))
    assert leader.metric("slipway_api_writes_total") > 0
    assert activity(standby) == (0, 0), standby.log()[-3000:]


def test_an_active_operator_that_is_preempted_drops_its_timers(
    k: Driver, operators: OperatorFactory
) -> None:
    """The first operator runs a canary whose timed pause has set a timer; a second one with a
    higher priority takes over before the timer is due. The first neither reconciles nor writes
    from then on, though its timer falls due and its re-lists run."""
    first = peered(k, operators, "first", "--priority", "100")
    steps = [{"setWeight": 25}, {"pause": {"duration": "15s"}}, {"setWeight": 50}, {"pause": {}}]
    start(k, canary_md(steps=steps))
    k.patch("md", "fraud", {"spec": V2})
    k.wait("the timed pause", lambda: canary(k).get("step") == 1)
    second = peered(k, operators, "second", "--priority", "200")
    k.wait("the first to pause", lambda: STANDING_BY in first.log(), timeout=30)
    before = activity(first)
    k.wait(
        "the second to finish the timed pause",
        lambda: canary(k).get("weight") == 50 and status(k).get("phase") == "Paused",
        timeout=60,
    )
    time.sleep(2 * RESYNC_SECONDS)
    assert activity(first) == before, first.log()[-3000:]
    assert second.metric("slipway_api_writes_total") > 0


def test_a_newer_operator_stands_by_behind_the_active_one(
    k: Driver, operators: OperatorFactory
) -> None:
    """Without --priority (as the chart runs them), operators started later stand by: a rolling
    upgrade of the operator Deployment never preempts the active pod, and when it goes the
    oldest of the others takes over."""
    first = peered(k, operators, "first")
    k.wait("the first to act", lambda: ACTIVE in first.log(), timeout=60)
    newer = [peered(k, operators, f"newer-{i}") for i in range(3)]
    time.sleep(2)  # each peer has seen the others' keep-alives
    assert STANDING_BY not in first.log()
    for op in newer:
        assert ACTIVE not in op.log(), op.log()[-2000:]

    first.stop()
    k.wait("the oldest standby to act", lambda: ACTIVE in newer[0].log(), 60)
    time.sleep(2)
    assert all(ACTIVE not in op.log() for op in newer[1:])


def test_peers_started_before_their_peering_object_exists_never_both_act(
    k: Driver, own_operators: OperatorFactory, peering_crds: None
) -> None:
    """As a chart install can start them: Helm creates the KopfPeering object after the
    Deployment, so two replicas may start before it exists, and kopf's first keep-alives find
    nothing (the next ones come a lifetime less 5-10 s later). kopf's own rule let both act as
    soon as the object appeared, each seeing no peer: both reconciled the same ModelDeployment (a
    CI run of the chart's two replicas saw both make the same 23 writes in one canary). An
    operator acts only once its own keep-alive is recorded and every peer has had the time to
    write its own: then exactly one does, the oldest, and the other never writes."""
    args = ("--peering", PEERING, *LIFETIME, "--log-level", "debug")
    first = own_operators(*args, env=FAST_RELIST, name="first")
    second = own_operators(*args, env=FAST_RELIST, name="second")
    # both kopf's first keep-alives have found no object (the next come 10-15 s later)
    k.wait(
        "both keep-alives to find no peering object",
        lambda: all(missed_keep_alive(op, k.ns) for op in (first, second)),
        timeout=10,
    )
    k.apply(canary_md())
    time.sleep(2)
    assert activity(first) == activity(second) == (0, 0)  # no peering object: both stand by
    create_peering(k.cluster, k.ns)
    k.wait_phase("fraud", "Ready", timeout=150)
    k.patch("md", "fraud", {"spec": V2})
    k.wait("the canary at 25 %", lambda: canary(k).get("weight") == 25, timeout=60)
    acted = {op.log_dir.name: activity(op) for op in (first, second)}
    assert acted["second"] == (0, 0), (acted, first.log()[-3000:], second.log()[-3000:])
    assert acted["first"][1] > 0, acted
