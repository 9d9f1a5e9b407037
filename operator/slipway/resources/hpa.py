"""The HorizontalPodAutoscaler of a ModelDeployment: it scales the ModelDeployment itself."""

from __future__ import annotations

from typing import Any

from slipway import GROUP, KIND, VERSION
from slipway.api import ModelDeployment
from slipway.resources.metadata import child_labels, child_metadata


def desired_hpa(md: ModelDeployment) -> dict[str, Any] | None:
    """An autoscaling/v2 HPA `<name>` on md's scale subresource; None without spec.autoscaling.

    It targets the ModelDeployment, not a Deployment, so that Slipway keeps splitting the
    replicas it is given between the stable and the canary revision.
    """
    autoscaling = md.spec.autoscaling
    if autoscaling is None:
        return None
    labels = child_labels(md, md.model_name, md.spec.model.version)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(md, md.name, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": md.name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }
