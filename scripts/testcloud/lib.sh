# Helpers for the loopback OpenStack test cloud (sourced by up.sh and down.sh; see README.md).
# Everything the cloud writes lives in $TC (the state dir): configs, databases, rings, images, pids, logs.
set -euo pipefail
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
          neutron-server nova-api nova-conductor nova-scheduler)

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
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
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
alive() {
  local pidf=$PIDS/$1.pid pid
  [ -f "$pidf" ] || return 1
  pid=$(cat "$pidf")
  kill -0 "$pid" 2>/dev/null && [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ]
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

stop_daemon() {
  local name=$1 pidf=$PIDS/$1.pid pid
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  if alive "$name"; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    if ! wait_until 30 "$name to stop" bash -c "! kill -0 -- -$pid"; then
      log "$name did not stop on TERM in 30 s: KILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
      wait_until 10 "$name to die" bash -c "! kill -0 -- -$pid" || die "cannot stop $name (process group $pid)"
    fi
    log "stopped $name"
  fi
  rm -f "$pidf"
}

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
  mkdir -p "$PIDS" "$LOGS"
  # (9>&-: the daemon must not inherit up.sh's lock on $TC/.up.lock)
  setsid runuser -u "$user" -- "$@" >>"$LOGS/$name.out" 2>&1 </dev/null 9>&- &
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
