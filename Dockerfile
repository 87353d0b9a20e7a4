# The operator image: one Python process, its locked runtime dependencies, nothing else.
#
# The base is pinned by digest (python:3.11-slim-bookworm as published on Docker Hub);
# refresh it with `docker buildx imagetools inspect python:3.11-slim-bookworm` and
# update both FROM lines together. Dependencies come from requirements.lock (hashed,
# `make lock`); the build stage makes a virtualenv, the final stage copies only that.
ARG BASE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/aim
COPY requirements.lock ./
RUN /opt/aim/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY aim_controller ./aim_controller
# The project on top of the locked set: nothing resolved again. Then no pip, no
# setuptools, no wheel in what is copied on (nothing installs at runtime).
RUN /opt/aim/bin/pip install --no-deps . \
 && /opt/aim/bin/python -m pip uninstall --yes pip setuptools wheel \
 && /opt/aim/bin/python -m compileall -q /opt/aim

FROM ${BASE}
# The base's own pip goes too: the final image has no installer at all.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /usr/local/bin/pip* /root/.cache
COPY --from=build /opt/aim /opt/aim
ENV PATH=/opt/aim/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Non-root (the Deployment also sets runAsNonRoot and a read-only root filesystem;
# the operator writes nothing to disk, the cache commands write only to /cache).
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["aim-controller"]
