# syntax=docker/dockerfile:1
#
# segstream container image: the `segstream` command, run as an unprivileged user.
#
#   docker build -t segstream .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=host:9092 segstream topics create
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=host:9092 -p 9464:9464 \
#       -v segstream-state:/var/lib/segstream segstream            # a worker (the default)
#
# docker-compose.yml next to this file runs it together with a Kafka broker.
# tests/deploy/test_compose.py checks this file (base image, USER, ENTRYPOINT, CMD, ENV).

# ---------------------------------------------------------------------------- build
# Builds a virtualenv in /opt/segstream; the compiler stays in this stage, out of the
# final image (it is only needed for a dependency without a wheel for the platform, so
# its version is not pinned).
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/segstream
ENV PATH=/opt/segstream/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall
# them (this layer is rebuilt only when pyproject.toml changes).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself (.dockerignore keeps .venv, .git, .local, tests, ... out).
COPY . .
RUN pip install --no-deps . \
    && segstream --help > /dev/null

# -------------------------------------------------------------------------- runtime
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="segstream" \
      org.opencontainers.image.description="Real-time customer segmentation on Apache Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"

# NUMBA_CACHE_DIR: the models' compiled kernels (models/learn/kernels.py) are compiled
# when a worker starts (~3 s) and cached there; /tmp is writable here and in the
# Kubernetes manifests (an emptyDir under a read-only root filesystem).
ENV PATH=/opt/segstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/segstream-numba \
    SEGSTREAM_STATE_DIR=/var/lib/segstream \
    SEGSTREAM_METRICS_HOST=0.0.0.0 \
    SEGSTREAM_METRICS_PORT=9464

# A fixed, non-root uid/gid so a bind-mounted state directory can be chowned to match.
RUN groupadd --system --gid 10001 segstream \
    && useradd --system --uid 10001 --gid segstream --home-dir /var/lib/segstream \
       --no-create-home --shell /usr/sbin/nologin segstream \
    && mkdir -p /var/lib/segstream \
    && chown segstream:segstream /var/lib/segstream

COPY --from=build /opt/segstream /opt/segstream

# Numeric, so runtimes can verify it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
WORKDIR /var/lib/segstream

# Per-partition RocksDB stores (SEGSTREAM_STATE_DIR); keep them on a volume so a restarted
# worker resumes from its local state instead of starting empty.
VOLUME ["/var/lib/segstream"]

# Prometheus metrics of `segstream worker` (SEGSTREAM_METRICS_PORT, /metrics).
EXPOSE 9464

# No HEALTHCHECK here: the same image also runs one-shot commands (topics create,
# simulate, watch) that serve no metrics. docker-compose.yml gives the worker one.

ENTRYPOINT ["segstream"]
CMD ["worker"]
