"""The pure parts of `make bench`: percentiles, metrics text, /proc parsing, the result table."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import pytest
from bench import report
from bench.report import RequestKey
from bench.run import (
    FloorSpec,
    all_pods_ready,
    bench_md,
    floor_children,
    is_promoted,
    is_ready_at_generation,
    ready_of,
    rolled_back_after,
)

from slipway.api import ModelDeployment
from slipway.api.types import DURATION_PATTERN
from slipway.resources.metadata import MODEL_DEPLOYMENT_LABEL, REVISION_LABEL


def request_line(code: str, group: str, resource: str, sub: str, verb: str, value: int) -> str:
    """One line of kube-apiserver's /metrics, with the labels it really carries."""
    return (
        f'apiserver_request_total{{code="{code}",component="apiserver",dry_run="",'
        f'group="{group}",resource="{resource}",scope="resource",subresource="{sub}",'
        f'verb="{verb}",version="v1"}} {value}'
    )


APISERVER_METRICS = "\n".join(
    [
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests by verb.",
        "# TYPE apiserver_request_total counter",
        request_line("200", "apps", "deployments", "", "APPLY", 150),
        request_line("201", "apps", "deployments", "", "APPLY", 50),
        request_line("200", "apps", "deployments", "status", "PUT", 7),
        request_line("201", "", "events", "", "POST", 400),
        request_line("200", "", "pods", "", "WATCH", 3),
        'apiserver_request_total_other{verb="POST"} 99',
        'apiserver_request_duration_seconds_bucket{verb="POST",le="0.1"} 5',
    ]
)

OPERATOR_METRICS = """\
# HELP slipway_api_writes_total Write requests the operator sent to the API server.
# TYPE slipway_api_writes_total counter
slipway_api_writes_total{verb="apply"} 600.0
slipway_api_writes_total{verb="status"} 400.0
slipway_api_writes_total{verb="event"} 400.0
slipway_reconcile_total{result="ok"} 572.0
"""


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([3.0], 50, 3.0),
        ([1.0, 2.0, 3.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([float(i) for i in range(1, 101)], 95, 95.05),
    ],
)
def test_percentile_interpolates_between_the_nearest_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert math.isclose(report.percentile(values, q), expected)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses_no_values_or_a_rank_outside_0_to_100(
    values: list[float], q: float
) -> None:
    with pytest.raises(ValueError):
        report.percentile(values, q)


def test_summary_of_durations_has_count_median_p95_p99_and_max() -> None:
    assert report.summarize([2.0, 1.0, 4.0, 3.0]) == {
        "count": 4,
        "p50": 2.5,
        "p95": 3.85,
        "p99": 3.97,
        "max": 4.0,
    }
    assert report.summarize([]) == {"count": 0}


def test_apiserver_requests_are_summed_over_codes_by_verb_resource_and_subresource() -> None:
    assert report.request_totals(APISERVER_METRICS) == {
        RequestKey("APPLY", "apps", "deployments", ""): 200.0,
        RequestKey("PUT", "apps", "deployments", "status"): 7.0,
        RequestKey("POST", "", "events", ""): 400.0,
        RequestKey("WATCH", "", "pods", ""): 3.0,
    }


def test_a_metric_whose_name_only_starts_like_the_wanted_one_is_not_read() -> None:
    samples = report.metric_samples(APISERVER_METRICS, "apiserver_request_total")
    assert len(samples) == 5
    assert all(labels["component"] == "apiserver" for labels, _ in samples)


def test_label_values_with_escaped_quotes_and_commas_are_read_whole() -> None:
    text = 'm{a="x,\\"y\\"",b="z"} 1.5\n'
    assert report.metric_samples(text, "m") == [({"a": 'x,"y"', "b": "z"}, 1.5)]


def test_operator_writes_are_read_by_verb() -> None:
    assert report.counter_by(OPERATOR_METRICS, "slipway_api_writes_total", "verb") == {
        "apply": 600.0,
        "status": 400.0,
        "event": 400.0,
    }


def test_delta_keeps_what_grew_including_series_that_appeared() -> None:
    before = {"apply": 10.0, "status": 4.0}
    after = {"apply": 25.0, "status": 4.0, "event": 2.0}
    assert report.delta(before, after) == {"apply": 15.0, "event": 2.0}


