#!/usr/bin/env bash
# Make a Docker engine and the sandbox base image available, idempotently (CI and dev machines).
#   1. install docker.io and debootstrap if missing (apt; needs root);
#   2. start dockerd if no engine answers, logs to /tmp/dockerd.log, and wait for it;
#   3. build the base image `swerl-base:bookworm` from Debian packages if it is absent.
# Engine flags: no iptables and no bridge, as sandboxes run with `--network none` only.
# Skipped when DOCKER_HOST points at a remote engine: that engine is the user's to run.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="${SWERL_BASE_IMAGE:-swerl-base:bookworm}"

if [ -n "${DOCKER_HOST:-}" ] && [[ "$DOCKER_HOST" != unix://* ]]; then
  echo "docker-setup: DOCKER_HOST=$DOCKER_HOST is remote; not starting a local engine"
else
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/tmp/apt-docker.log 2>&1
    apt-get install -y -q docker.io debootstrap >>/tmp/apt-docker.log 2>&1
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "docker-setup: starting dockerd (log: /tmp/dockerd.log)"
    nohup dockerd --iptables=false --ip6tables=false --bridge=none >/tmp/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "docker-setup: dockerd did not start"; tail -20 /tmp/dockerd.log; exit 1; }
  fi
fi

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "docker-setup: engine up, base image $BASE_IMAGE present"
  exit 0
fi

echo "docker-setup: building base image $BASE_IMAGE (debootstrap, about a minute)"
if [ -x .venv/bin/python ] && .venv/bin/python -c "import swerl.sandbox.images" 2>/dev/null; then
  .venv/bin/python -c "from swerl.sandbox.images import build_base_image; build_base_image('$BASE_IMAGE')"
else  # before the project is installed: the same two commands as build_base_image
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=python3,python3-pytest,git,patch bookworm "$rootfs" \
    >/tmp/debootstrap.log 2>&1
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE"
fi
echo "docker-setup: built $BASE_IMAGE"
