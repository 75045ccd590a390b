#!/bin/sh
# Which index a container serves, unless CITELINE_INDEX says:
# - no CITELINE_SOURCES: the seeds' index built into the image (/app/index, read-only);
# - CITELINE_SOURCES set: /data/index, where `serve` indexes those documents at start (only new or
#   changed ones when a volume there keeps a previous index). The seeds never enter that collection.
# Named collections (and their keys) go to /data/collections unless CITELINE_COLLECTIONS_DIR says: the
# image's own index is read-only, and one volume at /data keeps the index and the collections together.
set -eu
if [ -z "${CITELINE_COLLECTIONS_DIR:-}" ]; then
    CITELINE_COLLECTIONS_DIR=/data/collections
    export CITELINE_COLLECTIONS_DIR
fi
if [ -z "${CITELINE_INDEX:-}" ]; then
    if [ -n "${CITELINE_SOURCES:-}" ]; then CITELINE_INDEX=/data/index; else CITELINE_INDEX=/app/index; fi
    export CITELINE_INDEX
fi
exec citeline "$@"
