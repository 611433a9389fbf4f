# syntax=docker/dockerfile:1
#
# cdm-exporter container image.
#
#   docker build -t cdm-exporter .
#   docker run -p 9792:9792 -v "$PWD/config.yml:/etc/cdm-exporter/config.yml:ro" cdm-exporter
#
# The demo (a simulated CDM API plus an exporter scraping it; nothing to configure). The image sets
# CDM_EXPORTER_WEB_LISTEN_ADDRESS=:9792, so serve and demo both listen on every interface:
#
#   docker run --rm -p 9792:9792 cdm-exporter demo
#
# The HEALTHCHECK speaks plain HTTP to port 9792. With TLS in --web.config.file or another
# --web.listen-address port, override it (docker run --health-cmd ...) or disable it (--no-healthcheck).

ARG PYTHON_IMAGE=python:3.12.10-slim-bookworm

# ---- build: turn the source into wheels (the project's and every dependency's) ----------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cdm_exporter/ cdm_exporter/
# All runtime dependencies ship binary wheels (manylinux), so no compiler is needed here either.
RUN pip wheel --wheel-dir /wheels .

# ---- run: only the installed wheels on a slim base ---------------------------------------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cdm-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Huawei Cloud CDM (Cloud Data Migration) jobs and clusters" \
      org.opencontainers.image.source="https://example.invalid/cdm-exporter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CDM_EXPORTER_WEB_LISTEN_ADDRESS=:9792

# Install from the builder's wheels only (--no-index: nothing is fetched here); the bind mount keeps
# the wheel files themselves out of the image. Byte code is compiled at install time, so nothing
# needs writing at run time (the Kubernetes manifests use a read-only root file system).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "cdm-exporter==${VERSION}" \
    && groupadd --system --gid 10001 cdm-exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cdm-exporter

USER 10001:10001
EXPOSE 9792
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9792/-/healthy', timeout=4).status != 200)"]

ENTRYPOINT ["cdm-exporter"]
CMD ["serve", "--config.file", "/etc/cdm-exporter/config.yml"]
