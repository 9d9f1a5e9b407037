# syntax=docker/dockerfile:1
# The Slipway operator image: `slipway run` as a non-root user on a read-only root filesystem.
# It is also the image of the init containers that fetch models (`--operator-image`).
# Not built in this repository's CI (no Docker engine there); `make e2e-kind` builds it.

# Pinned base: Python 3.11 on Debian 12. Pin by digest for reproducible builds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/slipway
WORKDIR /src
# Only what the package needs; the same constraints file as `make install`, runtime extras only.
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
RUN /opt/slipway/bin/pip install -c constraints.txt ".[storage]" \
    && /opt/slipway/bin/slipway --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="slipway" \
      org.opencontainers.image.description="A Kubernetes operator that serves ML models" \
      org.opencontainers.image.licenses="Apache-2.0"
# The same path as in the build stage: the venv's scripts point at /opt/slipway/bin/python.
COPY --from=build /opt/slipway /opt/slipway
RUN groupadd --gid 65532 slipway \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin slipway
ENV PATH=/opt/slipway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["slipway"]
CMD ["run", "--all-namespaces"]
