# Citeline: serves the seeds on port 8000, or your documents mounted at /data/docs (see README, "Docker").
# `docker build -t citeline .` fetches from the network; after `make wheelhouse` it installs from wheels/ alone.
ARG BASE_IMAGE=python:3.11-slim

# ---- builder: a venv with the CPU torch, the package and the default model, and the seeds' index
FROM ${BASE_IMAGE} AS builder
# PyPI's Linux torch brings gigabytes of CUDA; this index has the CPU build (unused when wheels/ is filled).
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_COMPILE=1 \
    HF_HUB_OFFLINE=1 \
    CITELINE_ENCODER_CACHE=/app/encoders
SHELL ["/bin/sh", "-eu", "-c"]
WORKDIR /src
RUN python3 -m venv /opt/citeline
COPY docker/pip-install.sh /usr/local/bin/pip-install
COPY wheels/ /wheels/
COPY pyproject.toml ./
# Dependencies first, in their own layer: a code change does not reinstall them. The list is pyproject's.
# Then strip what nothing needs at run time: tests, bytecode, torch's C++ headers and test binaries.
RUN python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && pip-install --index-url "$TORCH_INDEX" "$TORCH" \
    && pip-install -r /tmp/requirements.txt \
    && site=$(/opt/citeline/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    && find /opt/citeline -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
    && rm -rf "$site/torch/include" "$site/torch/test" \
    && find "$site/torch/bin" -mindepth 1 -maxdepth 1 ! -name torch_shm_manager -exec rm -rf {} +
COPY README.md ./
COPY indexer ./indexer
COPY service ./service
COPY citeline.py ./
RUN pip-install . && find /opt/citeline -depth -type d -name __pycache__ -exec rm -rf {} +
COPY seeds /app/seeds
# The seeds' index, built now so a container serves at once. Its ONNX exports (fp32 passages, int8 questions)
# go to /app/encoders, where any index a container builds finds them: a start with CITELINE_SOURCES exports
# nothing. Bytecode is written only for what this and the server import (about 90 MB): a start then takes
# seconds instead of compiling some 3,300 modules each time.
# (-P: import the installed package, not the sources in the working directory.)
RUN /opt/citeline/bin/citeline index /app/seeds --index /app/index --quiet \
    && /opt/citeline/bin/python -P -c 'import service.api.app, uvicorn.main'

# ---- runtime: the venv and the index, no build tools, not root
FROM ${BASE_IMAGE}
ENV PATH=/opt/citeline/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    CITELINE_ENCODER_CACHE=/app/encoders \
    CITELINE_HOST=0.0.0.0 \
    CITELINE_PORT=8000
RUN groupadd --gid 10001 citeline \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin citeline \
    && mkdir -p /data/index \
    && chown -R citeline /data
COPY --from=builder /opt/citeline /opt/citeline
COPY --from=builder /app /app
COPY docker/entrypoint.sh /usr/local/bin/citeline-entrypoint
# Numeric, so that a runtime (Kubernetes runAsNonRoot) can tell it is not root.
USER 10001:10001
WORKDIR /data
EXPOSE 8000
# No curl in slim images: Python's urllib asks /health (start-period leaves time to index mounted documents).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CITELINE_PORT', '8000') + '/health', timeout=4)"]
ENTRYPOINT ["citeline-entrypoint"]
CMD ["serve"]