def test_writes_are_told_from_reads_and_keyed_by_resource_largest_first() -> None:
    totals = report.request_totals(APISERVER_METRICS)
    writes = report.writes_only(totals)
    assert RequestKey("WATCH", "", "pods", "") not in writes
    assert report.for_resources(writes, ["deployments", "events"]) == {
        "POST events": 400.0,
        "APPLY deployments.apps": 200.0,
        "PUT deployments.apps/status": 7.0,
    }


PROC_STATUS = "Name:\tpython3\nVmPeak:\t  900000 kB\nVmHWM:\t  131072 kB\nVmRSS:\t  102400 kB\n"


def test_peak_and_current_resident_memory_come_from_proc_status_in_mib() -> None:
    assert report.peak_rss_mb(PROC_STATUS) == 128.0
    assert report.rss_mb(PROC_STATUS) == 100.0
    with pytest.raises(ValueError, match="VmHWM"):
        report.peak_rss_mb("Name:\tzombie\n")


@pytest.mark.parametrize(
    "comm", ["python3", "kube-apiserver", "my (odd) name", "two words"], ids=str
)
def test_cpu_seconds_add_user_and_system_time_whatever_the_command_name(comm: str) -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    stat = f"4242 ({comm}) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0\n"
    assert report.cpu_seconds(stat, ticks_per_second=100) == 3.0


def test_host_busy_fraction_counts_everything_but_idle_and_iowait() -> None:
    before = report.host_cpu_jiffies("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n")
    after = report.host_cpu_jiffies("cpu  250 0 150 750 150 0 0 0 0 0\ncpu0 1 2 3\n")
    assert before == (200, 1000)
    assert report.busy_fraction(before, after) == pytest.approx(200 / 300)


@pytest.mark.parametrize(
    ("n", "stem"), [(200, "2026-11-26"), (1000, "2026-11-26-n1000"), (10, "2026-11-26-n10")]
)
def test_results_of_the_default_size_carry_the_date_alone(n: int, stem: str) -> None:
    assert report.result_stem(dt.date(2026, 11, 26), n) == stem


@pytest.mark.parametrize(
    ("key", "value", "met"),
    [
        ("ratio_operator_over_floor", 1.25, True),
        ("ratio_operator_over_floor", 1.26, False),
        ("ratio_operator_over_floor", None, None),
        ("rollout_ratio", 1.2, True),
        ("rollback_ratio", 1.3, False),
        ("time_to_ready_p50_share", 0.25, True),
        ("time_to_ready_p50_share", 0.5, False),
        ("idle_writes", 0, True),
        ("idle_writes", 1, False),
        ("writes_per_object", 5.0, True),
        ("writes_per_object", 5.01, False),
        ("peak_rss_mb", 251.0, False),
        ("operator_seconds", 40.0, None),
    ],
)
def test_targets_of_the_issue_are_judged_and_a_missing_figure_is_not(
    key: str, value: Any, met: bool | None
) -> None:
    assert report.target_met(key, value) is met


def sample_result(**overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "n": 200,
        "operator_seconds": 40.0,
        "floor_seconds": 32.0,
        "time_to_ready_seconds": {"count": 200, "p50": 12.0, "p99": 38.0, "max": 39.0},
        "floor_time_to_ready_from_start_seconds": {"count": 200, "p50": 16.0, "p99": 31.0},
        "floor_writes_per_object": 3,
        "writes_per_object": 5.0,
        "operator_writes_by_verb": {"apply": 600.0, "event": 200.0, "status": 200.0},
        "idle_seconds": 60.0,
        "idle_writes": 0,
        "peak_rss_mb": 127.0,
        "cpu_seconds": 10.98,
        "convergence_cpu": {"process_cpu_seconds": {"kube-apiserver": 20.0, "etcd": 4.0,
                                                    "bench": 0.3}, "other_cpu_seconds": 5.0},
        "floor_cpu": {"process_cpu_seconds": {"kube-apiserver": 16.0, "etcd": 4.0, "bench": 1.2},
                      "other_cpu_seconds": 7.0},
        "queue_wait_seconds": {"change": {"count": 200, "p50": 4.0, "p99": 9.5}},
        "rollout_seconds": {"single": 1.0, "n": 50, "batch": {"count": 50, "p50": 12.0,
                                                              "max": 20.0}},
        "floor_rollout_seconds": {"single": 0.8, "n": 50, "batch": {"count": 50, "p50": 10.0,
                                                                    "max": 12.5}},
        "rollback_seconds": {"single": 4.19, "n": 50, "batch": {"count": 50, "p50": 25.1,
                                                                "max": 28.4}},
        "machine": {"nproc": 2, "cpu_model": "AMD EPYC", "memory_mb": 24105,
                    "python": "3.11.7", "kubernetes": "v1.37.2"},
        "load_average": "1.00 2.00 3.00 -> 2.00 2.00 2.00",
        "started_at": "2026-11-26T15:19:35Z",
    }  # fmt: skip
    result.update(overrides)
    result.update(report.derive(result))
    return result


