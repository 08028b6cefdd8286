# syntax=docker/dockerfile:1
#
# RedSeg API image: the FastAPI service with the bundled model.
#
#   docker build -t redseg:cpu .                                 # CPU torch (default)
#   docker build --build-arg TORCH=cuda -t redseg:cuda .         # CUDA torch (GPU hosts:
#                                                                #   NVIDIA driver + Container Toolkit)
#
# Build arguments
#   BASE_IMAGE       base of both stages. Default python:3.11-slim; any Debian-like image
#                    works: when it has no python3 (e.g. a debootstrap-made Debian), python3
#                    and venv are apt-installed (Debian bookworm: Python 3.11).
#   TORCH            cpu | cuda. cpu: torch==TORCH_VERSION+cpu from TORCH_CPU_INDEX_URL
#                    (and/or PIP_FIND_LINKS); cuda: PyPI's default torch wheel, which
#                    carries the CUDA libraries.
#   TORCH_VERSION    default 2.13.0 (pyproject allows torch>=2.4,<=2.13.0).
#   TORCH_CPU_INDEX_URL  PyTorch's CPU wheel index; set it empty where that host is not
#                    reachable and give PIP_FIND_LINKS instead.
#   PIP_FIND_LINKS   optional local wheel directory, e.g. with podman:
#                    podman build -v /opt/wheels:/wheels:ro --build-arg PIP_FIND_LINKS=/wheels
#   PIP_INDEX_URL    optional PyPI mirror.
#   PIP_CERT         optional CA bundle for pip (behind a TLS-intercepting proxy), e.g.
#                    -v /etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro --build-arg PIP_CERT=/host-ca.crt
#
# Runtime: uvicorn on 0.0.0.0:8000 (UVICORN_HOST / UVICORN_PORT), as the non-root user
# `redseg`, model /app/checkpoints/redseg-default.safetensors (full width), or with
# REDSEG_CHECKPOINT=/app/checkpoints/redseg-fast.safetensors the quarter-width one, or another.
# All REDSEG_* settings can be overridden with -e / compose `environment:`.

ARG BASE_IMAGE=python:3.11-slim

# --------------------------------------------------------------------------- builder
FROM ${BASE_IMAGE} AS builder

ARG TORCH=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
ARG PIP_INDEX_URL=
ARG PIP_CERT=

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBIAN_FRONTEND=noninteractive

# python:*-slim has Python in /usr/local; a bare Debian base gets Debian's python3 + venv.
RUN if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip --version

ENV PATH=/opt/venv/bin:$PATH

# torch first: the largest and most stable layer.
RUN set -eu; \
    [ -n "$PIP_INDEX_URL" ] || unset PIP_INDEX_URL; \
    [ -n "$PIP_FIND_LINKS" ] || unset PIP_FIND_LINKS; \
    [ -n "$PIP_CERT" ] || unset PIP_CERT; \
    case "$TORCH" in \
      cpu)  if [ -n "$TORCH_CPU_INDEX_URL" ]; then \
                pip install --extra-index-url "$TORCH_CPU_INDEX_URL" "torch==${TORCH_VERSION}+cpu"; \
            else \
                pip install "torch==${TORCH_VERSION}+cpu"; \
            fi ;; \
      cuda) pip install "torch==${TORCH_VERSION}" ;; \
      *)    echo "TORCH must be cpu or cuda, got '$TORCH'" >&2; exit 2 ;; \
    esac; \
    python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# The rest of the runtime dependencies, read from pyproject.toml (the project itself is
