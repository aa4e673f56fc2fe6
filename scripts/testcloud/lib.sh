# Helpers for the loopback OpenStack test cloud (sourced by up.sh and down.sh; see README.md).
# Everything the cloud writes lives in $TC (the state dir): configs, databases, rings, images, pids, logs.
set -euo pipefail
# `{ ...config...; } | put FILE ...` must run put in this shell: its DIRTY marks restart the daemon
shopt -s lastpipe
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
export LC_ALL=C.UTF-8

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TC=${GOVCLOUD_TESTCLOUD_DIR:-/var/lib/govcloud-testcloud}
case "$TC" in /?*) ;; *) echo "testcloud: GOVCLOUD_TESTCLOUD_DIR='$TC' must be an absolute path (e.g. /var/lib/govcloud-testcloud)" >&2; exit 2;; esac
ETC=$TC/etc      # our own config files (the packaged ones in /etc are left untouched)
RUN=$TC/run      # sockets
PIDS=$TC/pids
LOGS=$TC/logs
KS=http://127.0.0.1:5000
REGION=RegionOne

# Debian 12 (Zed) packages. nova-compute is NOT listed: it pulls libvirt, qemu and systemd-sysv;
# the fake driver runs from python3-nova (see start_nova).
PACKAGES=(mariadb-server python3-pymysql curl socat memcached rabbitmq-server uwsgi-core uwsgi-plugin-python3
          keystone swift swift-proxy swift-account swift-container swift-object glance-api placement-api
          neutron-server nova-api nova-conductor nova-scheduler python3-octavia)

# one up.sh/down.sh at a time (make testcloud, a test session's fixture and down.sh may race); the
# lock file sits beside the state dir so that down.sh --purge keeps it
lock_cloud() {
  mkdir -p "$(dirname "$TC")"
  exec 9>"$TC.lock"
  flock -w 1800 9 || die "another up.sh/down.sh holds $TC.lock for 30 min: is it stuck? (ps -ef | grep testcloud)"
}

log() { echo "testcloud [$(date +%T)] $*"; }
die() { echo "testcloud: $*" >&2; exit 1; }

# install_packages: the missing ones, in one apt transaction, without starting any service.
install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root: run scripts/testcloud/up.sh as root"
  log "installing ${#missing[@]} packages (+ dependencies): ${missing[*]}"
  # keystone's debconf questions: no dbconfig, no automatic bootstrap (we do both ourselves)
  debconf-set-selections <<'DC'
keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
DC
  # policy-rc.d exit 101: the packages' postinst scripts must not start the stock services
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  mkdir -p "$LOGS"
  local apt_log=$LOGS/apt.log
  {
    apt-get update -q
    # eatmydata skips the fsyncs of dpkg: about a third off a ~370-package install
    dpkg-query -W -f='${Status}' eatmydata 2>/dev/null | grep -q 'ok installed' \
      || apt-get install -y -q --no-install-recommends eatmydata
    eatmydata apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confmiss \
      "${missing[@]}"
  } >>"$apt_log" 2>&1 || { [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; tail -15 "$apt_log" >&2
                           die "apt-get install failed (full log: $apt_log)"; }
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "packages installed ($(grep -c '^Unpacking' "$apt_log" || true) unpacked; log $apt_log)"
}

# --- files --------------------------------------------------------------------------------------
# put FILE GROUP MODE TAG < content: write FILE only if its content changed; a change marks TAG
# (a daemon name) for restart. Config files hold test passwords: root:GROUP, not world-readable.
DIRTY=" "
put() {
  local f=$1 group=$2 mode=$3 tag=$4 tmp
  mkdir -p "$(dirname "$f")"
  tmp=$(mktemp "$f.XXXXXX")
  cat > "$tmp"
  chown "root:$group" "$tmp"; chmod "$mode" "$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 0; fi
  mv -f "$tmp" "$f"
  DIRTY="$DIRTY$tag "
}
dirty() { [[ "$DIRTY" == *" $1 "* ]]; }

# once TAG KEY CMD...: run CMD unless it already succeeded with the same KEY (e.g. a package
# version: a db sync is redone after an upgrade). Stamps live in $TC/done/.
once() {
  local tag=$1 key=$2; shift 2
  local stamp=$TC/done/$tag
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && return 0
  log "$tag"
  "$@" >>"$LOGS/setup.log" 2>&1 || { tail -20 "$LOGS/setup.log" >&2; die "$tag failed (log: $LOGS/setup.log)"; }
  mkdir -p "$TC/done"; echo "$key" > "$stamp"
}
pkgver() { dpkg-query -W -f='${Version}' "$1"; }

# --- daemons ------------------------------------------------------------------------------------
# Every daemon is started with setsid, so its PID is also its process group: down.sh stops exactly
# the groups recorded in $PIDS and nothing else.
# alive NAME: its recorded PID runs, leads its process group, and started when the pid file was
# written (a PID reused after a reboot or a CI machine's process sweep is not ours).
alive() {
  local pidf=$PIDS/$1.pid pid age started
  [ -f "$pidf" ] || return 1
  pid=$(cat "$pidf")
  kill -0 "$pid" 2>/dev/null && [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ] || return 1
  age=$(ps -o etimes= -p "$pid" | tr -d ' ')
  [ -n "$age" ] || return 1
  started=$(( $(date +%s) - age ))
  [ $(( started - $(stat -c %Y "$pidf") )) -le 5 ] && [ $(( $(stat -c %Y "$pidf") - started )) -le 5 ]
}