def table_row(table: str, measure: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == measure:
            return cells
    raise AssertionError(f"no row {measure!r} in\n{table}")


def test_every_figure_is_a_ratio_over_its_floor_from_the_same_run() -> None:
    derived = report.derive(sample_result())
    assert derived["ratio_operator_over_floor"] == 1.25
    assert derived["control_plane_cpu_ratio"] == 1.2  # (20 + 4) / (16 + 4)
    assert derived["time_to_ready_p50_share"] == 0.3
    assert derived["floor_time_to_ready_p50_share"] == 0.5
    assert (derived["rollout_ratio"], derived["rollout_ratio_max"]) == (1.2, 1.6)
    assert derived["rollout_ratio_single"] == 1.25
    assert derived["rollback_ratio"] is None  # no floor: no ratio, no verdict
    assert derived["targets_met"] == {
        "ratio_operator_over_floor": True,
        "rollout_ratio": True,
        "rollback_ratio": None,
        "time_to_ready_p50_share": False,
        "idle_writes": True,
        "writes_per_object": True,
    }  # peak RSS is judged at N=5000 only


def test_the_table_shows_each_figure_beside_its_floor_ratio_and_target() -> None:
    table = report.markdown_table(sample_result())
    assert table.startswith(
        "| measure | operator | floor | ratio | target |\n|---|---|---|---|---|\n"
    )
    assert table_row(table, "all 200 Ready (s)")[1:] == ["40.00", "32.00", "1.25", "<= 1.25 ✅"]
    assert table_row(table, "p50 as a share of the total")[1:] == ["0.30", "0.50", "n/a",
                                                                   "<= 0.25 ❌"]  # fmt: skip
    assert table_row(table, "API writes per ModelDeployment")[1:] == ["5.00", "3", "1.67",
                                                                       "<= 5 ✅"]  # fmt: skip
    assert table_row(table, "by verb")[1] == "apply 3.00, event 1.00, status 1.00"
    assert table_row(table, "kube-apiserver + etcd CPU (s)")[1:4] == ["24.00", "20.00", "1.20"]
    assert table_row(table, "queue wait, change lane, p50 / p99 (s)")[1] == "4.00 / 9.50 (200)"
    assert table_row(table, "version change to promoted, 50 at once, p50 (s)")[1:] == [
        "12.00", "10.00", "1.20", "<= 1.25 ✅"
    ]  # fmt: skip
    assert "target at N=5000" in table_row(table, "peak RSS (MiB)")[4]
    assert re.search(r"Machine: 2 CPUs \(AMD EPYC\), 24105 MiB RAM", table)
    assert "load average 1.00 2.00 3.00 -> 2.00 2.00 2.00" in table


def test_the_operators_garbage_collections_are_reported_per_phase() -> None:
    before = {"count": 10.0, "seconds": 0.5, "full_count": 1.0, "full_seconds": 0.12}
    after = {"count": 52.0, "seconds": 0.93, "full_count": 3.0, "full_seconds": 0.4}
    pauses = report.gc_summary(before, after)
    assert pauses == {"count": 42.0, "seconds": 0.43, "full_count": 2.0, "full_seconds": 0.28}
    rollbacks = {"single": 4.19, "n": 50, "batch": {"count": 50, "p50": 25.1, "max": 28.4},
                 "gc_pauses": pauses}  # fmt: skip
    table = report.markdown_table(sample_result(gc_pauses=pauses, rollback_seconds=rollbacks))
    cell = "0.43 in 42; full: 0.28 in 2"
    assert table_row(table, "operator's garbage collections while converging: pause (s)")[1] == cell
    during = "the operator's garbage collections during those 50: pause (s)"
    assert table_row(table, during)[1] == cell
    # a run without the figure (an older file) has no such row at all
    assert "garbage" not in report.markdown_table(sample_result())


def test_the_table_says_when_the_floors_deletion_overlapped_the_operators_phase() -> None:
    said = "still being deleted when the operator's phase began"
    assert said not in report.markdown_table(sample_result())
    assert said in report.markdown_table(sample_result(floor_namespace_left_deleting=True))


def test_a_missed_target_is_marked_and_a_skipped_floor_reads_not_available() -> None:
    table = report.markdown_table(
        sample_result(floor_seconds=None, idle_writes=3, floor_time_to_ready_from_start_seconds={})
    )
    assert table_row(table, "all 200 Ready (s)")[1:] == ["40.00", "n/a", "n/a", "<= 1.25"]
    assert table_row(table, "writes in 60.00 s idle")[1:] == ["3", "n/a", "n/a", "<= 0 ❌"]


QUEUE_METRICS = """\
slipway_work_queue_wait_seconds_bucket{lane="change",le="1.0"} 10.0
slipway_work_queue_wait_seconds_bucket{lane="change",le="5.0"} 30.0
slipway_work_queue_wait_seconds_bucket{lane="change",le="+Inf"} 40.0
slipway_work_queue_wait_seconds_bucket{lane="progress",le="1.0"} 5.0
slipway_work_queue_wait_seconds_bucket{lane="progress",le="5.0"} 5.0
slipway_work_queue_wait_seconds_bucket{lane="progress",le="+Inf"} 5.0
"""


def test_queue_waits_are_read_from_the_histogram_as_prometheus_would() -> None:
    buckets = report.histogram_buckets(QUEUE_METRICS, "slipway_work_queue_wait_seconds", "lane")
    assert buckets["change"] == {1.0: 10.0, 5.0: 30.0, math.inf: 40.0}
    # rank 20 of 40: halfway into the (1, 5] bucket; rank 39.6: beyond the last finite bound
    assert report.histogram_quantile(0.5, buckets["change"]) == 3.0
    assert report.histogram_quantile(0.99, buckets["change"]) == 5.0
    before = {"change": {1.0: 10.0, 5.0: 10.0, math.inf: 10.0}}
    assert report.wait_summary(before, buckets) == {
        "change": {"count": 30.0, "p50": 4.0, "p99": 5.0},
        "progress": {"count": 5.0, "p50": 0.5, "p99": 0.99},
    }


def test_a_gil_profile_says_the_share_of_its_window_the_interpreter_was_held() -> None:
    top = report.profile_top(PROFILE)  # 50 waiting (select) and 50 computing
    assert report.interpreter_held(top, rate=250, seconds=3) == round(100 / 750, 3)
    assert report.interpreter_held({}, rate=250, seconds=3) == 0.0


def test_the_paired_halves_waits_add_up_what_each_half_grew_by() -> None:
    into: dict[str, dict[float, float]] = {}
    report.add_grown(
        into, {"change": {1.0: 4.0, math.inf: 5.0}}, {"change": {1.0: 6.0, math.inf: 9.0}}
    )
    # a series that appears between two scrapes grew from nothing
    report.add_grown(
        into,
        {"change": {1.0: 6.0, math.inf: 9.0}},
        {"change": {1.0: 7.0, math.inf: 10.0}, "reconcile": {0.1: 2.0, math.inf: 2.0}},
    )
    assert into == {
        "change": {1.0: 3.0, math.inf: 5.0},
        "reconcile": {0.1: 2.0, math.inf: 2.0},
    }


LOOP = "<module> (slipway/__main__.py:3);run (kopf/running.py:60);_run_once (asyncio/e.py:1900)"
PROFILE = "\n".join(
    [
        f"{LOOP};select (selectors.py:468) 50",
        f"{LOOP};reconcile (slipway/reconcile.py:130);loads (json/__init__.py:346) 30",
        f"{LOOP};reconcile (slipway/reconcile.py:131);deepcopy (copy.py:128) 10",
        "_bootstrap (threading.py:1002);run (slipway/watch.py:140);loads (json/__init__.py:346) 10",
    ]
)


def test_a_profile_counts_what_computes_and_leaves_waiting_out() -> None:
    top = report.profile_top(PROFILE, top=3)
    assert (top["busy_samples"], top["idle_samples"]) == (50.0, 50.0)
    assert top["self"] == [
        ("loads (json/__init__.py)", 80.0),
        ("deepcopy (copy.py)", 20.0),
    ]
    # what sits beneath 90 % of the samples or more (the loop itself) tells nothing
    assert top["total"] == [
        ("<module> (slipway/__main__.py)", 80.0),
        ("_run_once (asyncio/e.py)", 80.0),
        ("loads (json/__init__.py)", 80.0),
    ]
    assert "| 80.0 % | `loads (json/__init__.py)` |" in report.profile_text(top)


def test_the_bench_model_deployment_is_valid_and_its_zero_pause_fits_the_duration_pattern() -> None:
    body = bench_md("bench-0000", "ns")
    md = ModelDeployment.from_body(body)
    assert md.spec.replicas == 2
    assert md.spec.rollout.scale_down_delay_seconds == 0
    assert re.fullmatch(DURATION_PATTERN, body["spec"]["rollout"]["steps"][1]["pause"]["duration"])


def test_the_floor_creates_the_operators_children_without_an_owner() -> None:
    deployment, service, stable = floor_children("bench-0007", "floor-ns")
    assert deployment["kind"] == "Deployment"
    assert deployment["metadata"]["name"].startswith("bench-0007-")
    assert deployment["spec"]["replicas"] == 2
    assert [service["metadata"]["name"], stable["metadata"]["name"]] == [
        "bench-0007",
        "bench-0007-stable",
    ]
    assert all(c["metadata"]["namespace"] == "floor-ns" for c in (deployment, service, stable))
    assert all("ownerReferences" not in c["metadata"] for c in (deployment, service, stable))


def md_with(status: dict[str, Any], generation: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": "m", "generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        ({"phase": "Ready", "observedGeneration": 2}, True),
        ({"phase": "Ready", "observedGeneration": 1}, False),
        ({"phase": "Progressing", "observedGeneration": 2}, False),
        ({}, False),
    ],
)
def test_ready_counts_only_at_the_current_generation(status: dict[str, Any], ready: bool) -> None:
    assert is_ready_at_generation(md_with(status)) is ready


