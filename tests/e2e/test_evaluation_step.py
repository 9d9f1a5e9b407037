"""The evaluation step's Kubernetes side against the real API server (issue 13, section 4): the Job
the operator creates (owned by the ModelDeployment, `slipway evaluate` from the operator's image,
aimed at the two Services), Service <name> leaving the canary out before its first weight, and
stale Jobs going. KWOK completes a Job's pod at once, with no termination message: an evaluation
that ends without a result, which pauses the canary and says so. Real answers and verdicts are the
real node's tests (tests/e2e/realnode/test_evaluation_step.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Driver
from tests.e2e.test_canary import V2, canary, canary_md, start, status

pytestmark = pytest.mark.usefixtures("operator", "kwok_faults")

REVISION = "serving.slipway.dev/revision"
EVALUATE = {
    "evaluate": {
        "data": {"uri": "s3://eval/fraud.jsonl"},
        "gates": [{"measure": "agreement", "min": 0.95}],
    }
}


def jobs(k: Driver, name: str = "fraud") -> list[dict[str, Any]]:
    return k.items("jobs", f"serving.slipway.dev/modeldeployment={name}")


def test_an_evaluation_runs_as_a_job_of_the_modeldeployment_against_both_services(
    k: Driver,
) -> None:
    stable = start(k, canary_md(steps=[EVALUATE, {"setWeight": 50}]))
    k.patch("md", "fraud", {"spec": V2})

    [job] = k.wait("the evaluation Job", lambda: jobs(k) or None)
    revision = canary(k)["revision"]
    assert job["metadata"]["name"] == f"fraud-eval-{revision}-0-1"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("ModelDeployment", "fraud", True)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["slipway"] and container["args"][0] == "evaluate"
    args = dict(zip(container["args"][1::2], container["args"][2::2], strict=False))
    for track in ("canary", "stable"):
        ip = k.get("service", f"fraud-{track}")["spec"]["clusterIP"]
        assert args[f"--{track}"] == f"http://{ip}:8080", "the Services by their cluster IPs"

    # before the first weight the canary's one pod is no endpoint of Service fraud
    selector = k.get("service", "fraud")["spec"]["selector"]
    assert selector[REVISION] == stable
    c = canary(k)
    assert (c["weight"], c["replicas"], c["evaluation"]["attempt"]) == (0, 1, 1)
    assert c["evaluation"]["startedAt"]
    assert status(k)["stable"]["replicas"] == 4


def test_an_evaluation_without_a_result_pauses_and_resume_runs_it_again_in_a_new_job(
    k: Driver,
) -> None:
    start(k, canary_md(steps=[EVALUATE, {"setWeight": 50}]))
    k.patch("md", "fraud", {"spec": V2})

    paused = k.wait(
        "the evaluation's verdict",
        lambda: (c := canary(k)).get("evaluation", {}).get("verdict") and c,
    )
    revision = paused["revision"]
    assert paused["evaluation"]["verdict"] == "Error"
    assert (paused["state"], paused["reason"]) == ("Paused", "AnalysisInconclusive")
    assert "ended (Completed, exit code 0) without a result" in paused["message"]
    [gate] = [m for m in status(k)["analysis"]["measurements"] if m.get("step") == 0]
    assert (gate["metric"], gate["verdict"]) == ("agreement", "Error")
    # the judged Job stays for people to read
    assert [j["metadata"]["name"] for j in jobs(k)] == [f"fraud-eval-{revision}-0-1"]

    k.plugin("resume", "fraud")

    k.wait(
        "the second evaluation's Job, and the first one gone",
        lambda: [j["metadata"]["name"] for j in jobs(k)] == [f"fraud-eval-{revision}-0-2"],
    )
    assert canary(k)["evaluation"]["attempt"] == 2

    k.plugin("abort", "fraud")

    k.wait_phase("fraud", "RolledBack")
    k.wait(
        "Service fraud to select every pod again once the canary's pod is gone",
        lambda: REVISION not in k.get("service", "fraud")["spec"]["selector"],
    )
    assert canary(k)["replicas"] == 0
