"""Every query of the built-in check table is PromQL that the real Prometheus parses.

`promtool check rules` (from the same Debian package as the test Prometheus, hack/prometheus.sh)
parses each rendered query with Prometheus's own parser; no server or cluster is needed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from slipway.analysis import CHECK_TABLE, series_selector
from slipway.analysis.checks import check_queries, render_check
from slipway.api import Check, ServingSpec
from tests.conftest import ROOT


def promtool() -> Path:
    prometheus = subprocess.run(
        ["bash", str(ROOT / "hack" / "prometheus.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Path(prometheus).with_name("promtool")


def test_every_built_in_query_is_valid_promql(tmp_path: Path) -> None:
    selector = series_selector("ml", "fraud", "9ab1c0de77")
    custom = ServingSpec.model_validate(
        {
            "model": {"version": "1", "uri": "s3://m/1", "format": "custom"},
            "runtime": {
                "image": "img",
                "metrics": {
                    "requests": 'predict_total{route="/predict"}',
                    "errors": 'predict_total{route="/predict",code=~"5.."}',
                    "latency": 'predict_seconds{route="/predict"}',
                },
            },
        }
    )
    queries = [*CHECK_TABLE.values(), *(check_queries(check, custom) for check in Check)]
    rules = [
        {"record": f"slipway:check_{i}_{part}", "expr": render_check(text, selector, "2m")}
        for i, q in enumerate(queries)
        for part, text in (("value", q.value), ("samples", q.samples))
    ]
    path = tmp_path / "checks.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "checks", "rules": rules}]}))
    proc = subprocess.run(
        [str(promtool()), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
