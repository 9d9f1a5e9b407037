"""How the model reaches the server: always at MODEL_DIR, read-only for the server.

- `pvc://CLAIM/sub/path`: the claim, mounted read-only (with subPath); no download.
- `s3://`, `gs://`, `hf://ORG/MODEL[@revision]`, `http(s)://`: an init container runs
  `slipway fetch URI MODEL_DIR` (the operator's own image) into an emptyDir with a size limit.
- `oci://IMAGE`: an image volume; the weights ship as an OCI artifact, with no download step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipway.api import URI_SCHEMES, ModelSpec

MODEL_DIR = "/mnt/models"
MODEL_VOLUME = "model"
FETCH_TMP_VOLUME = "fetch-tmp"
FETCH_TMP_DIR = "/tmp"
STORAGE_INITIALIZER = "storage-initializer"
DEFAULT_SIZE_LIMIT = "20Gi"
FETCHED_SCHEMES = ("s3", "gs", "hf", "http", "https")
# A fixed non-root uid: runAsNonRoot alone fails on images whose USER is a name, not a number.
FETCH_UID = 65532


@dataclass(frozen=True)
class ModelSource:
    """A parsed model URI: where the model lives and what the pod needs to reach it."""

    uri: str
    scheme: str
    reference: str  # everything after scheme://; for oci:// the image reference
    claim: str | None = None  # pvc:// only
    sub_path: str = ""  # pvc:// only: the path inside the claim, "" for its root

    @property
    def fetched(self) -> bool:
        """True when an init container downloads the model before the server starts."""
        return self.scheme in FETCHED_SCHEMES


def model_source(uri: str) -> ModelSource:
    """Parse spec.model.uri; a ValueError names the field and what would be right."""
    scheme, separator, reference = uri.partition("://")
    if not separator or scheme not in URI_SCHEMES or not reference:
        raise ValueError(
            f"spec.model.uri {uri!r} must start with one of "
            f"{', '.join(s + '://' for s in URI_SCHEMES)} and name something after it"
        )
    if scheme != "pvc":
        return ModelSource(uri=uri, scheme=scheme, reference=reference)
    claim, _, sub_path = reference.partition("/")
    sub_path = sub_path.strip("/")
    if not claim:
        raise ValueError(f"spec.model.uri {uri!r} must name a claim: pvc://CLAIM[/path]")
    if ".." in sub_path.split("/"):
        raise ValueError(f"spec.model.uri {uri!r} must not leave the claim with '..'")
    return ModelSource(uri=uri, scheme=scheme, reference=reference, claim=claim, sub_path=sub_path)


@dataclass(frozen=True)
class StorageWiring:
    """What a pod needs to find the model at MODEL_DIR."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    server_mount: dict[str, Any] = field(default_factory=dict)


def storage_wiring(
    model: ModelSpec, operator_image: str, verify_sha256: str | None = None
) -> StorageWiring:
    """Volumes, init containers and the server's read-only mount for `model.uri`; a fetched model
    is verified against `verify_sha256` when model.storage.sha256 does not say what to expect."""
    source = model_source(model.uri)
    server_mount: dict[str, Any] = {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}
    if source.scheme == "pvc":
        if source.sub_path:
            server_mount["subPath"] = source.sub_path
        claim = {"claimName": source.claim, "readOnly": True}
        return StorageWiring(
            volumes=[{"name": MODEL_VOLUME, "persistentVolumeClaim": claim}],
            server_mount=server_mount,
        )
    if source.scheme == "oci":
        image = {"reference": source.reference, "pullPolicy": "IfNotPresent"}
        return StorageWiring(
            volumes=[{"name": MODEL_VOLUME, "image": image}], server_mount=server_mount
        )
    size_limit = str(model.storage.size_limit) if model.storage else DEFAULT_SIZE_LIMIT
    return StorageWiring(
        volumes=[
            {"name": MODEL_VOLUME, "emptyDir": {"sizeLimit": size_limit}},
            {"name": FETCH_TMP_VOLUME, "emptyDir": {}},
        ],
        init_containers=[storage_initializer(model, operator_image, verify_sha256=verify_sha256)],
        server_mount=server_mount,
    )


def storage_initializer(
    model: ModelSpec,
    operator_image: str,
    dest: str = MODEL_DIR,
    volume: str = MODEL_VOLUME,
    verify_sha256: str | None = None,
) -> dict[str, Any]:
    """The init container that downloads `model.uri` into `dest` (the volume `volume`, by default
    the model's at MODEL_DIR) with `slipway fetch`, checking model.storage.sha256 (or, without
    it, `verify_sha256`: the digest a revision recorded, pinned for an undo)."""
    args = ["fetch", model.uri, dest]
    expected = (model.storage.sha256 if model.storage else None) or verify_sha256
    if expected:
        args += ["--sha256", expected]
    container: dict[str, Any] = {
        "name": STORAGE_INITIALIZER,
        "image": operator_image,
        "command": ["slipway"],
        "args": args,
        # the root filesystem is read-only: caches (huggingface_hub, fsspec) go to the tmp volume
        "env": [
            {"name": "HOME", "value": FETCH_TMP_DIR},
            {"name": "TMPDIR", "value": FETCH_TMP_DIR},
        ],
        "volumeMounts": [
            {"name": volume, "mountPath": dest},
            {"name": FETCH_TMP_VOLUME, "mountPath": FETCH_TMP_DIR},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": FETCH_UID,
            "runAsGroup": FETCH_UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if model.storage and model.storage.secret_name:
        # optional: false, so a missing Secret stops the pod instead of fetching anonymously
        container["envFrom"] = [
            {"secretRef": {"name": model.storage.secret_name, "optional": False}}
        ]
    return container
