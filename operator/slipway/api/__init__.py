"""The ModelDeployment API: pydantic models that are the single source of truth."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from slipway.api.evaluation import (
    Compare,
    EvaluateStep,
    EvaluationData,
    EvaluationGate,
    EvaluationResult,
    Measure,
    SideResult,
)
from slipway.api.records import (
    ActionRecord,
    CanaryRecord,
    EndReason,
    HistoryRecord,
    Promotion,
    RegistryResolution,
    RevisionRecord,
)
from slipway.api.spec import (
    PRESET_FORMATS,
    AnalysisMetric,
    AnalysisSpec,
    ApprovalStep,
    AutoscalingSpec,
    CanaryStep,
    Check,
    GatewayAPIRouting,
    MlflowRegistry,
    ModelDeploymentSpec,
    ModelRegistry,
    ModelSpec,
    MonitoringSpec,
    PauseStep,
    PodMonitorSpec,
    PodTemplate,
    PrometheusProvider,
    Protocol,
    ResourceRequirements,
    RolloutSpec,
    RuntimeMetrics,
    RuntimeSpec,
    ServingSpec,
    Strategy,
    TrafficRouting,
)
from slipway.api.status import (
    AnalysisStatus,
    Approval,
    CanaryReason,
    CanaryState,
    CanaryStatus,
    Condition,
    ConditionType,
    EvaluationStatus,
    HistoryEntry,
    Measurement,
    ModelDeploymentStatus,
    Phase,
    RevisionPins,
    RevisionStatus,
    Verdict,
)
from slipway.api.storage import URI_SCHEMES, ModelStorage
from slipway.api.types import ApiModel, duration_seconds

# A ModelDeployment's children are named <name>-<revision> (10 hex characters) and <name>-canary:
# both must be DNS-1035 labels (a Service name starts with a letter), so a name has at most 52
# characters. The CRD refuses any other name at the door.
NAME_MAX_LENGTH = 63 - len("-") - 10
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class ObjectMeta(ApiModel):
    """The parts of metadata Slipway reads."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ModelDeployment(ApiModel):
    """A served model: one object, every child derived from it."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = "serving.slipway.dev/v1alpha1"
    kind: str = "ModelDeployment"
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = Field(default_factory=ModelDeploymentStatus)

    @classmethod
    def from_body(cls, body: Any) -> ModelDeployment:
        """Parse an object as the API server returns it (kopf body or plain dict)."""
        data = dict(body)
        data["metadata"] = dict(body.get("metadata") or {})
        data["status"] = dict(body.get("status") or {})
        return cls.model_validate(data)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def model_name(self) -> str:
        """The name the server publishes the model under."""
        return self.spec.model.name or self.metadata.name


__all__ = [
    "NAME_MAX_LENGTH",
    "NAME_PATTERN",
    "PRESET_FORMATS",
    "URI_SCHEMES",
    "ActionRecord",
    "AnalysisMetric",
    "AnalysisSpec",
    "AnalysisStatus",
    "ApiModel",
    "Approval",
    "ApprovalStep",
    "AutoscalingSpec",
    "CanaryReason",
    "CanaryRecord",
    "CanaryState",
    "CanaryStatus",
    "CanaryStep",
    "Check",
    "Compare",
    "Condition",
    "ConditionType",
    "EndReason",
    "EvaluateStep",
    "EvaluationData",
    "EvaluationGate",
    "EvaluationResult",
    "EvaluationStatus",
    "GatewayAPIRouting",
    "HistoryEntry",
    "HistoryRecord",
    "Measure",
    "Measurement",
    "MlflowRegistry",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelRegistry",
    "ModelSpec",
    "ModelStorage",
    "MonitoringSpec",
    "ObjectMeta",
    "PauseStep",
    "Phase",
    "PodMonitorSpec",
    "PodTemplate",
    "PrometheusProvider",
    "Promotion",
    "Protocol",
    "RegistryResolution",
    "ResourceRequirements",
    "RevisionPins",
    "RevisionRecord",
    "RevisionStatus",
    "RolloutSpec",
    "RuntimeMetrics",
    "RuntimeSpec",
    "ServingSpec",
    "SideResult",
    "Strategy",
    "TrafficRouting",
    "Verdict",
    "duration_seconds",
]