def test_a_rollout_is_done_when_the_new_version_is_stable_and_ready() -> None:
    done = is_promoted("2.0.0")
    ready = {"phase": "Ready", "observedGeneration": 2}
    assert done(md_with({**ready, "stable": {"version": "2.0.0"}}))
    assert not done(md_with({**ready, "stable": {"version": "1.0.0"}}))
    assert not done(md_with({"phase": "Progressing", "observedGeneration": 2,
                             "stable": {"version": "2.0.0"}}))  # fmt: skip


def floor_pod(
    name: str, of: FloorSpec, ready: bool = True, leaving: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {MODEL_DEPLOYMENT_LABEL: of.md.name, REVISION_LABEL: of.revision},
    }
    if leaving:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {"metadata": meta, "status": {"conditions": [condition]}}


def test_the_floors_stable_counts_down_as_the_operator_counts_it() -> None:
    """The floor scales its canary up once the stable's Ready pods are down to one, as the
    operator's step does: a pod being deleted no longer counts, nor another ModelDeployment's pod
    of the same revision, nor the canary's."""
    old, new = FloorSpec.of("bench-0001", "ns", 1), FloorSpec.of("bench-0001", "ns", 2)
    neighbour = FloorSpec.of("bench-0002", "ns", 1)
    assert old.revision == neighbour.revision  # the same spec: only the name tells them apart
    pods = {
        "a": floor_pod("a", old),
        "b": floor_pod("b", old),
        "n": floor_pod("n", neighbour),
        "c": floor_pod("c", new),
        "u": floor_pod("u", old, ready=False),
    }
    assert ready_of(pods, old) == 2
    pods["b"] = floor_pod("b", old, leaving=True)
    assert ready_of(pods, old) == 1
    assert ready_of(pods, new) == 1


