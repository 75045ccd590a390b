#!/usr/bin/env bash
# `make docker-smoke`: build the image air-gapped and prove it serves, on a machine without Docker Hub.
# Installs Debian's docker.io and debootstrap if missing, starts a dockerd of its own only if none answers
# (and stops that one by PID at the end, whatever happens), builds the stand-in base image only if missing,
# then the wheelhouse and the image; runs the seeds and a mounted documents folder; prints size and timings.
set -euo pipefail
cd "$(dirname "$0")/.."

# The engine's data-root lives outside the repo and outlives the run, on purpose: CI runs on a fresh clone
# each time, and a temp dir would throw away the base image and the build cache with it (a cold build is
# minutes). The daemon's socket, exec-root and pidfile are per run, in a temp dir. Override with CITELINE_DOCKER_CACHE.
# The wheels' persistent cache is pip's own (~/.cache/pip): a fresh clone's `make wheelhouse` copies from it.
CACHE=${CITELINE_DOCKER_CACHE:-/var/cache/citeline-docker}
IMAGE=${CITELINE_IMAGE:-citeline:smoke}
ROOTFS=citeline-bookworm-minbase:latest
# The stand-in for python:3.11-slim, tagged by its recipe so a changed recipe builds a new one;
# BASE_IMAGE=python:3.11-slim uses the real one where it can be pulled.
BASE=${BASE_IMAGE:-citeline-base:bookworm-$({ cat docker/base.Dockerfile; sed -n '/^build_base()/,/^}/p' docker/smoke.sh; } |
    sha256sum | cut -c1-12)}
PYTHON=${PYTHON:-python3}
export DOCKER_BUILDKIT=0  # the legacy builder: Debian's engine has no buildx here

mkdir -p "$CACHE"
work=$(mktemp -d /tmp/citeline-smoke.XXXXXX)  # short path: the daemon's sockets must fit in 108 bytes
dockerd_pid=""
bridge_was_there=""
containers=()
timings=()

