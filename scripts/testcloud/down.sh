#!/usr/bin/env bash
# Stop the loopback test cloud: exactly the process groups recorded in $TC/pids (nothing found by
# name), all at once (TERM, then KILL what is left after 30 s). Data stays in the state dir; `down.sh --purge` also deletes it (the
# Debian packages stay installed). Usage: down.sh [--purge]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PURGE=0
case "${1:-}" in
  "") ;;
  --purge) PURGE=1 ;;
  *) die "unknown argument '$1': usage: down.sh [--purge]" ;;
esac
lock_cloud
names=()
[ -d "$PIDS" ] && for f in "$PIDS"/*.pid; do [ -e "$f" ] && names+=("$(basename "$f" .pid)"); done
[ ${#names[@]} -eq 0 ] || stop_daemons "${names[@]}"
if [ $PURGE = 1 ] && [ -d "$TC" ]; then
  case "$TC" in /|/var|/var/lib|/root|/home) die "refusing to delete state dir '$TC'";; esac
  rm -rf --one-file-system "$TC"
  log "deleted $TC"
fi
log "test cloud stopped"
