# A stand-in for python:3.11-slim where Docker Hub cannot be reached (the smoke test): Debian bookworm's
# Python 3.11 on a `debootstrap --variant=minbase` root that docker/smoke.sh imports as ROOTFS.
ARG ROOTFS=citeline-bookworm-minbase:latest
FROM ${ROOTFS}
# As in Debian's slim images: no manuals, translations or docs beyond the copyright files.
# Unpinned on purpose (DL3008): bookworm's current python3 is the point; pins would break at its next update.
# hadolint ignore=DL3008
RUN printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/info/*' \
        >/etc/dpkg/dpkg.cfg.d/slim \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
