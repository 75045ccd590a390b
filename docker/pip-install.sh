#!/bin/sh
# `pip install` into the image's venv: from the wheelhouse alone when the build context has one
# (`make wheelhouse`: an air-gapped build, nothing fetched), else from the network.
# With --no-index, an --index-url given by the caller is ignored, so one command serves both.
set -eu
if ls /wheels/*.whl >/dev/null 2>&1; then
    set -- --no-index --find-links /wheels "$@"
fi
exec /opt/citeline/bin/pip install "$@"
