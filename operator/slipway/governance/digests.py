"""Which bytes served: the model and image digests a revision's pods report, read from their status.

- The model: `slipway fetch` writes the digest of what it placed as its init container's
  termination message (slipway/storage/report.py), which the kubelet copies into
  `initContainerStatuses[].state.terminated.message`.
- The server image: the container runtime's `containerStatuses[].imageID` (repo@sha256:...).
- A pvc:// model is mounted, not fetched: nothing hashes it. An oci:// model is an image volume:
  the kubelet reports the image it mounted (`volumeMounts[].volumeStatus.image.imageRef`), a
  digest of the OCI manifest rather than of the model's files.

Pure: pods in, facts out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slipway.resources.metadata import REVISION_LABEL
from slipway.resources.pins import SERVER_CONTAINER
from slipway.resources.storage import MODEL_VOLUME, STORAGE_INITIALIZER
from slipway.storage.report import digest_in_report

SHA256_PREFIX = "sha256:"


@dataclass(frozen=True)
class PodDigests:
    """What one pod reports about the bytes it serves (None: not reported)."""

    pod: str
    model: str | None = None  # sha256:HEX, from the fetch init container
    image: str | None = None  # the server's imageID
    model_image: str | None = None  # an oci:// model's image, as the kubelet mounted it


@dataclass(frozen=True)
class RevisionDigests:
    """The reports of one revision's pods."""

    pods: tuple[PodDigests, ...]

    def models(self) -> dict[str, list[str]]:
        """Each reported model digest and the pods that report it."""
        return _grouped(self.pods, "model")

    def images(self) -> dict[str, list[str]]:
        return _grouped(self.pods, "image")

    def model_images(self) -> dict[str, list[str]]:
        return _grouped(self.pods, "model_image")


def _grouped(pods: Sequence[PodDigests], field: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for pod in pods:
        value = getattr(pod, field)
        if value:
            grouped.setdefault(value, []).append(pod.pod)
    return grouped


def pod_digests(pod: Mapping[str, Any]) -> PodDigests:
    """What one pod's status says about the model and the image it serves."""
    status = pod.get("status") or {}
    model = image = model_image = None
    for cs in status.get("initContainerStatuses") or ():
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if cs.get("name") == STORAGE_INITIALIZER and terminated.get("exitCode") == 0:
            model = digest_in_report(terminated.get("message"))
    for cs in status.get("containerStatuses") or ():
        if cs.get("name") != SERVER_CONTAINER:
            continue
        image = cs.get("imageID") or None
        for mount in cs.get("volumeMounts") or ():
            volume_image = ((mount.get("volumeStatus") or {}).get("image")) or {}
            if mount.get("name") == MODEL_VOLUME and volume_image.get("imageRef"):
                model_image = str(volume_image["imageRef"])
    name = str((pod.get("metadata") or {}).get("name", ""))
    return PodDigests(pod=name, model=model, image=image, model_image=model_image)


def observed_digests(pods: Sequence[Mapping[str, Any]]) -> dict[str, RevisionDigests]:
    """The reports of every pod, by the revision label of the pod."""
    by_revision: dict[str, list[PodDigests]] = {}
    for pod in pods:
        revision = ((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL)
        if revision:
            by_revision.setdefault(revision, []).append(pod_digests(pod))
    return {
        revision: RevisionDigests(tuple(sorted(reports, key=lambda d: d.pod)))
        for revision, reports in by_revision.items()
    }


def digest_hex(digest: str | None) -> str | None:
    """The 64 hex digits of sha256:HEX (what `slipway fetch --sha256` takes)."""
    if digest and digest.startswith(SHA256_PREFIX):
        return digest[len(SHA256_PREFIX) :]
    return None


def unknowable(uri: str, model_images: Mapping[str, list[str]]) -> str | None:
    """Why the model digest of a revision serving `uri` cannot be known, if it cannot."""
    scheme = uri.partition("://")[0]
    if scheme == "pvc":
        return (
            "pvc:// is mounted, not fetched: Slipway does not hash the claim's files, and they "
            "may change while the revision serves"
        )
    if scheme == "oci":
        mounted = ", ".join(sorted(model_images)) or "not reported yet"
        return (
            "oci:// is an image volume, not fetched: Slipway does not hash its files; the "
            f"kubelet mounted {mounted} (pin the image by digest to know its bytes)"
        )
    return None