def test_between_paired_halves_every_pod_is_ready_and_none_on_its_way_out() -> None:
    """The next half of a paired round starts once the crashing canaries' pods are gone: a
    crash-looping pod, or a Ready one being deleted, still holds it."""
    stable, crashing = FloorSpec.of("bench-0001", "ns", 1), FloorSpec.of("bench-0001", "ns", 9)
    pods = {"a": floor_pod("a", stable), "b": floor_pod("b", stable)}
    assert all_pods_ready(pods)
    assert all_pods_ready({})
    assert not all_pods_ready({**pods, "c": floor_pod("c", crashing, ready=False)})
    assert not all_pods_ready({**pods, "d": floor_pod("d", crashing, leaving=True)})


def test_a_paired_round_waits_for_the_rollback_of_the_generation_it_patched() -> None:
    """The ModelDeployments of a paired round are rolled back already: that old rollback is
    not the new one."""

    def md(generation: int, observed: int, phase: str) -> dict[str, Any]:
        meta = {"name": "bench-0001", "generation": generation}
        return {"metadata": meta, "status": {"phase": phase, "observedGeneration": observed}}

    done = rolled_back_after({"bench-0001": 7})
    assert not done(md(7, 7, "RolledBack"))
    assert not done(md(8, 7, "RolledBack"))
    assert not done(md(8, 8, "Progressing"))
    assert done(md(8, 8, "RolledBack"))


