#!/usr/bin/env bash
# Stop the loopback test cloud: exactly the process groups recorded in $TC/pids (nothing found by
# name), clients first. Data stays in the state dir; `down.sh --purge` also deletes it (the
# Debian packages stay installed). Usage: down.sh [--purge]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PURGE=0
case "${1:-}" in
  "") ;;
  --purge) PURGE=1 ;;
  *) die "unknown argument '$1': usage: down.sh [--purge]" ;;
esac
ORDER=(nova-compute nova-api nova-scheduler nova-conductor neutron-server placement-api glance-api
       swift-proxy swift-object swift-container swift-account swift-log keystone rabbitmq-server epmd
       memcached mariadb)
for name in "${ORDER[@]}"; do stop_daemon "$name"; done
# anything recorded that is not in ORDER (a daemon added later): stop it too
if [ -d "$PIDS" ]; then
  for f in "$PIDS"/*.pid; do [ -e "$f" ] && stop_daemon "$(basename "$f" .pid)"; done
fi
if [ $PURGE = 1 ] && [ -d "$TC" ]; then
  case "$TC" in /|/var|/var/lib|/root|/home) die "refusing to delete state dir '$TC'";; esac
  rm -rf --one-file-system "$TC"
  log "deleted $TC"
fi
log "test cloud stopped"
