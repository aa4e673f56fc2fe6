#!/usr/bin/env bash
# Remove podman objects that earlier test runs left behind (their processes were killed, podman's
# store kept the pods, volumes and secrets). Only test-owned names: it-*, e2e-*, ci-*; never `local`.
set -uo pipefail
command -v podman >/dev/null || exit 0
pat='^(it|e2e|ci)[a-z0-9-]*-'
podman pod ps --format '{{.Name}}' | grep -E "$pat" | xargs -r podman pod rm -f >/dev/null 2>&1
podman ps -a --format '{{.Names}}' | grep -E "$pat" | xargs -r podman rm -f >/dev/null 2>&1
podman volume ls --format '{{.Name}}' | grep -E "$pat" | xargs -r podman volume rm -f >/dev/null 2>&1
podman secret ls --noheading --format '{{.Name}}' | grep -E "$pat" | xargs -r podman secret rm >/dev/null 2>&1
podman image prune -f >/dev/null 2>&1
echo "ci-clean-stale: done"