def test_paired_rollbacks_give_each_round_its_ratio_and_their_median_and_spread() -> None:
    def half(p50: float | None) -> dict[str, Any]:
        return {"count": 0} if p50 is None else {"count": 50, "p50": p50}

    rounds = [
        {"first": first, "operator": half(ours), "floor": half(floor)}
        for first, ours, floor in (
            ("floor", 6.0, 4.0),
            ("operator", 5.0, 5.0),
            ("floor", 6.6, 6.0),
            ("operator", None, 5.0),
        )
    ]
    paired = report.paired_summary(rounds, 50)
    assert [r["ratio"] for r in paired["rounds"]] == [1.5, 1.0, 1.1, None]
    # a round without a figure on one side has no ratio and is left out of the median
    assert (paired["ratio_median"], paired["ratio_min"], paired["ratio_max"]) == (1.1, 1.0, 1.5)
    assert paired["n"] == 50
    table = report.markdown_table(sample_result(paired_rollback_seconds=paired))
    prefix = "crashing canary to RolledBack, 50 at once, p50 (s): by turns on the same cluster"
    first = f"{prefix}, round 1 (floor first)"
    assert table_row(table, first)[1:4] == ["6.00", "4.00", "1.50"]
    second = f"{prefix}, round 2 (operator first)"
    assert table_row(table, second)[1:4] == ["5.00", "5.00", "1.00"]
    median = table_row(table, "those rounds' ratios: median (least to most 1.00 to 1.50)")
    assert median[3:] == ["1.10", "<= 1.25 ✅"]
    # the official rollbacks' ratio is still the batch's against the floor's own phase
    assert (
        report.derive(sample_result(paired_rollback_seconds=paired))["rollback_ratio"]
        == (report.derive(sample_result())["rollback_ratio"])
    )
    assert "round 1" not in report.markdown_table(sample_result())
    none = report.paired_summary([], 50)
    assert none["ratio_median"] is None
    assert "round" not in report.markdown_table(sample_result(paired_rollback_seconds=none))