# wait_until SECONDS WHAT CMD...: poll CMD (every 0.2 s) until it succeeds or the deadline passes.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# stop_daemons NAME...: TERM the recorded process groups, wait up to 30 s for all, KILL the rest.
stop_daemons() {
  local name pid left=() stopped=()
  for name in "$@"; do
    if alive "$name"; then
      pid=$(cat "$PIDS/$name.pid")
      kill -TERM -- "-$pid" 2>/dev/null || true
      left+=("$pid"); stopped+=("$name")
    fi
  done
  gone() { local p; for p in "$@"; do kill -0 -- "-$p" 2>/dev/null && return 1; done; return 0; }
  if [ ${#left[@]} -gt 0 ] && ! wait_until 30 "daemons to stop" gone "${left[@]}"; then
    for pid in "${left[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    wait_until 10 "daemons to die" gone "${left[@]}" || die "cannot stop process groups ${left[*]}"
    log "some daemons needed KILL after 30 s"
  fi
  for name in "$@"; do rm -f "$PIDS/$name.pid"; done
  [ ${#stopped[@]} -eq 0 ] || log "stopped ${stopped[*]}"
}
stop_daemon() { stop_daemons "$1"; }

# the loopback port each daemon listens on (checked free before it is started)
declare -A PORTS=([mariadb]=3306 [memcached]=11211 [epmd]=4369 [rabbitmq-server]=5672 [keystone]=5000
                  [swift-proxy]=8080 [swift-object]=6200 [swift-container]=6201 [swift-account]=6202
                  [glance-api]=9292 [placement-api]=8778 [neutron-server]=9696 [nova-api]=8774 [octavia-api]=9876)

# daemon NAME USER CMD...: (re)start NAME unless it is alive and none of its config files changed.
# Sets STARTED=1 if it was (re)started, STARTED=0 if it was left running.
STARTED=0
daemon() {
  local name=$1 user=$2; shift 2
  STARTED=0
  if alive "$name"; then
    dirty "$name" || return 0
    stop_daemon "$name"
  fi
  STARTED=1
  local port=${PORTS[$name]:-}
  if [ -n "$port" ] && port_open "$port"; then
    die "port $port (for $name) is taken by a process up.sh did not start (ss -ltnp 'sport = :$port'): stop it, or free the port"
  fi
  mkdir -p "$PIDS" "$LOGS"
  # setsid, setpriv and env all exec: the recorded PID is the daemon itself, leader of its own
  # session and process group (a daemon that calls setsid() again, like swift, stays in it).
  # 9>&-: the daemon must not inherit up.sh's lock on $TC/.up.lock.
  local home; home=$(getent passwd "$user" | cut -d: -f6)
  setsid setpriv --reuid="$user" --regid="$user" --init-groups -- env HOME="$home" "$@" \
    >>"$LOGS/$name.out" 2>&1 </dev/null 9>&- &
  echo $! > "$PIDS/$name.pid"
  log "started $name (pid $!, log $LOGS/$name.out)"
}

# up NAME SECONDS CMD...: wait for a started daemon's health check; on failure show its log.
up() {
  local name=$1 secs=$2; shift 2
  if ! wait_until "$secs" "$name" "$@"; then
    alive "$name" || log "$name exited"
    tail -25 "$LOGS/$name.out" >&2
    die "$name not healthy after ${secs}s ($*); logs: $LOGS/$name.out, $LOGS/$name.log"
  fi
}
http_ok() { curl -s -o /dev/null -m 3 "$1"; }    # any HTTP answer at all
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- shared config fragments --------------------------------------------------------------------
# authtoken SECTION USER: keystone credentials of a service user (keystone_authtoken, or the
# sections a service uses to call another service: [nova], [placement], [neutron], [service_user])
authtoken() {
  cat <<INI
[$1]
auth_url = $KS
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $SERVICE_PASS
region_name = $REGION
INI
  if [ "$1" = keystone_authtoken ]; then
    printf 'www_authenticate_uri = %s\nmemcached_servers = 127.0.0.1:11211\nservice_token_roles_required = true\n' "$KS"
  fi
}
dburl() { echo "mysql+pymysql://$1:$DB_PASS@127.0.0.1/$2?charset=utf8mb4"; }

# uwsgi_ini NAME PORT WSGI_SCRIPT PROCESSES THREADS [ENV=VALUE]: a minimal loopback uwsgi config
# (the packaged ones load the apparmor plugin and start 8 x 32 workers).
uwsgi_ini() {
  cat <<INI
[uwsgi]
http-socket = 127.0.0.1:$2
master = true
processes = $4
threads = $5
enable-threads = true
lazy-apps = true
die-on-term = true
no-orphans = true
buffer-size = 65535
# uwsgi's http-socket has no keep-alive: clients that reuse connections get ECONNRESET otherwise
add-header = Connection: close
wsgi-file = $3
name = $1
INI
  [ -z "${6:-}" ] || echo "env = $6"
}
