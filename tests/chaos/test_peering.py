"""Two operators with kopf peering: only the one with the higher priority acts; the other one
watches nothing and writes nothing until the leader is gone, then takes over by itself."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from tests.chaos.conftest import (
    LONG,
    SCALE,
    Api,
    OperatorFactory,
    model_deployment,
    report,
    until,
    version_patch,
    wait_consistent,
)
from tests.conftest import Cluster
from tests.e2e.conftest import Driver, Operator
from tests.e2e.test_serving import ReadySampler

pytestmark = pytest.mark.chaos

PEERING = "slipway"
LEADER, STANDBY = "200", "100"
# a SIGKILLed leader is seen dead only when its keep-alive expires (the peering lifetime, 20 s
# here: an operator first acts that long after it began to see the peering object); a SIGTERMed
# one withdraws at once. The short form takes the quick one.
KILL_SIGNALS = [signal.SIGTERM, signal.SIGKILL] if LONG else [signal.SIGTERM]


def log_of(op: Operator) -> str:
    return (op.log_dir / f"operator-{op.starts}.log").read_text(errors="replace")


def peers(cluster: Cluster, namespace: str) -> dict[str, dict[str, object]]:
    body = cluster.kubectl("get", "kopfpeering", PEERING, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(body).get("status") or {})


@pytest.fixture
def peered(
    cluster: Cluster, namespace: str, operators: OperatorFactory, peering_crds: None
) -> Iterator[OperatorFactory]:
    """Start operators that share the KopfPeering of the namespace, each with a priority."""
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=f"apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {{name: {PEERING}}}\n",
    )

    def start(priority: str, log_name: str) -> Operator:
        count = len(peers(cluster, namespace))
        op = operators(
            "--peering", PEERING, "--peering-lifetime", "20", "--priority", priority,
            log_name=log_name,
        )  # fmt: skip
        until(f"the {log_name}'s keep-alive", lambda: len(peers(cluster, namespace)) > count, 30)
        return op

    yield start


def assert_stood_by(standby: Operator) -> None:
    """The standby neither reconciled nor wrote, nor said that it acts (its peering gate)."""
    assert standby.metric("slipway_api_writes_total") == 0, log_of(standby)[-3000:]
    assert standby.metric("slipway_reconcile_total") == 0, log_of(standby)[-3000:]
    assert f"peering {PEERING}: active" not in log_of(standby)


def hand_over(leader: Operator, standby: Operator, kill: int) -> float:
    """Kill the leader; the seconds until the standby resumed."""
    killed = time.monotonic()
    leader.stop(kill)
    until("the standby to act", lambda: f"peering {PEERING}: active" in log_of(standby), 120)
    return time.monotonic() - killed


@pytest.mark.parametrize("kill", KILL_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_only_the_leader_acts_and_killing_it_hands_over(
    kill: int, api: Api, peered: OperatorFactory
) -> None:
    leader = peered(LEADER, "leader")
    standby = peered(STANDBY, "standby")
    names = [f"peer-{i}" for i in range(SCALE.peering_mds)]
    for name in names:
        api.create(model_deployment(name))
    wait_consistent(api, SCALE.converge_seconds, names, "the leader's first deployment")
    for name in names:
        api.patch_md(name, version_patch(name, "2.0.0"))
    wait_consistent(api, SCALE.converge_seconds, names, "the leader's rollout")
    assert leader.metric("slipway_api_writes_total") > 0
    assert_stood_by(standby)

    handover = hand_over(leader, standby, kill)
    for name in names:
        api.patch_md(name, version_patch(name, "3.0.0"))
    _, converged = wait_consistent(
        api, SCALE.converge_seconds, names, "the standby's rollout after the handover"
    )
    assert standby.metric("slipway_api_writes_total") > 0
    assert standby.proc is not None and standby.proc.poll() is None
    report(
        f"peering ({signal.Signals(kill).name} of the leader): {len(names)} ModelDeployments; "
        f"the standby wrote 0 times while the leader worked; it resumed {handover:.1f}s after "
        f"the leader died and converged a new version {converged:.1f}s later"
    )


def test_a_standby_that_takes_over_forgets_the_pods_deleted_while_it_was_paused(
    api: Api, k: Driver, peered: OperatorFactory
) -> None:
    leader = peered(LEADER, "leader")
    api.create(model_deployment("ghost", replicas=3))
    wait_consistent(api, SCALE.converge_seconds, ["ghost"], "the first deployment")
    # the second replica starts while the first one serves, and reads the 3 pods there are
    standby = peered(STANDBY, "standby")
    # one of them goes while the standby is paused: it sees no watch event of that
    api.patch_md("ghost", {"spec": {"replicas": 2}})
    wait_consistent(api, SCALE.converge_seconds, ["ghost"], "the leader's scale-down")
    assert_stood_by(standby)

    hand_over(leader, standby, signal.SIGTERM)
    # kopf lists the objects again when it resumes, but says nothing of those that went
    wait_consistent(api, 30, ["ghost"], "the standby's status after the handover")
    with ReadySampler(k, "ghost") as sampler:
        api.patch_md("ghost", version_patch("ghost", "2.0.0"))
        wait_consistent(api, SCALE.converge_seconds, ["ghost"], "the standby's rollout")
    first = next(i for i, n in enumerate(sampler.samples) if n >= 2)
    assert min(sampler.samples[first:]) >= 2, f"Ready pods fell below 2: {sampler.samples}"
