# syntax=docker/dockerfile:1
#
# cdm-exporter container image.
#
#   docker build -t cdm-exporter .
#   docker run -p 9792:9792 -v "$PWD/config.yml:/etc/cdm-exporter/config.yml:ro" cdm-exporter
#
# The demo (a simulated CDM API plus an exporter scraping it; nothing to configure). The image sets
# CDM_EXPORTER_WEB_LISTEN_ADDRESS=:9792 (and CDM_SIMULATOR_WEB_LISTEN_ADDRESS=:9796 for
# `simulate`), so serve, demo and simulate listen on every interface:
#
#   docker run --rm -p 9792:9792 cdm-exporter demo
#
# The HEALTHCHECK speaks plain HTTP to port 9792. With TLS in --web.config.file or another
# --web.listen-address port, override it (docker run --health-cmd ...) or disable it (--no-healthcheck).
# Podman keeps HEALTHCHECK only in Docker-format images: `podman build --format docker`.
#
# The base is the official Python image unless PYTHON_IMAGE names another: any image with Python
# 3.11+, its venv module and groupadd/useradd, such as Debian's own python3 and python3-venv
# packages (scripts/image-test builds such a base with mmdebstrap when no registry answers):
#
#   docker build --build-arg PYTHON_IMAGE=localhost/cdm-exporter-base:bookworm -t cdm-exporter .
#
# Both stages install into a virtual environment: Debian's python3 refuses installs into the
# system (PEP 668), and a venv under /opt behaves the same on every base.
#
# Behind a TLS-intercepting proxy the builder's pip needs that proxy's CA: make a bundle readable
# inside the build and name it, e.g. (podman)
#   podman build -v /etc/ssl/certs/ca-certificates.crt:/run/build-ca.crt:ro --build-arg PIP_CERT=/run/build-ca.crt .

ARG PYTHON_IMAGE=docker.io/library/python:3.12.10-slim-bookworm

# ---- build: turn the source into wheels (the project's and every dependency's) ----------------
FROM ${PYTHON_IMAGE} AS builder
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cdm_exporter/ cdm_exporter/
# --only-binary: every dependency must come as a wheel (all ship manylinux ones), so no compiler is
# ever needed; only the project itself is built from source.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --only-binary=:all: --wheel-dir /wheels .

# ---- run: only the installed wheels on the same base ------------------------------------------
FROM ${PYTHON_IMAGE}

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cdm-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Huawei Cloud CDM (Cloud Data Migration) jobs and clusters" \
      org.opencontainers.image.source="https://example.invalid/cdm-exporter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PATH="/opt/cdm-exporter/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CDM_EXPORTER_WEB_LISTEN_ADDRESS=:9792 \
    CDM_SIMULATOR_WEB_LISTEN_ADDRESS=:9796

# Install from the builder's wheels only (--no-index: nothing is fetched here); the bind mount keeps
# the wheel files themselves out of the image. The venv's pip (from ensurepip, offline) is removed
# afterwards: nothing installs at run time. Byte code is compiled at install time, so nothing needs
# writing at run time (the Kubernetes manifests use a read-only root file system).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python3 -m venv /opt/cdm-exporter \
    && /opt/cdm-exporter/bin/python -m pip install --no-cache-dir --no-index --find-links=/wheels \
       "cdm-exporter==${VERSION}" \
    && /opt/cdm-exporter/bin/python -m pip uninstall --yes --quiet pip setuptools \
    && groupadd --system --gid 10001 cdm-exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cdm-exporter

USER 10001:10001
EXPOSE 9792
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/opt/cdm-exporter/bin/python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9792/-/healthy', timeout=4).status != 200)"]

ENTRYPOINT ["cdm-exporter"]
CMD ["serve", "--config.file", "/etc/cdm-exporter/config.yml"]
