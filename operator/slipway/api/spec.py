"""The `spec` of a ModelDeployment: what the user asks for."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from slipway.api.evaluation import EvaluateStep
from slipway.api.storage import PVC_URI_RULE, URI_MESSAGE, URI_PATTERN, ModelStorage
from slipway.api.types import (
    DNS_LABEL,
    MAX_WAIT_SECONDS,
    ApiModel,
    Duration,
    IntOrPercent,
    KeyedByName,
    KubeObject,
    NamedKubeObject,
    Quantity,
    cel_duration_in_range,
)

# Formats that have a runtime preset (the table lives in slipway.resources.presets).
PRESET_FORMATS = (
    "sklearn",
    "xgboost",
    "lightgbm",
    "onnx",
    "pytorch",
    "tensorflow",
    "tensorrt",
    "huggingface",
)
# how often a registry alias is looked up again, at least and at most
REGISTRY_POLL_MIN = "10s"
REGISTRY_POLL_MAX = "1h"

# A pod told to stop keeps serving this long before SIGTERM by default: kube-proxy drops a
# deleted pod's endpoint 0.5-1 s after the deletion on a quiet node (measured), later on a
# busy one.
DEFAULT_SHUTDOWN_DELAY_SECONDS = 5


class Protocol(StrEnum):
    """The inference protocol a server speaks; it decides the health probe paths."""

    V2 = "v2"
    OPENAI = "openai"
    CUSTOM = "custom"


class Strategy(StrEnum):
    """How a new revision replaces the stable one."""

    CANARY = "Canary"
    ROLLING = "Rolling"


# a version in a model registry, as MLflow writes it: models:/NAME@ALIAS or models:/NAME/VERSION
REGISTRY_URI = r"^models:/[^/@]+(@[A-Za-z0-9_-]+|/[1-9][0-9]*)$"
_IS_REGISTRY = "self.uri.startsWith('models:/')"


class MlflowRegistry(ApiModel):
    """An MLflow tracking server whose model registry names the model's versions."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"{cel_duration_in_range('self.pollInterval')} && "
                    f"duration(self.pollInterval) >= duration('{REGISTRY_POLL_MIN}') && "
                    f"duration(self.pollInterval) <= duration('{REGISTRY_POLL_MAX}')",
                    "message": f"pollInterval must be between {REGISTRY_POLL_MIN} and "
                    f"{REGISTRY_POLL_MAX}",
                    "fieldPath": ".pollInterval",
                }
            ]
        }
    )

    tracking_uri: str = Field(
        # no user:password@ in it: credentials go in secretName, never in a field everyone reads
        # (and that conditions and Events repeat)
        pattern=r"^https?://[^/?#@]+(/[^?#]*)?$",
        max_length=2048,
        description="Base URL of the MLflow tracking server, e.g. http://mlflow.mlops:5000, "
        "without credentials (they go in secretName); the operator calls its REST API "
        "(/api/2.0/mlflow/...).",
    )
    secret_name: str | None = Field(
        default=None,
        max_length=253,
        description="Secret with MLFLOW_TRACKING_TOKEN (a bearer token), or "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD. Read by the operator (the chart's "
        "modelRegistry.readCredentialSecrets); whoever names it must be allowed to read it. "
        "Empty: no credentials.",
    )
    poll_interval: Duration = Field(
        default="1m",
        description=f"How often the alias is looked up again ({REGISTRY_POLL_MIN} to "
        f"{REGISTRY_POLL_MAX}); moving it starts a canary of the version it names.",
    )


class ModelRegistry(ApiModel):
    """Where a models:/ uri is resolved."""

    mlflow: MlflowRegistry = Field(description="An MLflow model registry.")


class ModelSpec(ApiModel):
    """The model to serve."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.uri.matches('{URI_PATTERN}') || "
                    f"self.uri.matches('{REGISTRY_URI}')",
                    "message": f"{URI_MESSAGE} and name something after it, or be a registry's "
                    "models:/NAME@ALIAS or models:/NAME/VERSION",
                    "fieldPath": ".uri",
                    "reason": "FieldValueInvalid",
                },
                {
                    "rule": f"{_IS_REGISTRY} || (has(self.version) && self.version != '')",
                    "message": "version is required: it names the revision in status and labels "
                    "(only a models:/ uri takes it from the registry)",
                    "fieldPath": ".version",
                    "reason": "FieldValueRequired",
                },
                {
                    "rule": f"!{_IS_REGISTRY} || !has(self.version) || self.version == ''",
                    "message": "version must be empty with a models:/ uri: the registry says "
                    "which version it is",
                    "fieldPath": ".version",
                    "reason": "FieldValueForbidden",
                },
                {
                    "rule": f"!{_IS_REGISTRY} || has(self.registry)",
                    "message": "a models:/ uri needs registry.mlflow: the tracking server that "
                    "resolves it",
                    "fieldPath": ".registry",
                    "reason": "FieldValueRequired",
                },
                PVC_URI_RULE,
            ]
        }
    )

    name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="Name the server publishes the model under. Default: metadata.name.",
    )
    version: str = Field(
        default="",
        max_length=63,
        pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$",
        description="Version of the model, e.g. 2.1.0; shown in status and as the "
        "app.kubernetes.io/version label: of its revision's Deployment, pods and Service "
        "<name>-canary, of Services <name> and <name>-stable once that revision is stable, and "
        "of the HPA, PodMonitor and evaluation Jobs at once. Required, except with a models:/ "
        "uri (the registry's version).",
    )
    uri: str = Field(
        min_length=1,
        max_length=2048,
        description="Where the model lives: pvc://CLAIM/path, s3://bucket/key, gs://bucket/key, "
        "hf://org/model[@revision], http(s)://host/path, oci://image, or a version in a model "
        "registry: models:/NAME@ALIAS (follows the alias) or models:/NAME/VERSION.",
    )
    format: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Model format. Picks a runtime preset (" + ", ".join(PRESET_FORMATS) + "); "
        "any other format (e.g. custom) needs runtime.image.",
    )
    storage: ModelStorage | None = Field(
        default=None,
        description="Credentials, size limit and checksum for downloaded models.",
    )
    registry: ModelRegistry | None = Field(
        default=None,
        description="The model registry that resolves a models:/ uri to a version and the "
        "location of its files (fetched with storage's credentials).",
    )

    @model_validator(mode="after")
    def _version_from_the_registry_or_the_spec(self) -> ModelSpec:
        if self.registry_ref:
            if self.version:
                raise ValueError("version must be empty with a models:/ uri")
            if self.registry is None:
                raise ValueError("a models:/ uri needs registry.mlflow")
        elif not self.version:
            raise ValueError("version is required")
        return self

    @property
    def registry_ref(self) -> bool:
        """Whether the uri names a version in the model registry (models:/...)."""
        return self.uri.startswith("models:/")


# A series selector: a metric name, optional label matchers: http_requests_total{code="500"}
SERIES_SELECTOR = r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^{}]*\})?$"


class RuntimeMetrics(ApiModel):
    """Where the server publishes Prometheus metrics and, for a server without a preset, which of
    its series the built-in checks read."""

    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the metrics endpoint, exposed on the pod as the container port named "
        "metrics. Empty: the preset's (MLServer 8082, Triton 8002, vLLM the serving port); a "
        "server without a preset has none unless set.",
    )
    path: str = Field(
        default="/metrics",
        max_length=256,
        pattern=r"^/[!-~]*$",
        description="Path of the metrics endpoint.",
    )
    requests: str | None = Field(
        default=None,
        max_length=512,
        pattern=SERIES_SELECTOR,
        description="For a server without a preset: a counter of every inference request, as a "
        'series selector (e.g. http_requests_total{handler="/predict"}). The error-rate check '
        "divides by it and counts its samples with it.",
    )
    errors: str | None = Field(
        default=None,
        max_length=512,
        pattern=SERIES_SELECTOR,
        description="For a server without a preset: a counter of failed inference requests, e.g. "
        'http_requests_total{handler="/predict",code=~"5.."}.',
    )
    latency: str | None = Field(
        default=None,
        max_length=512,
        pattern=SERIES_SELECTOR,
        description="For a server without a preset: a histogram of request durations in seconds, "
        "by its name without _bucket (e.g. http_request_duration_seconds); the latency checks "
        "read its _bucket, _sum and _count series.",
    )


class RuntimeSpec(ApiModel):
    """The model server. Empty fields come from the preset of model.format."""

    image: str = Field(
        default="",
        max_length=1024,
        description="Server image. Empty: the preset of model.format.",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Port the server listens on.")
    protocol: Protocol | None = Field(
        default=None,
        description="Inference protocol: v2 (probes /v2/health/live, /v2/health/ready), openai "
        "(probe /health) or custom (TCP probe). Empty: the preset's protocol, or custom.",
    )
    command: list[str] = Field(
        default_factory=list, description="Entrypoint override of the server container."
    )
    args: list[str] = Field(default_factory=list, description="Arguments of the server container.")
    env: KeyedByName[NamedKubeObject] = Field(
        default_factory=list,
        description="Environment variables (Kubernetes EnvVar objects) of the server container, "
        "each name once.",
    )
    metrics: RuntimeMetrics | None = Field(
        default=None,
        description="The server's Prometheus metrics endpoint and, without a preset, the series "
        "the built-in checks read. Empty: the preset's.",
    )
    shutdown_delay_seconds: int | None = Field(
        default=None,
        ge=0,
        le=300,
        description="Seconds a pod that is told to stop keeps serving before its server gets "
        "SIGTERM (a preStop sleep), so that every Service has stopped sending it traffic first. "
        f"Empty: the default ({DEFAULT_SHUTDOWN_DELAY_SECONDS}).",
    )


class ResourceRequirements(ApiModel):
    """Compute resources of the server container, as in a Kubernetes container."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Maximum resources, e.g. {memory: 2Gi, nvidia.com/gpu: 1}.",
    )