# not installed: the app runs from /app so that the bundled checkpoints/ sit beside it).
COPY pyproject.toml /tmp/build/pyproject.toml
RUN set -eu; \
    [ -n "$PIP_INDEX_URL" ] || unset PIP_INDEX_URL; \
    [ -n "$PIP_FIND_LINKS" ] || unset PIP_FIND_LINKS; \
    [ -n "$PIP_CERT" ] || unset PIP_CERT; \
    python -c "import tomllib; d = tomllib.load(open('/tmp/build/pyproject.toml', 'rb')); print('\n'.join(d['project']['dependencies']))" \
        > /tmp/build/requirements.txt; \
    if [ "$TORCH" = cuda ]; then sed -i -E '/^(openvino|nncf)/d' /tmp/build/requirements.txt; fi; \
    cat /tmp/build/requirements.txt; \
    pip install -r /tmp/build/requirements.txt; \
    python -c "import torch; assert torch.__version__.startswith('${TORCH_VERSION}'), torch.__version__"; \
    find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# --------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime

ARG TORCH=cpu
ARG DEBIAN_FRONTEND=noninteractive

# Same interpreter as the builder's venv points to (/usr/local/bin or /usr/bin python3),
# and a non-root user.
RUN set -eu; \
    if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 \
        && apt-get clean && rm -rf /var/lib/apt/lists/*; \
    fi; \
    if command -v useradd >/dev/null 2>&1; then \
        groupadd --system --gid 10001 redseg \
        && useradd --system --uid 10001 --gid 10001 --home-dir /home/redseg --create-home \
                   --shell /usr/sbin/nologin redseg; \
    else \
        echo 'redseg:x:10001:' >> /etc/group \
        && echo 'redseg:x:10001:10001:RedSeg:/home/redseg:/usr/sbin/nologin' >> /etc/passwd \
        && mkdir -p /home/redseg && chown 10001:10001 /home/redseg; \
    fi

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY model/ /app/model/
COPY service/ /app/service/
# The bundled models: checkpoints/redseg-default.safetensors (the default) and redseg-fast.safetensors.
COPY checkpoints/ /app/checkpoints/
# The project is not pip-installed here: the app reads its version from this file.
COPY pyproject.toml /app/pyproject.toml
# The CPU image serves OpenVINO int8 (REDSEG_BACKEND=auto): both bundled models' int8 IRs are made here
# from the shipped calibration crops of IDRiD training photographs (model/openvino_export.py), so a
# container starts without quantising; a checkpoint mounted later gets its IR at its first start.
COPY assets/calibration-crops.npz assets/ATTRIBUTION.md /app/assets/
RUN if [ "$TORCH" = cpu ] && [ -f /app/checkpoints/redseg-default.safetensors ]; then \
        cd /app && PYTHONPATH=/app PYTHONDONTWRITEBYTECODE=1 OMP_WAIT_POLICY=PASSIVE /opt/venv/bin/python -m model.openvino_export --openvino int8 \
        && rm -f /app/checkpoints/*.openvino/.lock; \
    fi
# Readable by the non-root user whatever the modes in the build context (a checkpoint
# saved through a temporary file is 0600); only files that need it change.
RUN find /app \( -type d ! -perm -a+rx -exec chmod a+rx {} + \) -o \( -type f ! -perm -a+r -exec chmod a+r {} + \) \
    && if [ ! -f /app/checkpoints/redseg-default.safetensors ]; then \
        echo "WARNING: checkpoints/redseg-default.safetensors is not in the build context;" \
             "set REDSEG_CHECKPOINT to a checkpoint mounted into the container." >&2; \
    fi \
    && python3 -V

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    HOME=/home/redseg \
    MPLCONFIGDIR=/tmp/matplotlib \
    OPENCV_IO_MAX_IMAGE_PIXELS=50000000 \
    REDSEG_DEVICE=auto \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=8000 \
    REDSEG_TORCH_BUILD=${TORCH}

# Numeric, so that Kubernetes runAsNonRoot can verify it (user redseg, group redseg).
USER 10001:10001
EXPOSE 8000

# Liveness over HTTP with the image's own Python (no curl in the image). /healthz answers once
# the server listens, the model loading behind it (docs/operations.md#start-up); the start period is slack.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('UVICORN_PORT', '8000'); r = urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=4); sys.exit(0 if r.status == 200 else 1)"]

# redseg-serve: uvicorn (h11, bounded request head) that drains on SIGTERM within Docker's 30 s.
CMD ["python", "-m", "service.serve"]
