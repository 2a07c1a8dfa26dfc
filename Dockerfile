# tokengate gateway image.
#
#   docker build -t tokengate:0.1.0 .
#   docker run --rm -p 8000:8000 -p 8100:8100 tokengate:0.1.0
#   docker run --rm -p 8000:8000 -e TOKENGATE_WORKERS=2 -v "$PWD/kong.yaml:/etc/tokengate/kong.yaml:ro" tokengate:0.1.0
#
# Settings come from TOKENGATE_* variables (see ENV below), so `docker run IMAGE --flag value`
# adds flags without repeating the defaults. Change ports with the variables, not flags: the
# HEALTHCHECK reads TOKENGATE_STATUS_LISTEN too.

ARG PYTHON_VERSION=3.12

# Build stage: the project and its dependencies into a virtualenv that is copied whole into the
# runtime stage, so pip, setuptools and the build's caches stay behind.
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tokengate
WORKDIR /src
# pyproject.toml names README.md as the package's readme, so the build needs it.
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
# Bytecode is compiled here (pip's default): the runtime root filesystem may be read-only.
# constraints.txt: the dependency versions the test suite passed with.
RUN /opt/tokengate/bin/pip install -c constraints.txt . \
    && /opt/tokengate/bin/pip uninstall --yes pip

FROM python:${PYTHON_VERSION}-slim
# A fixed numeric uid: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 tokengate \
    && useradd --system --uid 10001 --gid tokengate --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin tokengate
COPY --from=build /opt/tokengate /opt/tokengate
# Official Python images ship the standard library without bytecode, and a read-only container
# could not cache it: importing the gateway once here compiles the modules it uses, so that
# no process (each worker is one) compiles them again at every start.
RUN /opt/tokengate/bin/python -c "import tokengate.cli"
# The default config (owned by root, read-only to the gateway); mount your own over it.
COPY config/kong.yaml /etc/tokengate/kong.yaml
# Inside a container the gateway must listen on every interface to be reachable at all.
# (DL3064 mistakes TOKENGATE_* for secrets: these are settings.)
# hadolint ignore=DL3064
ENV PATH=/opt/tokengate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOKENGATE_CONFIG=/etc/tokengate/kong.yaml \
    TOKENGATE_LISTEN=0.0.0.0:8000 \
    TOKENGATE_STATUS_LISTEN=0.0.0.0:8100
USER 10001:10001
# 8000: proxy; 8100: status API (/healthz, /readyz, /metrics).
EXPOSE 8000 8100
# The slim image has no curl. Kubernetes ignores HEALTHCHECK and uses the probes in
# deploy/kubernetes/ instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ['TOKENGATE_STATUS_LISTEN'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
# Exec form: the gateway is PID 1 and receives SIGTERM itself, then drains and exits 0.
ENTRYPOINT ["tokengate", "gateway"]
