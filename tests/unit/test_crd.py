"""The generated CRD: fresh, structural, described, and carrying every rule of the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from slipway.api import Phase, Verdict
from slipway.api.types import (
    DURATION_IN_CEL_RANGE,
    DURATION_MAX_LENGTH,
    DURATION_PATTERN,
    MAX_WAIT,
    KubeObject,
    Quantity,
    duration_seconds,
)
from slipway.crd import CRD_PATHS, SchemaError, crd_manifest, crd_yaml, main, structural_schema
from slipway.resources.revision import REVISION_LENGTH

ROOT = Path(__file__).resolve().parents[2]
CORPUS_FILE = ROOT / "tests" / "data" / "invalid-modeldeployments.yaml"

Schema = dict[str, Any]


@pytest.fixture(scope="module")
def manifest() -> Schema:
    return crd_manifest()


@pytest.fixture(scope="module")
def version(manifest: Schema) -> Schema:
    versions: list[Schema] = manifest["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


@pytest.fixture(scope="module")
def schema(version: Schema) -> Schema:
    root: Schema = version["schema"]["openAPIV3Schema"]
    return root


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its wire path: `a.b`, `list[]` for items, `map.*` for map values."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def schema_at(root: Schema, path: str) -> Schema | None:
    """The schema of a field path as the API server writes it (`spec.steps[1].pause`)."""
    node: Schema | None = root
    for part in path.split("."):
        name, _, indexes = part.partition("[")
        if node is None:
            return None
        map_values = node.get("additionalProperties")
        node = node.get("properties", {}).get(name)
        if node is None and isinstance(map_values, dict):
            node = map_values
        for _ in range(indexes.count("]")):
            node = node.get("items") if node is not None else None
    return node


def structural_violations(root: Schema) -> list[str]:
    """What makes a schema non-structural (or unusable) for the API server; empty when fine."""
    problems = []
    for path, node in walk(root):
        leftovers = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title"} & node.keys()
        if leftovers:
            problems.append(f"{path}: {sorted(leftovers)}")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
        exempt = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if "type" not in node and not exempt:
            problems.append(f"{path}: no type")
        if node.get("x-kubernetes-int-or-string") and "type" in node:
            problems.append(f"{path}: int-or-string with a type")
    return problems


# --- the files


def test_committed_crd_is_what_the_models_generate() -> None:
    committed = (ROOT / CRD_PATHS[0]).read_text(encoding="utf-8")
    assert committed == crd_yaml(), f"{CRD_PATHS[0]} is stale: run make crds"


def test_chart_crd_is_a_byte_identical_copy() -> None:
    chart, crds = (ROOT / CRD_PATHS[1]).read_bytes(), (ROOT / CRD_PATHS[0]).read_bytes()
    assert chart == crds, f"{CRD_PATHS[1]} differs from {CRD_PATHS[0]}: run make crds"


def test_crd_yaml_is_deterministic_and_says_it_is_generated() -> None:
    text = crd_yaml()
    assert text == crd_yaml()
    header = text.splitlines()[:2]
    assert "Do not edit" in header[0]
    assert "make crds" in header[1]
    assert yaml.safe_load(text) == crd_manifest()


def test_write_crds_writes_the_same_file_into_crds_and_the_chart(tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path)]) == 0
    for relative in CRD_PATHS:
        assert (tmp_path / relative).read_text(encoding="utf-8") == crd_yaml()


# --- names, subresources, printer columns


def test_names_scope_and_version_are_the_contract(manifest: Schema, version: Schema) -> None:
    assert manifest["metadata"]["name"] == "modeldeployments.serving.slipway.dev"
    assert manifest["spec"]["group"] == "serving.slipway.dev"
    assert manifest["spec"]["scope"] == "Namespaced"
    assert manifest["spec"]["names"] == {
        "kind": "ModelDeployment",
        "listKind": "ModelDeploymentList",
        "plural": "modeldeployments",
        "singular": "modeldeployment",
        "shortNames": ["md"],
        "categories": ["all", "slipway"],
    }
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


def test_status_and_scale_subresources(version: Schema) -> None:
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }


def test_printer_columns_are_model_version_canary_weight_ready_phase_age(
    version: Schema, schema: Schema
) -> None:
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Model", "string", ".spec.model.name"),
        ("Version", "string", ".status.stable.version"),
        ("Canary", "string", ".status.canary.version"),
        ("Weight", "integer", ".status.canary.weight"),
        ("Ready", "string", ".status.ready"),
        ("Phase", "string", ".status.phase"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    for _, kind, json_path in columns[:-1]:
        field = schema_at(schema, json_path.removeprefix("."))
        assert field is not None, f"printer column {json_path} names no field"
        assert field["type"] == kind


# --- the schema is structural and documented


def test_schema_is_structural(schema: Schema) -> None:
    assert structural_violations(schema) == []


@pytest.mark.parametrize(
    ("bad", "complaint"),
    [
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, "a: ['$ref']"),
        ({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}}, "anyOf"),
        ({"type": "string", "title": "Name"}, "title"),
        ({"type": "object", "additionalProperties": False}, "additionalProperties: false"),
        ({"properties": {}}, ": no type"),
        ({"type": "string", "x-kubernetes-int-or-string": True}, "int-or-string with a type"),
    ],
)
def test_structural_checker_catches(bad: Schema, complaint: str) -> None:
    assert any(complaint in problem for problem in structural_violations(bad))


def test_root_has_spec_required_and_metadata_constrains_only_the_name(schema: Schema) -> None:
    assert schema["required"] == ["spec"]
    metadata = schema["properties"]["metadata"]
    assert set(metadata) == {"type", "properties"} and set(metadata["properties"]) == {"name"}
    name = metadata["properties"]["name"]
    # <name>-<revision> and <name>-canary are DNS-1035 labels: at most 63 characters
    assert name["maxLength"] + len("-") + REVISION_LENGTH == 63
    assert name["pattern"] == "^[a-z]([-a-z0-9]*[a-z0-9])?$"
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}


def test_every_spec_and_status_field_has_a_description(schema: Schema) -> None:
    undescribed = [
        path
        for path, node in walk(schema)
        if path.startswith(("spec.", "status."))
        and not path.endswith(("[]", ".*"))
        and not node.get("description")
    ]
    assert undescribed == []


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("spec.model.uri", "Where the model lives"),
        ("spec.model", "The model to serve"),
        ("spec.rollout.steps[]", "exactly one of setWeight, pause, evaluate or approval"),
        ("spec.rollout.steps[].evaluate", "judge the answers with gates"),
        ("status.kopf", "kopf"),
    ],
)
def test_descriptions_come_from_the_models(schema: Schema, path: str, words: str) -> None:
    assert words in dict(walk(schema))[path]["description"]


def test_preserve_unknown_fields_only_where_a_kubernetes_object_or_kopf_lives(
    schema: Schema,
) -> None:
    preserved = {
        path for path, node in walk(schema) if node.get("x-kubernetes-preserve-unknown-fields")
    }
    assert preserved == {
        "spec.runtime.env[]",
        "spec.template.tolerations[]",
        "spec.template.affinity",
        "spec.template.securityContext",
        "spec.template.containerSecurityContext",
        "status.stable.template",
        "status.canary.template",
        "status.history[].template",
        "status.kopf",
    }


@pytest.mark.parametrize("path", ["spec.runtime.env", "spec.template.imagePullSecrets"])
def test_lists_a_pod_keys_by_name_are_maps_by_name_so_duplicates_are_refused_at_the_door(
    schema: Schema, path: str
) -> None:
    # server-side apply of a pod template with two items of one name fails (HTTP 500) for good
    node = dict(walk(schema))[path]
    assert node["x-kubernetes-list-type"] == "map"
    assert node["x-kubernetes-list-map-keys"] == ["name"]


def test_map_lists_are_keyed_by_required_scalar_fields_of_their_items(schema: Schema) -> None:
    maps = [(path, node) for path, node in walk(schema) if "x-kubernetes-list-map-keys" in node]
    assert maps
    for path, node in maps:
        items = node["items"]
        for key in node["x-kubernetes-list-map-keys"]:
            # the API server refuses a CRD whose map key an item may lack
            assert key in items.get("required", []), f"{path}: {key} is not required"
            assert items["properties"][key]["type"] in ("string", "integer", "boolean"), path


def test_quantities_and_percentages_are_int_or_string_with_a_pattern(schema: Schema) -> None:
    int_or_string = {
        path: node for path, node in walk(schema) if node.get("x-kubernetes-int-or-string")
    }
    assert set(int_or_string) == {
        "spec.model.storage.sizeLimit",
        "spec.rollout.steps[].evaluate.data.storage.sizeLimit",
        "spec.resources.requests.*",
        "spec.resources.limits.*",
        "spec.rollout.maxSurge",
        "spec.rollout.maxUnavailable",
    }
    assert all("pattern" in node and "type" not in node for node in int_or_string.values())


@pytest.mark.parametrize("path", ["spec.rollout.maxSurge", "spec.rollout.maxUnavailable"])
def test_surge_and_unavailability_are_never_negative_as_a_number_or_as_a_string(
    schema: Schema, path: str
) -> None:
    node = dict(walk(schema))[path]
    assert node["minimum"] == 0  # applies to a number only
    assert node["pattern"] == r"^[0-9]+%?$"  # applies to a string only


@pytest.mark.parametrize(
    ("path", "nullable"),
    [
        ("spec.autoscaling", True),
        ("spec.model.name", True),
        ("spec.model.storage", True),
        ("spec.rollout.steps[].setWeight", True),
        ("status.canary", True),
        ("spec.replicas", False),
        ("spec.model.uri", False),
        ("spec.rollout", False),
    ],
)
def test_optional_fields_are_nullable_and_others_are_not(
    schema: Schema, path: str, nullable: bool
) -> None:
    assert dict(walk(schema))[path].get("nullable", False) is nullable


@pytest.mark.parametrize(
    ("path", "values"),
    [
        ("spec.rollout.strategy", ["Canary", "Rolling"]),
        ("spec.runtime.protocol", ["v2", "openai", "custom"]),
        ("status.phase", [phase.value for phase in Phase]),
        ("status.analysis.measurements[].verdict", [verdict.value for verdict in Verdict]),
    ],
)
def test_enums(schema: Schema, path: str, values: list[str]) -> None:
    assert dict(walk(schema))[path]["enum"] == values


@pytest.mark.parametrize(
    ("path", "default"),
    [
        ("spec.replicas", 1),
        ("spec.revisionHistoryLimit", 3),
        ("spec.runtime.port", 8080),
        ("spec.runtime.image", ""),
        ("spec.model.storage.sizeLimit", "20Gi"),
        ("spec.autoscaling.minReplicas", 1),
        ("spec.rollout.strategy", "Rolling"),
        ("spec.rollout.maxSurge", "25%"),
        ("spec.rollout.maxUnavailable", 0),
        ("spec.rollout.autoRollback", True),
        ("spec.rollout.analysis.interval", "1m"),
        ("spec.rollout.analysis.prometheus.timeout", "10s"),
    ],
)
def test_spec_defaults_are_filled_in_by_the_api_server(
    schema: Schema, path: str, default: Any
) -> None:
    assert dict(walk(schema))[path]["default"] == default


def test_no_null_defaults_and_no_defaults_in_status_but_not_observed_yet(schema: Schema) -> None:
    defaulted = {path: node["default"] for path, node in walk(schema) if "default" in node}
    assert None not in defaulted.values()
    # an object no operator has seen yet says so (observedGeneration 0 < generation, phase
    # Pending), and nothing more: a default can never invent an observation
    assert {p: v for p, v in defaulted.items() if p.startswith("status")} == {
        "status": {"observedGeneration": 0, "phase": "Pending"}
    }


@pytest.mark.parametrize(
    ("path", "keyword", "value"),
    [
        ("spec.replicas", "minimum", 0),
        ("spec.runtime.port", "maximum", 65535),
        ("spec.model.version", "maxLength", 63),
        ("spec.model.uri", "maxLength", 2048),
        ("spec.model.storage.sha256", "pattern", r"^[a-f0-9]{64}$"),
        ("spec.rollout.steps", "maxItems", 64),
        ("spec.rollout.analysis.metrics", "minItems", 1),
        ("spec.rollout.analysis.metrics", "maxItems", 16),
    ],
)
def test_bounds_and_patterns_are_kept(schema: Schema, path: str, keyword: str, value: Any) -> None:
    assert dict(walk(schema))[path][keyword] == value


# --- waits: at most a year (a datetime must hold the end of each)

YEAR = 365 * 24 * 3600
WAITS = {
    "spec.model.registry.mlflow.pollInterval",
    "spec.rollout.steps[].pause.duration",
    "spec.rollout.steps[].approval.timeout",
    "spec.rollout.steps[].evaluate.requestTimeout",
    "spec.rollout.steps[].evaluate.timeout",
    "spec.rollout.analysis.interval",
    "spec.rollout.analysis.window",
    "spec.rollout.analysis.prometheus.timeout",
    "spec.monitoring.podMonitor.interval",
}


def test_every_duration_of_the_spec_is_at_most_a_year(schema: Schema) -> None:
    durations = {
        path: node
        for path, node in walk(schema)
        if path.startswith("spec.") and node.get("pattern") == DURATION_PATTERN
    }
    assert set(durations) == WAITS
    for path, node in durations.items():
        assert node["maxLength"] == DURATION_MAX_LENGTH, path
        rules = [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]
        assert f"duration(self) <= duration('{MAX_WAIT}')" in " ".join(rules), path


def test_every_seconds_field_of_the_spec_has_a_maximum_of_a_year_at_most(schema: Schema) -> None:
    seconds = {
        path: node
        for path, node in walk(schema)
        if path.startswith("spec.") and path.endswith("Seconds")
    }
    assert {"spec.rollout.progressDeadlineSeconds", "spec.rollout.scaleDownDelaySeconds"} <= set(
        seconds
    )
    for path, node in seconds.items():
        assert node["maximum"] <= YEAR, path


# Go's time.Duration, which CEL's duration() parses into, ends at 2^63 ns (about 292 years)
GO_DURATION_MAX_SECONDS = 2**63 / 1e9


def test_cel_compares_a_duration_only_when_it_cannot_overflow_and_lets_every_year_through() -> None:
    in_range = re.compile(DURATION_IN_CEL_RANGE)
    waits = ("8760h", "525600m", "31536000s", "31536000000ms", "8759h59m59.5s", "0000001h", "250ms")
    for wait in waits:
        assert in_range.fullmatch(wait), wait
    densest = 0.0
    for digits, unit in ((5, "h"), (7, "m"), (9, "s"), (11, "ms")):
        largest, longer = "9" * digits + unit, "1" + "0" * digits + unit
        assert in_range.fullmatch(largest) and not in_range.fullmatch(longer), unit
        assert duration_seconds(longer) > YEAR  # it refuses only what the bound refuses anyway
        densest = max(densest, duration_seconds(largest) / len(largest))
    # the longest Duration made of the densest parts stays within Go's range
    assert densest * DURATION_MAX_LENGTH < GO_DURATION_MAX_SECONDS


# --- CEL rules


def cel_rules(schema: Schema) -> Iterator[tuple[str, Schema, Schema]]:
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule


def test_cel_rules_sit_on_the_objects_they_check(schema: Schema) -> None:
    placed = {(path, rule["message"].split(" (")[0]) for path, _, rule in cel_rules(schema)}
    assert placed == {(path, f"must be at most {MAX_WAIT}") for path in WAITS} | {
        ("spec", "runtime.image is required when model.format has no preset"),
        (
            "spec",
            "template.terminationGracePeriodSeconds must be greater than "
            "runtime.shutdownDelaySeconds",
        ),
        (
            "spec.model",
            "uri must start with one of pvc://, s3://, gs://, hf://, http://, https://, oci:// "
            "and name something after it, or be a registry's models:/NAME@ALIAS or "
            "models:/NAME/VERSION",
        ),
        ("spec.model", "version is required: it names the revision in status and labels"),
        (
            "spec.model",
            "version must be empty with a models:/ uri: the registry says which version it is",
        ),
        (
            "spec.model",
            "a models:/ uri needs registry.mlflow: the tracking server that resolves it",
        ),
        ("spec.model.registry.mlflow", "pollInterval must be between 10s and 1h"),
        (
            "spec.model",
            "a pvc:// uri names a claim",
        ),
        ("spec.autoscaling", "minReplicas must not be greater than maxReplicas"),
        ("spec.rollout", "setWeight must not decrease from one step to the next"),
        (
            "spec.rollout",
            "maxSurge and maxUnavailable must not both be zero: the rollout could never make "
            "progress",
        ),
        (
            "spec.rollout.steps[]",
            "a step has exactly one of setWeight, pause, evaluate or approval",
        ),
        ("spec.rollout.steps[].evaluate", "gate names must be unique"),
        (
            "spec.rollout.steps[].evaluate.data",
            "uri must start with one of pvc://, s3://, gs://, hf://, http://, https://, oci://",
        ),
        ("spec.rollout.steps[].evaluate.data", "a pvc:// uri names a claim"),
        (
            "spec.rollout.steps[].evaluate.gates[]",
            "a gate needs a threshold: min, max, maxRatioToStable or maxIncreaseOverStable",
        ),
        (
            "spec.rollout.steps[].evaluate.gates[]",
            "only accuracy, latency-p50, latency-p99 and error-rate have a value for each side to "
            "compare with stable; agreement, psi, ks and label-distance compare the two already",
        ),
        ("spec.rollout.steps[].evaluate.gates[]", "min must not be greater than max"),
        (
            "spec",
            "a built-in check on a server without a preset reads the series named in "
            "runtime.metrics: error-rate needs runtime.metrics.requests and "
            "runtime.metrics.errors, the latency checks runtime.metrics.latency",
        ),
        ("spec.rollout.analysis", "metric names must be unique"),
        (
            "spec.rollout.analysis.prometheus",
            "timeout must be at most 60s: a query that takes longer is no measurement of the "
            "canary",
        ),
        ("spec.rollout.analysis.metrics[]", "a metric has exactly one of check"),
        ("spec.rollout.analysis.metrics[]", "a metric with a query needs a name"),
        (
            "spec.rollout.analysis.metrics[]",
            "a metric needs a threshold: min, max, maxRatioToStable or maxIncreaseOverStable",
        ),
        ("spec.rollout.analysis.metrics[]", "min must not be greater than max"),
        (
            "spec.rollout.analysis.metrics[]",
            "samplesQuery goes with query; a built-in check counts its own samples",
        ),
        (
            "spec.rollout.analysis.metrics[]",
            "a query compared with stable must select the revision it measures with {{revision}}: "
            "it is sent once for the canary and once for stable",
        ),
    }


def test_an_evaluation_set_uri_has_the_pvc_rule_of_a_model_uri(schema: Schema) -> None:
    # the Job mounts a pvc:// evaluation set as the Deployment mounts a pvc:// model
    nodes = dict(walk(schema))
    model_rules = nodes["spec.model"]["x-kubernetes-validations"]
    [pvc] = [rule for rule in model_rules if rule["message"].startswith("a pvc:// uri")]
    assert pvc in nodes["spec.rollout.steps[].evaluate.data"]["x-kubernetes-validations"]


def test_cel_field_paths_name_fields_of_their_object(schema: Schema) -> None:
    for path, node, rule in cel_rules(schema):
        if "fieldPath" in rule:
            target = schema_at(node, rule["fieldPath"].removeprefix("."))
            assert target is not None, f"{path}: fieldPath {rule['fieldPath']} names no field"


def test_cel_rules_inside_lists_are_bounded_so_their_cost_is_too(schema: Schema) -> None:
    nodes = dict(walk(schema))
    for path, _, _ in cel_rules(schema):
        lists = [path[: match.start()] for match in re.finditer(r"\[\]", path)]
        assert all("maxItems" in nodes[prefix] for prefix in lists), path


# --- the generator refuses what it cannot express


class _Undescribed(BaseModel):
    size: int


class _Union(BaseModel):
    value: int | str = Field(description="Either.")


class _FreeForm(BaseModel):
    data: dict[str, Any] = Field(description="Anything.")


class _Translated(BaseModel):
    count: int = Field(gt=0, description="Strictly positive.")
    limit: Quantity | None = Field(default=None, description="Optional quantity.")
    extra: KubeObject | None = Field(default=None, description="An embedded object.")


@pytest.mark.parametrize(
    ("model", "complaint"),
    [
        (_Undescribed, "spec.size has no description"),
        (_Union, r"spec.value: only `X \| None` unions"),
        (_FreeForm, "spec.data: dict\\[str, Any\\] has no structural form"),
    ],
)
def test_generator_refuses_a_schema_it_cannot_express(
    model: type[BaseModel], complaint: str
) -> None:
    with pytest.raises(SchemaError, match=complaint):
        structural_schema(model.model_json_schema(by_alias=True), where="spec")


def test_generator_translates_json_schema_into_openapi_v3() -> None:
    translated = structural_schema(_Translated.model_json_schema(), where="spec")["properties"]
    assert translated["count"] == {
        "description": "Strictly positive.",
        "type": "integer",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert translated["limit"]["x-kubernetes-int-or-string"] is True
    assert translated["limit"]["nullable"] is True
    assert "anyOf" not in translated["limit"]
    assert translated["extra"] == {
        "description": "An embedded object.",
        "type": "object",
        "nullable": True,
        "x-kubernetes-preserve-unknown-fields": True,
    }


# --- the bad-input corpus (applied to the real API server in tests/integration)


def load_corpus() -> list[Schema]:
    cases: list[Schema] = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))
    return cases


CORPUS = load_corpus()


def test_corpus_has_at_least_40_uniquely_named_cases() -> None:
    names = [case["name"] for case in CORPUS]
    assert len(names) >= 40
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CORPUS, ids=[case["name"] for case in CORPUS])
def test_corpus_case_is_well_formed(case: Schema) -> None:
    assert set(case) == {"name", "why", "expect", "object"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", case["name"])
    assert case["why"].strip()
    assert case["expect"] and all(isinstance(words, str) and words for words in case["expect"])
    assert case["object"]["apiVersion"] == "serving.slipway.dev/v1alpha1"
    assert case["object"]["kind"] == "ModelDeployment"
    if case["expect"][0] == "metadata.name":
        assert set(case["object"]["metadata"]) == {"name"}  # the case is about that name
    else:
        assert case["object"]["metadata"] == {"name": case["name"]}


@pytest.mark.parametrize("case", CORPUS, ids=[case["name"] for case in CORPUS])
def test_corpus_case_names_a_field_the_schema_has_unless_it_is_a_typo(
    case: Schema, schema: Schema
) -> None:
    path = case["expect"][-1] if "unknown field" in case["expect"] else case["expect"][0]
    if path == "metadata.name":
        assert schema_at(schema, path) is not None
        return
    assert re.fullmatch(r"spec(\.[A-Za-z0-9]+(\[\d+\])*)*", path), f"not a field path: {path}"
    exists = schema_at(schema, path) is not None
    assert exists is ("unknown field" not in case["expect"])
