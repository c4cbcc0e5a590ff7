# syntax=docker/dockerfile:1
# One image for the operator and for every phase Job it starts (preflight, backup, apply,
# postflight, rollback, restore): the migrate-safe CLI with its operator extra, plus the
# PostgreSQL client tools the harness runs (pg_dump, pg_restore, psql).
#
#   docker build -t migrate-safe:0.1.0 .
#   buildah bud --layers -t migrate-safe:0.1.0 .        # no daemon; CI builds it this way
#
# Behind a proxy that intercepts TLS, add --secret id=ca-certificates,src=<your CA bundle>
# (see the builder stage). CI passes a Debian-made base with --build-arg PYTHON_IMAGE=…
# (devcluster/image.py); the default below is what users build from.
#
# Python: the base image's minor version is the lowest that pyproject.toml's requires-python
# allows (tests/unit/packaging/test_dockerfile.py keeps them in step). For reproducible
# production builds, pin the base images by digest as well (python:3.11.14-slim-trixie@sha256:…).

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# ---- builder: a wheel of this checkout, installed with its dependencies into a venv ----------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# binutils: to strip the debug information pglast's parser ships with (24 MB of 28 MB).
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Behind a proxy that intercepts TLS, pip needs the proxy's CA: pass it as a build secret
# (README, "The image"), which is mounted for the RUN that names it and kept in no layer:
#   docker build --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt .
# The dependencies first, from pyproject.toml alone: a change of the code reuses this layer.
# psycopg[binary] and pglast ship manylinux wheels: no compiler is needed here either.
# Leaner: kubernetes >= 37 also ships an asyncio copy of its client (kubernetes.aio, 64 MB) that
# migrate-safe never imports.
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca-certificates,target=/run/secrets/ca-certificates.crt \
    if [ -s /run/secrets/ca-certificates.crt ]; then \
      export PIP_CERT=/run/secrets/ca-certificates.crt; \
    fi \
 && python -m venv /opt/migrate-safe \
 && /opt/migrate-safe/bin/pip install --upgrade pip \
 && python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["operator"]))' >/tmp/requirements \
 && /opt/migrate-safe/bin/pip install --requirement /tmp/requirements \
 && strip --strip-debug /opt/migrate-safe/lib/python3*/site-packages/pglast/*.so \
 && rm -rf /opt/migrate-safe/lib/python3*/site-packages/kubernetes/aio
# Then the code: a wheel of this checkout (its build backend comes from the index, hence the
# secret again), installed with the operator extra. The runtime needs no pip (its root
# filesystem is read-only).
COPY README.md ./
COPY operator/ operator/
RUN --mount=type=secret,id=ca-certificates,target=/run/secrets/ca-certificates.crt \
    if [ -s /run/secrets/ca-certificates.crt ]; then \
      export PIP_CERT=/run/secrets/ca-certificates.crt; \
    fi \
 && /opt/migrate-safe/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/migrate-safe/bin/pip install "$(ls /wheels/migrate_safe-*.whl)[operator]" \
 && /opt/migrate-safe/bin/pip uninstall --quiet --yes pip \
 && /opt/migrate-safe/bin/migrate-safe --version

# ---- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# PostgreSQL client tools from Debian trixie itself (postgresql-client-17): signed by Debian,
# patched by Debian's security updates, no third-party apt repository or key in the image.
# pg_dump must be of a major version >= the server's; 17 dumps servers 9.2 to 17, which covers
# every server migrate-safe supports from 13 to 17 (docs/compatibility.md). For PostgreSQL 18 servers build with PGDG's client:
# add apt.postgresql.org's trixie-pgdg repository and --build-arg PG_MAJOR=18.
ARG PG_MAJOR=17
RUN apt-get update \
 && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin migrate-safe
# Owned by root and not writable by the runtime user: the code cannot be changed at run time.
COPY --from=builder --chown=root:root /opt/migrate-safe /opt/migrate-safe
ENV PATH=/opt/migrate-safe/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MIGRATE_SAFE_LOG_DIR=/tmp/migrate-safe/logs
# The root filesystem is read-only in the chart and in the operator's Jobs: everything written
# goes to /tmp (an emptyDir) or to the backup volume.
WORKDIR /tmp
# A numeric USER, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# No HEALTHCHECK: Kubernetes ignores Docker's HEALTHCHECK; the chart's livenessProbe calls the
# operator's /healthz, and Job pods are judged by their exit code.
ENTRYPOINT ["migrate-safe"]
CMD ["--help"]
