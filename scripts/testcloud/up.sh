#!/usr/bin/env bash
# Start the loopback OpenStack test cloud (Debian 12 / Zed packages): MariaDB, memcached, RabbitMQ,
# Keystone, Swift (+s3api), Glance, Placement, Neutron (ML2 without agents), Nova (fake driver),
# Octavia (no-op backends).
# Idempotent: installs only missing packages, rewrites only changed configs, (re)starts only dead
# or reconfigured daemons, runs one-time setup (db syncs, bootstrap) only once per package version.
# A rerun on a healthy cloud takes seconds. Usage: up.sh [--only-keystone-swift]   (README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" = 0 ] || die "needs root (installs packages, runs each service as its own user): sudo $0"
ONLY_KS_SWIFT=0
case "${1:-}" in
  "") ;;
  --only-keystone-swift) ONLY_KS_SWIFT=1 ;;
  *) die "unknown argument '$1': usage: up.sh [--only-keystone-swift]" ;;
esac
T0=$(date +%s)

lock_cloud

install_packages

# --- state dir and test passwords ---------------------------------------------------------------
mkdir -p "$TC" "$ETC" "$PIDS" "$TC/done"
chmod 711 "$TC"
mkdir -p "$LOGS" "$RUN"; chmod 1777 "$LOGS" "$RUN"     # every service user writes its own log/socket
if [ ! -s "$TC/secrets.env" ]; then
  # random per state dir, written once; only for this throw-away loopback cloud
  ( umask 077; for v in ADMIN_PASS SERVICE_PASS DB_PASS RABBIT_PASS; do
      echo "$v=$(python3 -c 'import secrets; print(secrets.token_hex(12))')"; done > "$TC/secrets.env" )
fi
# shellcheck disable=SC1091
source "$TC/secrets.env"
RABBIT_URL="rabbit://openstack:$RABBIT_PASS@127.0.0.1:5672/"
# setup_cloud.py reads the passwords from its environment (not argv; not exported to the daemons)
setup_cloud() { ADMIN_PASS=$ADMIN_PASS SERVICE_PASS=$SERVICE_PASS /usr/bin/python3 "$HERE/setup_cloud.py" "$@"; }