class AutoscalingSpec(ApiModel):
    """A HorizontalPodAutoscaler (autoscaling/v2) that scales the ModelDeployment itself."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must not be greater than maxReplicas",
                    "fieldPath": ".minReplicas",
                }
            ]
        }
    )

    min_replicas: int = Field(default=1, ge=1, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, description="Most replicas.")
    target_cpu_utilization_percentage: int = Field(
        default=80,
        alias="targetCPUUtilizationPercentage",
        ge=1,
        le=100,
        description="Average CPU use, in percent of the request, that the autoscaler aims for.",
    )


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: str = Field(min_length=1, description="Name of the object.")


class PodTemplate(ApiModel):
    """Pod-level extras for the serving pods."""

    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the pods must be scheduled on."
    )
    tolerations: list[KubeObject] = Field(
        default_factory=list, description="Tolerations (Kubernetes Toleration objects)."
    )
    affinity: KubeObject | None = Field(
        default=None, description="Scheduling affinity (a Kubernetes Affinity object)."
    )
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount the pods run as."
    )
    image_pull_secrets: KeyedByName[LocalObjectReference] = Field(
        default_factory=list, description="Secrets to pull the server image with, each once."
    )
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the pods.")
    termination_grace_period_seconds: int | None = Field(
        default=None,
        ge=1,
        le=3600,
        description="Seconds from a pod's deletion to its kill, the shutdown delay included. "
        "Empty: the shutdown delay plus the preset's time to finish in-flight requests.",
    )
    security_context: KubeObject | None = Field(
        default=None,
        description="Pod security context (a Kubernetes PodSecurityContext); its keys replace "
        "Slipway's defaults (seccomp RuntimeDefault, non-root where the preset's image allows).",
    )
    container_security_context: KubeObject | None = Field(
        default=None,
        description="Security context of the server container (a Kubernetes SecurityContext); "
        "its keys replace Slipway's defaults (no privilege escalation, all capabilities dropped).",
    )


class PauseStep(ApiModel):
    """Wait: for a duration, or (without one) until promoted."""

    duration: Duration | None = Field(
        default=None,
        description="How long to wait, e.g. 2m. Empty: wait until `kubectl slipway promote`.",
    )


# the most people an approval step can ask for
MAX_APPROVALS = 10


class ApprovalStep(ApiModel):
    """Wait for people to approve: `kubectl slipway promote` by `requiredApprovals` distinct users,
    each holding the promote verb (README: Governance)."""

    required_approvals: int = Field(
        default=1,
        ge=1,
        le=MAX_APPROVALS,
        description="How many distinct users must promote before the canary goes on (more than "
        "one needs the chart's governance policies, which say who each one is).",
    )
    timeout: Duration | None = Field(
        default=None,
        description="How long to wait for the approvals, counted from the step's start as a "
        "pause's duration is; then the canary fails (ApprovalTimedOut) and is rolled back "
        "(autoRollback) or held. Empty: wait until approved.",
    )


_STEP_FIELDS = ("setWeight", "pause", "evaluate", "approval")
_STEPS_SET = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in _STEP_FIELDS)
_ONE_STEP = "a step has exactly one of setWeight, pause, evaluate or approval"
_STEP_MASK = " + ".join(f"(has(self.{f}) ? {1 << i} : 0)" for i, f in enumerate(_STEP_FIELDS))


def _named(mask: int) -> str:
    names = [f for i, f in enumerate(_STEP_FIELDS) if mask & (1 << i)]
    if len(names) <= 2:
        return " and ".join(names) or "none"
    return ", ".join(names[:-1]) + " and " + names[-1]


# the message names what the step has (constant strings only: the API server bounds CEL's cost)
_WHAT_IT_HAS = (
    "".join(
        f"({_STEP_MASK}) == {mask} ? '{_named(mask)}' : "
        for mask in range(1 << len(_STEP_FIELDS))
        if bin(mask).count("1") != 1
    )
    + "''"
)


class CanaryStep(ApiModel):
    """One step of a canary: exactly one of setWeight, pause, evaluate or approval."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"{_STEPS_SET} == 1",
                    "message": _ONE_STEP,
                    "messageExpression": f"'{_ONE_STEP}; this one has ' + ({_WHAT_IT_HAS}) + "
                    "': put each in a step of its own'",
                }
            ]
        }
    )

    set_weight: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Percent of traffic (0-100) the canary gets from this step on.",
    )
    pause: PauseStep | None = Field(default=None, description="Wait before the next step.")
    evaluate: EvaluateStep | None = Field(
        default=None,
        description="Send an evaluation set to the canary and to stable and judge the answers "
        "with gates (a Job running `slipway evaluate`). Before the first setWeight above 0 the "
        "canary runs one pod that gets no user traffic for it.",
    )
    approval: ApprovalStep | None = Field(
        default=None,
        description="Wait for people to approve (kubectl slipway promote) before the next step.",
    )


