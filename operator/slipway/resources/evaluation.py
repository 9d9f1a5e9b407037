"""The Job of an evaluation step: `slipway evaluate` from the operator's image. Pure.

The Job belongs to the ModelDeployment (an owner reference: deleted with it) and carries the
contract labels with the canary's revision; its pod does not carry the ModelDeployment's label,
because Services, the scale subresource and the HPA select the serving pods by it. The evaluation
set is fetched by `slipway fetch` in an init container (or mounted from its claim); the numbers
come back as the evaluation container's termination message, never through a shared volume.
"""

from __future__ import annotations

from typing import Any

from slipway import GROUP
from slipway.api import ModelDeployment, ModelSpec, Protocol, duration_seconds
from slipway.api.evaluation import EvaluateStep
from slipway.resources.metadata import child_labels, child_metadata
from slipway.resources.names import DNS_LABEL_MAX, fitted, service_name
from slipway.resources.storage import (
    FETCH_TMP_VOLUME,
    FETCH_UID,
    model_source,
    storage_initializer,
)

EVALUATE_CONTAINER = "evaluate"  # the container analysis/evaluation.py reads
EVALUATION_LABEL = f"{GROUP}/evaluation"
DATA_VOLUME = "evaluation-data"
DATA_DIR = "/data"
# a finished Job stays this long for people to read (its owner deletes it before, or with it)
FINISHED_JOB_SECONDS = 86400
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


def evaluation_job_name(md: ModelDeployment, canary_revision: str, step: int, attempt: int) -> str:
    """`<name>-eval-<canary revision>-<step>-<attempt>`, fitted to 63 characters (the Job's name
    is a label value of its pods). Each evaluation of a canary has a Job of its own."""
    return fitted(md.name, f"-eval-{canary_revision}-{step}-{attempt}", DNS_LABEL_MAX)


def service_url(md: ModelDeployment, track: str, port: int) -> str:
    """The in-cluster URL of Service `<name>-<track>`."""
    return f"http://{service_name(md.name, track)}.{md.namespace}.svc.cluster.local:{port}"


def desired_evaluation_job(
    md: ModelDeployment,
    step: int,
    attempt: int,
    evaluate: EvaluateStep,
    canary_revision: str,
    operator_image: str,
    canary_url: str,
    stable_url: str,
    protocol: Protocol,
) -> dict[str, Any]:
    """The Job that sends `evaluate.data` to `canary_url` and `stable_url` for step `step`."""
    name = evaluation_job_name(md, canary_revision, step, attempt)
    labels = {
        **child_labels(md, md.model_name, md.spec.model.version, canary_revision),
        EVALUATION_LABEL: str(step),
    }
    data_path, volumes, init_containers = _data(evaluate, operator_image)
    args = [
        "evaluate",
        "--data",
        data_path,
        "--canary",
        canary_url,
        "--stable",
        stable_url,
        "--model",
        md.model_name,
        "--protocol",
        protocol.value if protocol is Protocol.OPENAI else Protocol.V2.value,
        "--compare",
        evaluate.compare.value,
        "--tolerance",
        f"{evaluate.tolerance:g}",
        "--concurrency",
        str(evaluate.concurrency),
        "--request-timeout",
        f"{duration_seconds(evaluate.request_timeout):g}",
    ]
    if evaluate.limit is not None:
        args += ["--limit", str(evaluate.limit)]
    if evaluate.output is not None:
        args += ["--output", evaluate.output]
    container: dict[str, Any] = {
        "name": EVALUATE_CONTAINER,
        "image": operator_image,
        "command": ["slipway"],
        "args": args,
        "resources": RESOURCES,
        "securityContext": _restricted(),
        "volumeMounts": [{"name": DATA_VOLUME, "mountPath": DATA_DIR, "readOnly": True}],
        # the numbers come back through the termination message (at most 4096 bytes)
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    template = md.spec.template
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # it talks to the model's Services only, never to the API server
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": FETCH_UID,
            "runAsGroup": FETCH_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if init_containers:
        pod["initContainers"] = init_containers
    # scheduled where the serving pods may be (a node pool of its own, a tainted node)
    if template.node_selector:
        pod["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        pod["tolerations"] = [dict(t) for t in template.tolerations]
    if template.affinity:
        pod["affinity"] = dict(template.affinity)
    if template.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": ref.name} for ref in template.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(md, name, labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(duration_seconds(evaluate.timeout))),
            "ttlSecondsAfterFinished": FINISHED_JOB_SECONDS,
            "template": {"metadata": {"labels": {EVALUATION_LABEL: name}}, "spec": pod},
        },
    }


def _data(
    evaluate: EvaluateStep, operator_image: str
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Where the evaluation set is in the pod, its volumes, and the init container fetching it."""
    source = model_source(evaluate.data.uri)
    if source.scheme == "pvc":
        claim = {"claimName": source.claim, "readOnly": True}
        path = f"{DATA_DIR}/{source.sub_path}" if source.sub_path else DATA_DIR
        return path, [{"name": DATA_VOLUME, "persistentVolumeClaim": claim}], []
    if source.scheme == "oci":
        image = {"reference": source.reference, "pullPolicy": "IfNotPresent"}
        return DATA_DIR, [{"name": DATA_VOLUME, "image": image}], []
    as_model = ModelSpec(
        version="evaluation", uri=evaluate.data.uri, format="data", storage=evaluate.data.storage
    )
    size = str(evaluate.data.storage.size_limit) if evaluate.data.storage else "1Gi"
    fetch = storage_initializer(as_model, operator_image, DATA_DIR, DATA_VOLUME)
    volumes = [
        {"name": DATA_VOLUME, "emptyDir": {"sizeLimit": size}},
        {"name": FETCH_TMP_VOLUME, "emptyDir": {}},
    ]
    return DATA_DIR, volumes, [fetch]


def _restricted() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