# --- MariaDB: own datadir and socket in the state dir, fsync off (throw-away data) --------------
mariadb_up() {
  install -d -o mysql -g mysql -m 750 "$TC/mysql"
  install -d -o mysql -g mysql -m 755 "$RUN/mysqld"
  put "$ETC/my.cnf" mysql 644 mariadb <<C
[client]
socket = $RUN/mysqld/mysqld.sock
[mysqld]
datadir = $TC/mysql
socket = $RUN/mysqld/mysqld.sock
pid-file = $RUN/mysqld/mysqld.pid
log-error = $LOGS/mariadb.log
bind-address = 127.0.0.1
port = 3306
skip-name-resolve
max_connections = 1000
innodb_buffer_pool_size = 256M
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
sync_binlog = 0
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
C
  [ -d "$TC/mysql/mysql" ] || once mariadb-install-db "$(pkgver mariadb-server)" \
    mariadb-install-db --defaults-file="$ETC/my.cnf" --user=mysql --auth-root-authentication-method=socket --skip-test-db
  daemon mariadb root /usr/sbin/mariadbd --defaults-file="$ETC/my.cnf" --user=mysql
  up mariadb 60 mariadb-admin --defaults-file="$ETC/my.cnf" ping
}
sql() { mariadb --defaults-file="$ETC/my.cnf" -u root; }   # SQL on stdin: passwords never in argv
# mkdb DB USER: database + user with DB_PASS (idempotent)
mkdb() {
  sql <<SQL
CREATE DATABASE IF NOT EXISTS \`$1\`;
CREATE USER IF NOT EXISTS '$2'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$2'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON \`$1\`.* TO '$2'@'127.0.0.1';
SQL
}

memcached_up() {
  daemon memcached root /usr/bin/memcached -u memcache -l 127.0.0.1 -p 11211 -U 0 -m 64
  up memcached 20 port_open 11211
}

# --- RabbitMQ: node rabbit@localhost, AMQP + epmd + distribution port on 127.0.0.1 only ----------
RABBIT_ENV=$ETC/rabbitmq/rabbitmq-env.conf
rabbitmqctl() {
  runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq RABBITMQ_CONF_ENV_FILE="$RABBIT_ENV" \
    ERL_EPMD_ADDRESS=127.0.0.1 /usr/lib/rabbitmq/bin/rabbitmqctl "$@"
}
rabbitmq_up() {
  install -d -o rabbitmq -g rabbitmq -m 750 "$TC/rabbitmq"
  put "$RABBIT_ENV" rabbitmq 640 rabbitmq <<C
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=5672
DIST_PORT=25672
CONFIG_FILE=$ETC/rabbitmq/rabbitmq.conf
MNESIA_BASE=$TC/rabbitmq/mnesia
LOG_BASE=$LOGS/rabbitmq
ENABLED_PLUGINS_FILE=$TC/rabbitmq/enabled_plugins
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
C
  # default_user/default_pass: created by the node's first boot (no password on a command line)
  put "$ETC/rabbitmq/rabbitmq.conf" rabbitmq 640 rabbitmq <<C
listeners.tcp.default = 127.0.0.1:5672
loopback_users = none
default_user = openstack
default_pass = $RABBIT_PASS
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
vm_memory_high_watermark.absolute = 1GB
disk_free_limit.absolute = 50MB
C
  [ -f "$TC/rabbitmq/enabled_plugins" ] || install -o rabbitmq -g rabbitmq -m 644 <(echo '[].') "$TC/rabbitmq/enabled_plugins"
  install -d -o rabbitmq -g rabbitmq "$LOGS/rabbitmq"
  # our own epmd on loopback, so that erl does not daemonize one outside our process groups
  daemon epmd rabbitmq /usr/bin/epmd -address 127.0.0.1
  up epmd 20 port_open 4369
  if dirty rabbitmq; then DIRTY="$DIRTY rabbitmq-server "; fi
  daemon rabbitmq-server rabbitmq env HOME=/var/lib/rabbitmq RABBITMQ_CONF_ENV_FILE="$RABBIT_ENV" \
    ERL_EPMD_ADDRESS=127.0.0.1 /usr/lib/rabbitmq/bin/rabbitmq-server
  up rabbitmq-server 120 port_open 5672
  [ $STARTED = 0 ] || up rabbitmq-server 120 rabbitmqctl -q await_startup
}

# --- Keystone: fernet tokens, uwsgi on 127.0.0.1:5000 -------------------------------------------
keystone_up() {
  mkdb keystone keystone
  install -d -o keystone -g keystone -m 700 "$TC/keystone" "$TC/keystone/fernet-keys" "$TC/keystone/credential-keys"
  put "$ETC/keystone/keystone.conf" keystone 640 keystone <<C
[DEFAULT]
log_file = $LOGS/keystone.log
[database]
connection = $(dburl keystone keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $TC/keystone/fernet-keys
[credential]
key_repository = $TC/keystone/credential-keys
C
  local km="runuser -u keystone -- keystone-manage --config-file $ETC/keystone/keystone.conf" v
  v=$(pkgver keystone)
  [ -e "$TC/keystone/fernet-keys/0" ] || once keystone-fernet "$v" $km fernet_setup --keystone-user keystone --keystone-group keystone
  [ -e "$TC/keystone/credential-keys/0" ] || once keystone-credential "$v" $km credential_setup --keystone-user keystone --keystone-group keystone
  once keystone-db-sync "$v" $km db_sync
  # bootstrap reads the admin password from the environment (OS_BOOTSTRAP_PASSWORD), not argv
  OS_BOOTSTRAP_PASSWORD=$ADMIN_PASS once keystone-bootstrap "$v" $km bootstrap \
    --bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin \
    --bootstrap-service-name keystone --bootstrap-region-id "$REGION" \
    --bootstrap-admin-url "$KS/v3" --bootstrap-public-url "$KS/v3" --bootstrap-internal-url "$KS/v3"
  uwsgi_ini keystone 5000 /usr/bin/keystone-wsgi-public 2 4 "OS_KEYSTONE_CONFIG_DIR=$ETC/keystone" \
    | put "$ETC/keystone/uwsgi.ini" keystone 640 keystone
  daemon keystone keystone /usr/bin/uwsgi_python3 --ini "$ETC/keystone/uwsgi.ini"
  up keystone 60 http_ok "$KS/v3"
}

# register NAME:TYPE:URL...: service user (admin + service roles in project service), service, endpoints
register() { once "register-${1%%:*}" "$1" setup_cloud register "$1"; }

# --- Swift: proxy :8080 + account/container/object on 127.0.0.1, one replica, keystoneauth + s3api
swift_up() {
  local d=$ETC/swift s
  install -d -o swift -g swift "$TC/swift" "$TC/swift/node/d1" "$TC/swift/cache"
  put "$d/swift.conf" swift 640 swift-all <<C
[swift-hash]
swift_hash_path_suffix = govcloud-testcloud
swift_hash_path_prefix = govcloud-testcloud
[storage-policy:0]
name = Policy-0
default = yes
C
  for s in account:6202 container:6201 object:6200; do
    put "$d/${s%%:*}-server.conf" swift 640 "swift-${s%%:*}" <<C
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${s##*:}
workers = 0
user = swift
swift_dir = $d
devices = $TC/swift/node
mount_check = false
recon_cache_path = $TC/swift/cache
log_level = INFO
# swift logs to syslog; without /dev/log it would fall back to UDP: give it our socket (swift-log)
log_address = $RUN/swift-log.sock
[pipeline:main]
pipeline = healthcheck ${s%%:*}-server
[app:${s%%:*}-server]
use = egg:swift#${s%%:*}
[filter:healthcheck]
use = egg:swift#healthcheck
C
  done
  # s3api needs service credentials in s3token (this keystone refuses anonymous /v3/s3tokens) and
  # the order "s3api authtoken s3token keystoneauth"; otherwise clients see SignatureDoesNotMatch
  put "$d/proxy-server.conf" swift 640 swift-proxy <<C
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = 8080
workers = 1
user = swift
swift_dir = $d
log_level = INFO
log_address = $RUN/swift-log.sock
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api authtoken s3token keystoneauth copy container-quotas account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = $KS
auth_url = $KS
auth_type = password
project_domain_id = default
user_domain_id = default
project_name = service
username = swift
password = $SERVICE_PASS
delay_auth_decision = True
memcached_servers = 127.0.0.1:11211
[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
[filter:s3api]
use = egg:swift#s3api
[filter:s3token]
use = egg:swift#s3token
auth_uri = $KS/v3
reseller_prefix = AUTH_
delay_auth_decision = False
auth_type = password
auth_url = $KS
username = swift
password = $SERVICE_PASS
project_name = service
project_domain_id = default
user_domain_id = default
secret_cache_duration = 60
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:11211
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
access_log_address = $RUN/swift-log.sock
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:copy]
use = egg:swift#copy
[filter:container-quotas]
use = egg:swift#container_quotas
[filter:account-quotas]
use = egg:swift#account_quotas
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
[filter:symlink]
use = egg:swift#symlink
C
  # rings: partition power 8, 1 replica, 1 device (a plain directory, no mount check)
  for s in account:6202 container:6201 object:6200; do
    local n=${s%%:*} b=$TC/swift/${s%%:*}.builder
    if [ ! -e "$d/$n.ring.gz" ]; then
      { swift-ring-builder "$b" create 8 1 1 && swift-ring-builder "$b" add "r1z1-127.0.0.1:${s##*:}/d1" 100 \
        && swift-ring-builder "$b" rebalance && swift-ring-builder "$b" write_ring; } >>"$LOGS/setup.log" 2>&1 || true
      # rebalance/write_ring put the ring beside the builder
      [ -e "$TC/swift/$n.ring.gz" ] || die "swift-ring-builder $n failed (log: $LOGS/setup.log)"
      install -o root -g swift -m 644 "$TC/swift/$n.ring.gz" "$d/$n.ring.gz"
      DIRTY="$DIRTY swift-all "
    fi
  done
  register 'swift:object-store:http://127.0.0.1:8080/v1/AUTH_%(project_id)s'
  if dirty swift-all; then DIRTY="$DIRTY swift-account swift-container swift-object swift-proxy "; fi
  daemon swift-log root socat -u "UNIX-RECV:$RUN/swift-log.sock,mode=666,unlink-early" "OPEN:$LOGS/swift.log,creat,append"
  up swift-log 10 test -S "$RUN/swift-log.sock"
  for s in account container object proxy; do
    daemon "swift-$s" root "/usr/bin/swift-$s-server" "$d/$s-server.conf" -v
  done
  for s in account:6202 container:6201 object:6200 proxy:8080; do
    up "swift-${s%%:*}" 60 curl -sf -o /dev/null -m 3 "http://127.0.0.1:${s##*:}/healthcheck"
  done
}

# --- Glance (file store) :9292 and Placement (uwsgi) :8778 -------------------------------------
glance_up() {
  mkdb glance glance
  install -d -o glance -g glance "$TC/glance" "$TC/glance/images" "$TC/glance/staging" "$TC/glance/tasks" "$TC/glance/lock"
  { cat <<C
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9292
workers = 1
log_file = $LOGS/glance-api.log
enabled_backends = fs:file
[database]
connection = $(dburl glance glance)
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $TC/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = $TC/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $TC/glance/tasks/
[oslo_concurrency]
lock_path = $TC/glance/lock
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
C
    authtoken keystone_authtoken glance; } | put "$ETC/glance/glance-api.conf" glance 640 glance-api
  register glance:image:http://127.0.0.1:9292
  once glance-db-sync "$(pkgver glance-api)" runuser -u glance -- glance-manage --config-file "$ETC/glance/glance-api.conf" db_sync
  daemon glance-api glance /usr/bin/glance-api --config-file "$ETC/glance/glance-api.conf"
}
placement_up() {
  mkdb placement placement
  { cat <<C
[DEFAULT]
log_file = $LOGS/placement-api.log
[placement_database]
connection = $(dburl placement placement)
[api]
auth_strategy = keystone
C
    authtoken keystone_authtoken placement; } | put "$ETC/placement/placement.conf" placement 640 placement-api
  uwsgi_ini placement 8778 /usr/bin/placement-api 1 4 "OS_PLACEMENT_CONFIG_DIR=$ETC/placement" \
    | put "$ETC/placement/uwsgi.ini" placement 640 placement-api
  register placement:placement:http://127.0.0.1:8778
  once placement-db-sync "$(pkgver placement-api)" runuser -u placement -- placement-manage --config-file "$ETC/placement/placement.conf" db sync
  daemon placement-api placement /usr/bin/uwsgi_python3 --ini "$ETC/placement/uwsgi.ini"
}

# --- Neutron server :9696: ML2 (flat/vlan/vxlan), no agents ------------------------------------
# Without an L2 agent no port is ever bound and servers go to ERROR (binding_failed): the tiny
# 'agentless' mechanism driver in ml2/ binds every port (found through its entry point).
neutron_up() {
  mkdb neutron neutron
  install -d -o neutron -g neutron "$TC/neutron" "$TC/neutron/lock"
  { cat <<C
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9696
core_plugin = ml2
service_plugins = router
transport_url = $RABBIT_URL
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 0
state_path = $TC/neutron
log_file = $LOGS/neutron-server.log
api_paste_config = /etc/neutron/api-paste.ini
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
[database]
connection = $(dburl neutron neutron)
[oslo_concurrency]
lock_path = $TC/neutron/lock
C
    authtoken keystone_authtoken neutron; authtoken nova nova; } | put "$ETC/neutron/neutron.conf" neutron 640 neutron-server
  # (the driver's checksum in a comment: a changed driver restarts neutron-server)
  put "$ETC/neutron/ml2_conf.ini" neutron 640 neutron-server <<C
# agentless driver $(sha256sum "$HERE/ml2/govcloud_testcloud_ml2.py" | cut -c1-16)
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = agentless
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:200
[ml2_type_vxlan]
vni_ranges = 1:1000
[securitygroup]
enable_security_group = true
C
  register neutron:network:http://127.0.0.1:9696
  once neutron-db-sync "$(pkgver neutron-server)" runuser -u neutron -- neutron-db-manage \
    --config-file "$ETC/neutron/neutron.conf" --config-file "$ETC/neutron/ml2_conf.ini" upgrade head
  daemon neutron-server neutron env PYTHONPATH="$HERE/ml2" /usr/bin/neutron-server \
    --config-file "$ETC/neutron/neutron.conf" --config-file "$ETC/neutron/ml2_conf.ini"
}

# --- Nova: api :8774, conductor, scheduler, compute with the fake driver (servers go ACTIVE) -----
nova_up() {
  local f=$ETC/nova/nova.conf s
  mkdb nova_api nova; mkdb nova nova; mkdb nova_cell0 nova
  install -d -o nova -g nova "$TC/nova" "$TC/nova/instances" "$TC/nova/lock"
  { cat <<C
[DEFAULT]
my_ip = 127.0.0.1
host = testcloud-compute
state_path = $TC/nova
instances_path = $TC/nova/instances
transport_url = $RABBIT_URL
compute_driver = fake.FakeDriver
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_listen_port = 8774
osapi_compute_workers = 1
log_dir = $LOGS
# a loaded 2-core CI machine can delay nova-compute's heartbeat past the 60 s default, and the scheduler
# then sees no host (NoValidHost, "ComputeFilter returned 0 hosts"); a dead compute is caught by up.sh
service_down_time = 600
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[api]
auth_strategy = keystone
[api_database]
connection = $(dburl nova nova_api)
[database]
connection = $(dburl nova nova)
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 2
[oslo_concurrency]
lock_path = $TC/nova/lock
[vnc]
enabled = false
[cinder]
os_region_name = $REGION
C
    echo '[neutron]'; echo 'default_floating_pool = public'; authtoken neutron neutron | tail -n +2
    authtoken placement placement; authtoken keystone_authtoken nova
    authtoken service_user nova; echo 'send_service_user_token = true'
  } | put "$f" nova 640 nova-all
  register nova:compute:http://127.0.0.1:8774/v2.1
  local nm="runuser -u nova -- nova-manage --config-file $f" v
  v=$(pkgver python3-nova)
  once nova-api-db-sync "$v" $nm api_db sync
  once nova-cell0 "$v" bash -c "$nm cell_v2 list_cells | grep -q ' cell0 ' || $nm cell_v2 map_cell0 --database_connection '$(dburl nova nova_cell0)'"
  once nova-cell1 "$v" bash -c "$nm cell_v2 list_cells | grep -q ' cell1 ' || $nm cell_v2 create_cell --name cell1"
  once nova-db-sync "$v" $nm db sync
  if dirty nova-all; then DIRTY="$DIRTY nova-api nova-conductor nova-scheduler nova-compute "; fi
  for s in api conductor scheduler; do daemon "nova-$s" nova "/usr/bin/nova-$s" --config-file "$f"; done
  # nova-compute from python3-nova: the Debian nova-compute package would pull libvirt and qemu
  daemon nova-compute nova /usr/bin/python3 -c 'import sys; from nova.cmd.compute import main; sys.exit(main())' --config-file "$f"
}

# --- Octavia :9876 with the no-op backends (Octavia's own functional-test setup): load balancers, listeners,
# pools, members and health monitors go through the real API, database, RabbitMQ and worker flows to ACTIVE and
# are deleted (also with cascade) the same way; no amphora VM boots, and the VIP is a documentation address
# (198.51.100.x) rather than a Neutron port. The API is octavia-api's simple server (one request at a time).
octavia_up() {
  id octavia >/dev/null 2>&1 || useradd --system --home-dir "$TC/octavia" --shell /usr/sbin/nologin octavia
  mkdb octavia octavia
  install -d -o octavia -g octavia "$TC/octavia" "$TC/octavia/lock"
  # the CA that signs the (no-op) amphorae's agent certificates, and the key their stored certificates are
  # encrypted with: throw-away, made once per state dir
  if [ ! -s "$TC/octavia/certs/ca.pem" ]; then
    install -d -o octavia -g octavia -m 700 "$TC/octavia/certs"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=govcloud testcloud octavia CA" \
      -keyout "$TC/octavia/certs/ca.key" -out "$TC/octavia/certs/ca.pem" >>"$LOGS/setup.log" 2>&1
    ( umask 077; python3 -c 'import secrets; print(secrets.token_hex(16))' > "$TC/octavia/certs/passphrase" )
    chown octavia:octavia "$TC/octavia/certs/"*
  fi
  { cat <<C
[DEFAULT]
transport_url = $RABBIT_URL
[api_settings]
bind_host = 127.0.0.1
bind_port = 9876
auth_strategy = keystone
default_provider_driver = amphora
enabled_provider_drivers = amphora:Amphora provider with the no-op compute/network/amphora backends
[database]
connection = $(dburl octavia octavia)
[controller_worker]
amphora_driver = amphora_noop_driver
compute_driver = compute_noop_driver
network_driver = network_noop_driver
volume_driver = volume_noop_driver
image_driver = image_noop_driver
loadbalancer_topology = SINGLE
workers = 1
client_ca = $TC/octavia/certs/ca.pem
[task_flow]
jobboard_enabled = False
[oslo_messaging]
topic = octavia_prov
[certificates]
ca_certificate = $TC/octavia/certs/ca.pem
ca_private_key = $TC/octavia/certs/ca.key
server_certs_key_passphrase = $(cat "$TC/octavia/certs/passphrase")
[oslo_concurrency]
lock_path = $TC/octavia/lock
C
    authtoken keystone_authtoken octavia; authtoken service_auth octavia; } | put "$ETC/octavia/octavia.conf" octavia 640 octavia-all
  register 'octavia:load-balancer:http://127.0.0.1:9876'
  once octavia-db-sync "$(pkgver python3-octavia)" runuser -u octavia -- octavia-db-manage \
    --config-file "$ETC/octavia/octavia.conf" upgrade head
  if dirty octavia-all; then DIRTY="$DIRTY octavia-api octavia-worker "; fi
  for s in api worker; do
    daemon "octavia-$s" octavia "/usr/bin/octavia-$s" --config-file "$ETC/octavia/octavia.conf" --log-file "$LOGS/octavia-$s.log"
  done
}

# --- client config ------------------------------------------------------------------------------
client_config() {
  put "$TC/clouds.yaml" root 600 client <<Y
# the govcloud loopback test cloud (scripts/testcloud): test-only credentials
clouds:
  testcloud:
    auth:
      auth_url: $KS/v3
      username: admin
      password: $ADMIN_PASS
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    identity_api_version: 3
    interface: public
Y
  put "$TC/openrc" root 600 client <<RC
# source me: the govcloud loopback test cloud's admin (test-only credentials)
export OS_AUTH_URL=$KS/v3 OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=$REGION
export OS_USERNAME=admin OS_PASSWORD=$ADMIN_PASS OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
export OS_CLIENT_CONFIG_FILE=$TC/clouds.yaml OS_CLOUD=testcloud
RC
}

mariadb_up
memcached_up
keystone_up
client_config
swift_up
if [ $ONLY_KS_SWIFT = 1 ]; then
  log "keystone + swift up in $(( $(date +%s) - T0 ))s; clouds.yaml: $TC/clouds.yaml (cloud testcloud)"
  exit 0
fi
rabbitmq_up
glance_up
placement_up
neutron_up
nova_up
octavia_up
up glance-api 90 http_ok http://127.0.0.1:9292/
up placement-api 90 http_ok http://127.0.0.1:8778/
up neutron-server 120 http_ok http://127.0.0.1:9696/
up nova-api 120 http_ok http://127.0.0.1:8774/
up octavia-api 120 http_ok http://127.0.0.1:9876/
# a compute host in the cell (the scheduler discovers it every 2 s), a tiny image, flavors,
# the external network 'public', roomy quotas for admin
setup_cloud resources >>"$LOGS/setup.log" 2>&1 || { tail -20 "$LOGS/setup.log" >&2; die "setup_cloud.py resources failed (log: $LOGS/setup.log)"; }
log "test cloud up in $(( $(date +%s) - T0 ))s; clouds.yaml: $TC/clouds.yaml (cloud testcloud), openrc: $TC/openrc"