# The longest a query may take (a Prometheus that never answers must not hold a measurement longer)
PROMETHEUS_TIMEOUT_CAP = "60s"


class PrometheusProvider(ApiModel):
    """A Prometheus server to query."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"{cel_duration_in_range('self.timeout')} && "
                    f"duration(self.timeout) <= duration('{PROMETHEUS_TIMEOUT_CAP}')",
                    "message": f"timeout must be at most {PROMETHEUS_TIMEOUT_CAP}: a query that "
                    "takes longer is no measurement of the canary",
                    "fieldPath": ".timeout",
                }
            ]
        }
    )

    address: str = Field(
        pattern=r"^https?://",
        description="Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.",
    )
    timeout: Duration = Field(
        default="10s",
        description=f"Timeout of one query; at most {PROMETHEUS_TIMEOUT_CAP}.",
    )


class Check(StrEnum):
    """A built-in check: PromQL Slipway writes for the runtime of each revision."""

    ERROR_RATE = "error-rate"
    LATENCY_P50 = "latency-p50"
    LATENCY_P95 = "latency-p95"
    LATENCY_P99 = "latency-p99"
    LATENCY_MEAN = "latency-mean"


_RELATIVE = "has(self.maxRatioToStable) || has(self.maxIncreaseOverStable)"


class AnalysisMetric(ApiModel):
    """One judgement of the canary: a built-in check or a PromQL query, and its thresholds."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.query) != has(self.check)",
                    "message": "a metric has exactly one of check (a built-in check such as "
                    "error-rate) or query (PromQL)",
                },
                {
                    "rule": "has(self.name) || has(self.check)",
                    "message": "a metric with a query needs a name",
                    "fieldPath": ".name",
                    "reason": "FieldValueRequired",
                },
                {
                    "rule": f"has(self.min) || has(self.max) || {_RELATIVE}",
                    "message": "a metric needs a threshold: min, max, maxRatioToStable or "
                    "maxIncreaseOverStable",
                },
                {
                    "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "message": "min must not be greater than max",
                    "fieldPath": ".min",
                },
                {
                    "rule": "!has(self.samplesQuery) || has(self.query)",
                    "message": "samplesQuery goes with query; a built-in check counts its own "
                    "samples",
                    "fieldPath": ".samplesQuery",
                },
                {
                    "rule": f"!({_RELATIVE}) || has(self.check) || "
                    "self.query.matches('\\\\{\\\\{\\\\s*revision\\\\s*\\\\}\\\\}')",
                    "message": "a query compared with stable must select the revision it measures "
                    "with {{revision}}: it is sent once for the canary and once for stable",
                    "fieldPath": ".query",
                },
            ]
        }
    )

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Name of the metric in status and in slipway_analysis_* metrics. Default: the "
        "check.",
    )
    check: Check | None = Field(
        default=None,
        description="A built-in check, measured with the PromQL of each revision's runtime "
        "(MLServer, Triton, vLLM, or the series named in runtime.metrics): error-rate (failed / "
        "all inference requests), latency-p50, latency-p95, latency-p99, latency-mean (seconds).",
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="PromQL returning one number. Templated: {{namespace}}, {{name}}, "
        "{{revision}} (the revision measured: the canary, or stable for a comparison), "
        "{{selector}} (the label matchers of that revision's scraped series), "
        "{{stable.revision}}, {{canary.revision}}, {{interval}}, {{window}}.",
    )
    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")
    max_ratio_to_stable: float | None = Field(
        default=None,
        ge=0,
        description="The canary's value may be at most this many times stable's, measured over "
        "the same window (e.g. 1.2 for latency). Stable at 0 allows the canary only 0.",
    )
    max_increase_over_stable: float | None = Field(
        default=None,
        ge=0,
        description="The canary's value may exceed stable's, measured over the same window, by "
        "at most this much (e.g. 0.01 for an error rate).",
    )
    samples_query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL returning how many requests the measurement rests on (templated "
        "like query). Below analysis.minSamples the measurement is Inconclusive.",
    )

    @model_validator(mode="after")
    def _named_after_the_check(self) -> AnalysisMetric:
        if self.name is None and self.check is not None:
            self.name = self.check.value
        return self

    @property
    def metric_name(self) -> str:
        """The name this metric is reported under."""
        return self.name or (self.check.value if self.check else "")

    @property
    def relative(self) -> bool:
        """Whether the canary is compared with stable."""
        return self.max_ratio_to_stable is not None or self.max_increase_over_stable is not None


def _metric_name(var: str) -> str:
    """CEL for the name a metric is reported under (its name, else its check)."""
    return f"(has({var}.name) ? {var}.name : (has({var}.check) ? {var}.check : ''))"


class AnalysisSpec(ApiModel):
    """Automated judgement of a canary by metrics."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.metrics.all(a, self.metrics.exists_one(b, "
                    f"{_metric_name('b')} == {_metric_name('a')}))",
                    "message": "metric names must be unique (a check without a name is named "
                    "after the check): name the second one",
                    "fieldPath": ".metrics",
                }
            ]
        }
    )

    interval: Duration = Field(default="1m", description="Time between measurements.")
    window: Duration = Field(
        default="2m",
        description="The range the built-in checks' rates and quantiles cover ({{window}} in "
        "queries); at least four scrape intervals, so that every series has samples in it.",
    )
    failure_limit: int = Field(
        default=1,
        ge=0,
        description="Failed measurements tolerated; one more rolls the canary back.",
    )
    min_samples: int = Field(
        default=0,
        ge=0,
        description="Fewest samples (requests in the window) a measurement needs, on each side "
        "when compared with stable. With fewer, or with no data at all, it is Inconclusive: the "
        "rollout pauses and never rolls back by itself.",
    )
    prometheus: PrometheusProvider = Field(description="The Prometheus server to query.")
    metrics: list[AnalysisMetric] = Field(
        min_length=1,
        max_length=16,
        description="Metrics that must all pass for the canary to go on.",
    )


class GatewayAPIRouting(ApiModel):
    """Traffic split through a Gateway API HTTPRoute."""

    http_route: str = Field(
        min_length=1,
        alias="httpRoute",
        description="Name of an HTTPRoute in the same namespace; Slipway sets the weights of its "
        "backendRefs to <name>-stable and <name>-canary.",
    )


class TrafficRouting(ApiModel):
    """How traffic is split. Empty: by the ratio of Ready replicas behind Service <name>."""

    gateway_api: GatewayAPIRouting | None = Field(
        default=None, alias="gatewayAPI", description="Split through a Gateway API HTTPRoute."
    )


class RolloutSpec(ApiModel):
    """How a new revision is rolled out."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.steps) || "
                    "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
                    "message": "setWeight must not decrease from one step to the next",
                    "fieldPath": ".steps",
                },
                {
                    "rule": "!(string(self.maxSurge) in ['0', '0%'] "
                    "&& string(self.maxUnavailable) in ['0', '0%'])",
                    "message": "maxSurge and maxUnavailable must not both be zero: the rollout "
                    "could never make progress",
                    "fieldPath": ".maxSurge",
                },
            ]
        }
    )

    strategy: Strategy = Field(
        default=Strategy.ROLLING,
        description="Rolling: switch to the new revision once it is Ready. Canary: go through "
        "steps, with analysis.",
    )
    steps: list[CanaryStep] = Field(
        default_factory=list,
        max_length=64,
        description="Canary steps, in order. Empty: promote as soon as the canary is Ready.",
    )
    analysis: AnalysisSpec | None = Field(
        default=None, description="Metrics that judge the canary while it runs."
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=1,
        le=MAX_WAIT_SECONDS,
        description="A canary that is not Ready within this many seconds of a step has failed.",
    )
    auto_rollback: bool = Field(
        default=True,
        description="Roll a failed canary back by itself. false: stop (Degraded) and wait.",
    )
    max_surge: IntOrPercent = Field(
        default="25%",
        description="Extra pods above replicas allowed while the revisions overlap.",
    )
    max_unavailable: IntOrPercent = Field(
        default=0,
        description="Ready pods below replicas allowed while the revisions overlap (e.g. for "
        "GPU-bound models with no room to surge).",
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Seconds the old revision keeps serving after promotion before it scales "
        "to zero.",
    )
    traffic_routing: TrafficRouting | None = Field(
        default=None, description="How traffic is split between stable and canary."
    )


