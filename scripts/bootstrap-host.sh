#!/usr/bin/env bash
# Prepare a Debian 12 / Ubuntu host for govcloud: host packages, podman's runtime config, the venv.
# Idempotent: every step checks before it changes anything. Run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

PACKAGES=(podman runc catatonit uidmap slirp4netns fuse-overlayfs debootstrap restic postgresql-15
          postgresql-client-15 nats-server softhsm2 opensc openssl curl ca-certificates iproute2
          python3-venv python3-dev libpq-dev gcc make git dpkg-dev zstd wrk)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a cluster on install; govcloud runs its own servers, so keep the packaged one stopped.
if command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
  $SUDO pg_ctlcluster 15 main stop || true
fi

# podman on this host: crun fails on hybrid cgroups, and the default ulimits are refused.
conf=/etc/containers/containers.conf
if ! grep -q 'govcloud' "$conf" 2>/dev/null; then
  $SUDO mkdir -p /etc/containers
  $SUDO tee "$conf" >/dev/null <<'CONF'
# written by govcloud scripts/bootstrap-host.sh
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
CONF
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi

# (this machine's pip.conf names local mirrors that may not exist: drop that noise, keep real errors)
.venv/bin/pip install -q -c constraints.txt -e '.[dev]' -r components/requirements.txt 2>&1 \
  | { grep -v "^WARNING: Location 'file:" || true; }
echo "bootstrap: host ready ($(podman --version), $(.venv/bin/python --version))"