cleanup() {
    local rc=$?
    set +e
    for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
    if [[ -n $dockerd_pid ]]; then
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$dockerd_pid" 2>/dev/null
        wait "$dockerd_pid" 2>/dev/null
        # What the daemon leaves behind: its network namespace mount, and the bridge if it made it.
        findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount
        [[ -n $bridge_was_there ]] || ip link delete docker0 2>/dev/null
    fi
    rm -rf "$work"
    if ((${#timings[@]})); then
        printf 'docker-smoke timings (rough):\n'
        printf '  %s\n' "${timings[@]}" "$(printf '%-34s %4ds' total "$SECONDS")"
    fi
    ((rc == 0)) && echo "docker-smoke: passed" || echo "docker-smoke: FAILED (exit $rc)" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# step NAME COMMAND...: run it and record how long it took (whole seconds; the machine is shared).
step() {
    local name=$1 started=$SECONDS
    shift
    echo "== $name"
    "$@"
    timings+=("$(printf '%-34s %4ds' "$name" $((SECONDS - started)))")
}

install_tools() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    ((${#missing[@]})) || return 0
    # Installing must not start a system daemon (this script decides which one runs): policy-rc.d says no.
    local policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [[ -z $policy ]] || rm -f "$policy"
}

start_engine() {
    if docker info >/dev/null 2>&1; then
        echo "using the Docker engine that answers at ${DOCKER_HOST:-the default socket}"
        return 0
    fi
    # One smoke run at a time on the shared data-root (two daemons on one data-root corrupt it).
    exec 9>"$CACHE/lock"
    flock -w 1800 9
    if ip link show docker0 >/dev/null 2>&1; then bridge_was_there=yes; fi
    dockerd --data-root "$CACHE/data-root" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
        --host "unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    export DOCKER_HOST="unix://$work/docker.sock"
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && return 0
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.5
    done
    echo "dockerd did not come up; its log:" >&2
    tail -n 30 "$work/dockerd.log" >&2
    return 1
}

build_base() {
    if docker image inspect "$BASE" >/dev/null 2>&1; then
        echo "reusing $BASE"
        return 0
    fi
    if [[ -n ${BASE_IMAGE:-} ]]; then docker pull "$BASE"; return; fi
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
        { tail -n 30 "$work/debootstrap.log" >&2; return 1; }
    # Slim like Debian's -slim images: no package lists, apt caches, manuals or translations (about 120 MB).
    tar -C "$work/rootfs" --exclude='./var/lib/apt/lists/*' --exclude='./var/cache/apt/*' \
        --exclude='./usr/share/man/*' --exclude='./usr/share/locale/*' --exclude='./usr/share/info/*' -c . |
        docker import - "$ROOTFS"
    rm -rf "$work/rootfs"
    # The Dockerfile on stdin: a build with no context; --network host, as apt needs the network.
    docker build --network host --build-arg ROOTFS="$ROOTFS" -t "$BASE" - <docker/base.Dockerfile
    # Stand-ins built from an older recipe are of no more use.
    docker images "${BASE%%:*}" --format '{{.Repository}}:{{.Tag}}' | { grep -vxF "$BASE" || true; } | xargs -r docker rmi
}

build_image() {
    # --network none: the build must need nothing but the context (wheels/ included). The builder stage is
    # tagged too, so a replaced one becomes dangling and `image prune` can reclaim it without losing the cache.
    local args=(--network none --build-arg BASE_IMAGE="$BASE")
    docker build "${args[@]}" --target builder -t "$IMAGE-builder" .
    docker build -q "${args[@]}" -t "$IMAGE" .
    [[ -z $dockerd_pid ]] || docker image prune -f >/dev/null  # only on our own engine: old images of ours
}

port_of() { docker port "$1" 8000/tcp | head -n 1 | sed 's/.*://'; }

# start_container NAME DOCKER-RUN-ARGS...: port 8000 published on a free loopback port; back once /health is ok.
start_container() {
    local name=$1
    shift
    containers+=("$name")
    docker run -d --name "$name" -p 127.0.0.1::8000 "$@" "$IMAGE" >/dev/null
    "$PYTHON" docker/smoke_check.py "http://127.0.0.1:$(port_of "$name")" wait 240 ||
        { docker logs --tail 40 "$name" >&2; return 1; }
}

check_seeds() {
    local url
    url="http://127.0.0.1:$(port_of citeline-smoke-seeds)"
    "$PYTHON" docker/smoke_check.py "$url" search "how many US troops were sent" 001_2c0b17beeba9964b
    local user
    user=$(docker exec citeline-smoke-seeds id -u)
    [[ $user == 10001 ]] || { echo "the container runs as uid $user, not the unprivileged citeline" >&2; return 1; }
}

write_documents() {
    mkdir -p "$work/docs"
    printf '%s\n\n%s\n' "Harbour report from Valmora" \
        "The lighthouse keeper of Valmora counted 412 ships entering the harbour in 1891. Storms closed the port for nine days that winter." \
        >"$work/docs/harbour-report.txt"
    printf '%s\n\n%s\n' "# Orchard notes" \
        "The orchard on the hill grows twenty kinds of apple. Pruning starts in February and the cider is pressed in October." \
        >"$work/docs/orchard-notes.md"
    # A PDF, made by the tests' own helper (fpdf2, from `make install`): the image reads PDFs with page numbers.
    "${FIXTURE_PYTHON:-.venv/bin/python}" -c 'import sys; from tests.formats import pdf_bytes; sys.stdout.buffer.write(pdf_bytes(
        ["The ferry timetable of Valmora: boats leave at seven and at noon.",
         "In winter the ferry to the islands sails only on Sundays, weather permitting."], title="Ferry timetable"))' \
        >"$work/docs/ferry-timetable.pdf"
    chmod -R a+rX "$work/docs"
    # The admin key as a secret file (CITELINE_ADMIN_KEY_FILE), readable by the container's user only.
    mkdir -p "$work/secrets" && printf 'smoke-admin-key\n' >"$work/secrets/admin" && chown -R 10001:10001 "$work/secrets"
    chmod 0500 "$work/secrets" && chmod 0400 "$work/secrets/admin"
    mkdir -p "$work/index" && chown 10001:10001 "$work/index"  # the container's user writes its index here
}

check_documents() {
    local url
    url="http://127.0.0.1:$(port_of citeline-smoke-docs)"
    "$PYTHON" docker/smoke_check.py "$url" documents ferry-timetable harbour-report orchard-notes  # no seeds
    "$PYTHON" docker/smoke_check.py "$url" search "when does the ferry to the islands sail in winter" ferry-timetable 2
    "$PYTHON" docker/smoke_check.py "$url" search "how many ships did the lighthouse keeper count" harbour-report
    # The image's ONNX exports (CITELINE_ENCODER_CACHE) served this new index: none was made beside it.
    [[ ! -e $work/index/encoders ]] ||
        { echo "the container exported the model again, into the mounted index" >&2; return 1; }
}

check_restart_reuses_index() {  # a kept index whose manifest matches: the same snapshot is served again
    local before after
    before=$("$PYTHON" docker/smoke_check.py "http://127.0.0.1:$(port_of citeline-smoke-docs)" snapshot)
    docker restart citeline-smoke-docs >/dev/null
    "$PYTHON" docker/smoke_check.py "http://127.0.0.1:$(port_of citeline-smoke-docs)" wait 240
    after=$("$PYTHON" docker/smoke_check.py "http://127.0.0.1:$(port_of citeline-smoke-docs)" snapshot)
    [ "$before" = "$after" ] ||
        { echo "the restarted container rewrote its index ($before -> $after)" >&2; docker logs --tail 30 citeline-smoke-docs >&2; return 1; }
    echo "restart: index reused (snapshot $after)"
}

wait_docker_healthy() {  # the image's own HEALTHCHECK: its first probe runs one interval (30 s) after start
    local status=""
    for _ in $(seq 90); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$1")
        [[ $status == healthy ]] && { echo "HEALTHCHECK: healthy"; return 0; }
        sleep 1
    done
    echo "HEALTHCHECK says $status" >&2
    return 1
}

step "hadolint" make --no-print-directory hadolint
step "install docker.io, debootstrap" install_tools
step "start engine" start_engine
for c in citeline-smoke-seeds citeline-smoke-docs; do docker rm -f "$c" >/dev/null 2>&1 || true; done
step "base image" build_base
step "wheelhouse" make --no-print-directory wheelhouse
step "image build" build_image
step "seeds: start to healthy" start_container citeline-smoke-seeds
step "seeds: search and citation" check_seeds
write_documents
step "mounted docs: index and healthy" start_container citeline-smoke-docs \
    -v "$work/docs:/data/docs:ro" -v "$work/index:/data/index" -e CITELINE_SOURCES=/data/docs \
    -v "$work/secrets:/run/secrets:ro" -e CITELINE_ADMIN_KEY_FILE=/run/secrets/admin
step "mounted docs: served" check_documents
step "mounted docs: a private collection" "$PYTHON" docker/smoke_check.py \
    "http://127.0.0.1:$(port_of citeline-smoke-docs)" collection smoke-admin-key
step "mounted docs: restart reuses index" check_restart_reuses_index
step "seeds: HEALTHCHECK" wait_docker_healthy citeline-smoke-seeds
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $((size / 1000000)) MB (base $BASE: $(($(docker image inspect -f '{{.Size}}' "$BASE") / 1000000)) MB)"