def test_the_operators_work_is_counted_per_batch_and_per_paired_half() -> None:
    """Reconciles and writes per object and CPU seconds between two readings of the operator's
    own counters; over several rounds, per round."""
    before = {"reconciles": 3000.0, "writes": 5000.0, "cpu_seconds": 30.5}
    after = {"reconciles": 3350.0, "writes": 5200.0, "cpu_seconds": 33.0}
    done = report.work_done(before, after, 50)
    assert done == {"reconciles_per_object": 7.0, "writes_per_object": 4.0, "cpu_seconds": 2.5}
    # four rounds' totals, each of 50
    totals = {"reconciles": 1400.0, "writes": 810.0, "cpu_seconds": 10.0}
    assert report.work_done({}, totals, 50, 4) == {
        "reconciles_per_object": 7.0, "writes_per_object": 4.05, "cpu_seconds": 2.5
    }  # fmt: skip
    assert report.work_done({}, totals, 0, 0)["cpu_seconds"] == 0.0
    rollbacks = {"single": 4.19, "n": 50, "batch": {"count": 50, "p50": 25.1}, "work": done}
    table = report.markdown_table(sample_result(rollback_seconds=rollbacks))
    cell = "7.00 reconciles, 4.00 writes per object; 2.50 CPU s"
    assert table_row(table, "the operator's work during those 50")[1] == cell
    paired = report.paired_summary(
        [{"first": "floor", "operator": {"count": 50, "p50": 6.0},
          "floor": {"count": 50, "p50": 4.0}}], 50
    )  # fmt: skip
    paired["work"] = {"operator": done, "floor": report.work_done({}, {"cpu_seconds": 0.4}, 50)}
    table = report.markdown_table(sample_result(paired_rollback_seconds=paired))
    assert table_row(table, "the operator's work in its own halves, per round")[1] == cell
    floor = table_row(table, "the operator's work in the floor's halves, per round")
    assert floor[1] == "0.00 reconciles, 0.00 writes per object; 0.40 CPU s"
    # a run without the figures (an older file) has no such rows
    assert "operator's work" not in report.markdown_table(sample_result())


def test_objects_whose_status_was_written_more_than_once_are_told_by_their_first_status() -> None:
    repeated = report.repeated_statuses(
        {
            "once": [(3.0, "2/2")],
            "waited-out": [(10.2, "0/2"), (14.0, "2/2")],
            "one-ready": [(4.0, "1/2"), (4.5, "2/2")],
            "one-ready-too": [(6.0, "1/2"), (7.0, "2/2")],
        }
    )
    assert (repeated["with_a_status"], repeated["objects"]) == (4, 3)
    assert repeated["writes"] == 6
    assert repeated["first_ready"] == {"0/2": 1, "1/2": 2}
    assert repeated["first_after_seen_seconds"]["p50"] == 6.0
    assert "1/2: 2" in report.markdown_table({"n": 4, "repeated_statuses": repeated})
    assert report.repeated_statuses({"once": [(3.0, "2/2")]})["objects"] == 0


@pytest.mark.parametrize(
    ("faults", "raised"),
    [
        pytest.param(["timeout", "busy"], None, id="sent-again-until-answered"),
        pytest.param(["timeout"] * 5, "timeout", id="gives-up-after-five"),
        pytest.param(["not-found"], "not-found", id="a-real-answer-is-not-retried"),
    ],
)
def test_the_bench_client_sends_a_write_again_when_the_server_was_too_slow(
    monkeypatch: pytest.MonkeyPatch, faults: list[str], raised: str | None
) -> None:
    """The floor's writes survive a slow moment of the control plane (an N=5000 run died of one
    30 s read timeout). The faults are injected: a real API server cannot be made to time out on
    cue in a unit test."""
    import urllib3
    from bench import run as bench_run

    from slipway.kube import ApiError, Kube

    calls: list[str] = []
    left = list(faults)

    def answer(self: Kube, method: str, path: str, **kwargs: Any) -> Any:
        calls.append(method)
        fault = left.pop(0) if left else None
        if fault == "timeout":
            raise urllib3.exceptions.ReadTimeoutError(None, path, "read timed out")  # type: ignore[arg-type]
        if fault == "busy":
            raise ApiError(503, "Service Unavailable")
        if fault == "not-found":
            raise ApiError(404, "Not Found")
        return {"ok": True}

    monkeypatch.setattr(Kube, "_call", answer)
    monkeypatch.setattr(bench_run.time, "sleep", lambda seconds: None)
    kube = bench_run.PatientKube(None)  # type: ignore[arg-type]
    if raised is None:
        assert kube._call("PATCH", "/x") == {"ok": True}
        assert len(calls) == len(faults) + 1
    else:
        expected = urllib3.exceptions.TimeoutError if raised == "timeout" else ApiError
        with pytest.raises(expected):
            kube._call("PATCH", "/x")
        assert len(calls) == (bench_run.FLOOR_ATTEMPTS if raised == "timeout" else 1)
