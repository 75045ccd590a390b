# Minimal image: serves the seeds on port 8000. The multi-stage, air-gapped build is its own issue.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    CITELINE_HOST=0.0.0.0 \
    CITELINE_PORT=8000 \
    CITELINE_INDEX=/data/index \
    CITELINE_SOURCES=/app/seeds

WORKDIR /app
COPY pyproject.toml README.md ./
COPY indexer ./indexer
COPY service ./service
COPY seeds ./seeds

# torch first and pinned, then the package (its torch range accepts the pinned build).
RUN pip install "torch==2.13.0" && pip install . \
    && useradd --create-home --uid 10001 citeline \
    && mkdir -p /data && chown citeline /data

USER citeline
EXPOSE 8000
CMD ["citeline", "serve"]
