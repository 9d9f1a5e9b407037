"""The Grafana dashboard's queries, with its variables filled in as Grafana would fill them, and a
small client of Prometheus' HTTP API to run them (tests/e2e/test_dashboard.py and the picture's
script, hack/dashboard-png.py).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "charts" / "slipway" / "dashboards" / "slipway.json"


@dataclass(frozen=True)
class Query:
    panel: str
    expr: str
    legend: str

    @property
    def per_modeldeployment(self) -> bool:
        """A query about one ModelDeployment's rollout (the dashboard's second row)."""
        return "$name" in self.expr

    def filled(self, variables: Mapping[str, str]) -> str:
        """The PromQL Grafana sends: $variables replaced (longest names first)."""
        expr = self.expr
        for name in sorted(variables, key=len, reverse=True):
            expr = expr.replace(f"${name}", variables[name])
        assert "$" not in expr, f"unfilled variable in {expr}"
        return expr


def board() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> Iterator[dict[str, Any]]:
    for panel in board()["panels"]:
        if panel["type"] != "row":
            yield panel


def queries() -> list[Query]:
    return [
        Query(panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in panels()
        for target in panel["targets"]
    ]


def variable_selectors() -> list[str]:
    """The series selectors inside the template variables' label_values(...) queries."""
    found = []
    for variable in board()["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.+), *\w+\)", variable.get("definition", ""))
        if match:
            found.append(match.group(1))
    return found


def variables(namespace: str, name: str, job: str = "slipway", step: str = "15s") -> dict[str, str]:
    """Grafana's values for one ModelDeployment: $__rate_interval is four scrape intervals."""
    return {"job": job, "namespace": namespace, "name": name, "__rate_interval": step}


def legend(template: str, labels: Mapping[str, str]) -> str:
    return re.sub(r"\{\{ *(\w+) *\}\}", lambda m: labels.get(m.group(1), ""), template)


class PrometheusApi:
    def __init__(self, address: str) -> None:
        self.address = address

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.address}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a 400 carries the parse error in its body
            body = json.loads(exc.read())
        return body

    def query(self, expr: str) -> dict[str, Any]:
        """The API's whole answer (status, data or error) for an instant query."""
        return dict(self._get("/api/v1/query", query=expr))

    def result(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        return list(answer["data"]["result"])

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        answer = self._get(
            "/api/v1/query_range", query=expr, start=str(start), end=str(end), step=str(step)
        )
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        return list(answer["data"]["result"])