class PodMonitorSpec(ApiModel):
    """A prometheus-operator PodMonitor that scrapes the serving pods' metrics endpoints."""

    enabled: bool = Field(
        default=True,
        description="Create the PodMonitor when the cluster has the PodMonitor CRD "
        "(monitoring.coreos.com/v1) and the operator is allowed to (chart: podMonitors.enabled).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels of the PodMonitor, e.g. the one your Prometheus selects "
        "PodMonitors by (release: prometheus).",
    )
    interval: Duration | None = Field(
        default=None, description="Scrape interval. Empty: the Prometheus's own."
    )


class MonitoringSpec(ApiModel):
    """How the serving pods' own metrics are scraped."""

    pod_monitor: PodMonitorSpec = Field(
        default_factory=PodMonitorSpec,
        description="A PodMonitor for the model's pods, with the revision and track labels.",
    )


class ServingSpec(ApiModel):
    """Everything that shapes a serving pod. Its hash is the revision."""

    model: ModelSpec
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    template: PodTemplate = Field(default_factory=PodTemplate)


class ModelDeploymentSpec(ApiModel):
    """The desired state of a served model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.model.format in "
                    + str(list(PRESET_FORMATS))
                    + " || (has(self.runtime) && has(self.runtime.image)"
                    " && self.runtime.image != '')",
                    "message": "runtime.image is required when model.format has no preset "
                    "(presets: " + ", ".join(PRESET_FORMATS) + ")",
                    "fieldPath": ".runtime.image",
                    "reason": "FieldValueRequired",
                },
                {
                    "rule": "self.model.format in "
                    + str(list(PRESET_FORMATS))
                    + " || !has(self.rollout) || !has(self.rollout.analysis)"
                    " || self.rollout.analysis.metrics.all(m, !has(m.check) || ("
                    "has(self.runtime) && has(self.runtime.metrics) && (m.check == 'error-rate'"
                    " ? has(self.runtime.metrics.requests) && has(self.runtime.metrics.errors)"
                    " : has(self.runtime.metrics.latency))))",
                    "message": "a built-in check on a server without a preset reads the series "
                    "named in runtime.metrics: error-rate needs runtime.metrics.requests and "
                    "runtime.metrics.errors, the latency checks runtime.metrics.latency",
                    "fieldPath": ".runtime.metrics",
                    "reason": "FieldValueRequired",
                },
                {
                    # the delay left empty is the default one: a grace period shorter than that
                    # would kill a pod still in its preStop sleep
                    "rule": "!has(self.template)"
                    " || !has(self.template.terminationGracePeriodSeconds)"
                    " || self.template.terminationGracePeriodSeconds > "
                    "(has(self.runtime) && has(self.runtime.shutdownDelaySeconds)"
                    f" ? self.runtime.shutdownDelaySeconds : {DEFAULT_SHUTDOWN_DELAY_SECONDS})",
                    "message": "template.terminationGracePeriodSeconds must be greater than "
                    f"runtime.shutdownDelaySeconds (default {DEFAULT_SHUTDOWN_DELAY_SECONDS}): "
                    "the server needs time to stop after the delay",
                    "fieldPath": ".template.terminationGracePeriodSeconds",
                },
            ]
        }
    )

    model: ModelSpec = Field(description="The model to serve.")
    runtime: RuntimeSpec = Field(
        default_factory=RuntimeSpec, description="The server that serves it."
    )
    replicas: int = Field(
        default=1,
        ge=0,
        description="Serving pods. The scale subresource: kubectl scale and HPAs set it.",
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="Requests and limits of the server container, nvidia.com/gpu included.",
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Create an HPA that scales this ModelDeployment."
    )
    template: PodTemplate = Field(
        default_factory=PodTemplate, description="Pod-level extras for the serving pods."
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="How new revisions are rolled out."
    )
    revision_history_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Old revisions kept (scaled to zero) for an instant undo.",
    )
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="How the serving pods' own metrics are scraped (a PodMonitor).",
    )

    def serving(self) -> ServingSpec:
        """The part of the spec that shapes a serving pod (and so decides the revision)."""
        return ServingSpec(
            model=self.model, runtime=self.runtime, resources=self.resources, template=self.template
        )
