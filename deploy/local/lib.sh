# Shared by the deploy/local scripts: where things live, which ports they use, and small helpers.
# Every component's state lives under $STATE (git-ignored .vaxtrail/ in the clone); installed
# tools and the cargo target dir live under $CACHE so a fresh clone reuses them.
# shellcheck shell=bash

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${VAXTRAIL_STATE_DIR:-$REPO/.vaxtrail}
CACHE=${VAXTRAIL_CACHE_DIR:-$HOME/.cache/vaxtrail}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
# Tools installed once per machine (Tansu, promtool, kubernetes-validate), found by the tests here.
export VAXTRAIL_TOOLS=$CACHE/tools
# VAXTRAIL_BUILD=release runs the stack and the services from release builds (for benchmarks;
# building them takes about twice as long). The tests always use the debug build.
BUILD=${VAXTRAIL_BUILD:-debug}
case $BUILD in
  debug) BUILD_FLAGS=() ;;
  release) BUILD_FLAGS=(--release) ;;
  *) echo "VAXTRAIL_BUILD must be debug or release, not $BUILD" >&2; exit 2 ;;
esac
BIN=$CARGO_TARGET_DIR/$BUILD

TANSU_VERSION=0.6.0
TANSU=$CACHE/tools/bin/tansu
PG_BIN=${VAXTRAIL_PG_BIN:-/usr/lib/postgresql/15/bin}

BROKER_PORT=${VAXTRAIL_BROKER_PORT:-9092}
REGISTRY_PORT=${VAXTRAIL_REGISTRY_PORT:-8081}
PG_PORT=${VAXTRAIL_PG_PORT:-5433}
REDIS_PORT=${VAXTRAIL_REDIS_PORT:-6380}
CH_HTTP_PORT=${VAXTRAIL_CLICKHOUSE_HTTP_PORT:-18123}
CH_TCP_PORT=${VAXTRAIL_CLICKHOUSE_TCP_PORT:-19000}

# Our own instances' URLs. A different URL given by the caller means "use that server, start none
# of ours". (Comparing, rather than testing for "set", keeps nested scripts, which inherit the URLs
# exported below, from taking our own servers for external ones.)
OWN_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/vaxtrail
OWN_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
OWN_CH_URL=http://127.0.0.1:$CH_HTTP_PORT
external() { [ -n "$1" ] && [ "$1" != "$2" ] && echo 1 || true; }
EXTERNAL_PG=$(external "${VAXTRAIL_DATABASE_URL:-}" "$OWN_PG_URL")
EXTERNAL_REDIS=$(external "${VAXTRAIL_REDIS_URL:-}" "$OWN_REDIS_URL")
EXTERNAL_CH=$(external "${VAXTRAIL_CLICKHOUSE_URL:-}" "$OWN_CH_URL")
export VAXTRAIL_KAFKA_BROKERS=${VAXTRAIL_KAFKA_BROKERS:-127.0.0.1:$BROKER_PORT}
export VAXTRAIL_SCHEMA_REGISTRY_URL=${VAXTRAIL_SCHEMA_REGISTRY_URL:-http://127.0.0.1:$REGISTRY_PORT}
export VAXTRAIL_DATABASE_URL=${VAXTRAIL_DATABASE_URL:-$OWN_PG_URL}
export VAXTRAIL_REDIS_URL=${VAXTRAIL_REDIS_URL:-$OWN_REDIS_URL}
export VAXTRAIL_CLICKHOUSE_URL=${VAXTRAIL_CLICKHOUSE_URL:-$OWN_CH_URL}
# Tokens: the services trust this machine's development key unless told otherwise.
export VAXTRAIL_JWKS=${VAXTRAIL_JWKS:-$STATE/keys/dev-jwks.json}
export VAXTRAIL_DEV_TOKEN_KEY=${VAXTRAIL_DEV_TOKEN_KEY:-$STATE/keys/dev-token-key.json}
export VAXTRAIL_ISSUER_KEYS=${VAXTRAIL_ISSUER_KEYS:-$STATE/keys/issuer}
# The query API gets the public halves only (`vaxctl keys` keeps this directory in step).
export VAXTRAIL_ISSUER_PUBLIC_KEYS=${VAXTRAIL_ISSUER_PUBLIC_KEYS:-$STATE/keys/issuer-public}
# The local programme prints its certificates' labels in English and Hindi (the query API's
# VAXTRAIL_PDF_LANGUAGES; set it empty for English only).
export VAXTRAIL_PDF_LANGUAGES="${VAXTRAIL_PDF_LANGUAGES-*=hi}"
# EU DCC document signers (P-256 keys and their certificates, `vaxctl dsc`): the signers sign
# with them; the query API gets the certificates only, and serves them as the trust list.
export VAXTRAIL_EU_DCC_SIGNERS=${VAXTRAIL_EU_DCC_SIGNERS:-$STATE/keys/eu-dcc}
export VAXTRAIL_EU_DCC_PUBLIC=${VAXTRAIL_EU_DCC_PUBLIC:-$STATE/keys/eu-dcc-public}
# SMART Health Card keys (P-256, `vaxctl shc-keys`): the signers sign with them; the query API
# gets the public halves and serves them at /.well-known/jwks.json.
export VAXTRAIL_SHC_KEYS=${VAXTRAIL_SHC_KEYS:-$STATE/keys/shc}
export VAXTRAIL_SHC_PUBLIC=${VAXTRAIL_SHC_PUBLIC:-$STATE/keys/shc-public}
# Personal data is sealed with per-recipient data keys kept, wrapped by this key-encryption key,
# in the key store (a schema of the local PostgreSQL; `vaxctl keystore init` writes the key file).
export VAXTRAIL_KEYSTORE_URL=${VAXTRAIL_KEYSTORE_URL:-$VAXTRAIL_DATABASE_URL}
export VAXTRAIL_KEK_FILE=${VAXTRAIL_KEK_FILE:-$STATE/keys/kek.key}
# This machine is a developer's: the development secrets (ids, recipient keys, holder codes) and
# the machine-local token key are accepted. Anywhere else the services refuse to start with them.
export VAXTRAIL_ENVIRONMENT=${VAXTRAIL_ENVIRONMENT:-development}
export VAXTRAIL_ISSUER_DID=${VAXTRAIL_ISSUER_DID:-did:web:127.0.0.1%3A8090}
export VAXTRAIL_PUBLIC_BASE_URL=${VAXTRAIL_PUBLIC_BASE_URL:-http://127.0.0.1:8090}
# The master-data page (query API, /admin) calls the command API from the browser.
export VAXTRAIL_ADMIN_ORIGINS=${VAXTRAIL_ADMIN_ORIGINS:-http://${VAXTRAIL_QUERY_API_ADDRESS:-127.0.0.1:8090}}
export VAXTRAIL_COMMAND_API_PUBLIC_URL=${VAXTRAIL_COMMAND_API_PUBLIC_URL:-http://${VAXTRAIL_COMMAND_API_ADDRESS:-127.0.0.1:8080}}

# The project's services: name, binary, listen address (each address can be moved, for tests).
SERVICES=(
  "command-api command-api ${VAXTRAIL_COMMAND_API_ADDRESS:-127.0.0.1:8080}"
  "signer-worker signer-worker ${VAXTRAIL_SIGNER_ADDRESS:-127.0.0.1:9101}"
  "projectors projectors ${VAXTRAIL_PROJECTORS_ADDRESS:-127.0.0.1:9102}"
  "query-api query-api ${VAXTRAIL_QUERY_API_ADDRESS:-127.0.0.1:8090}"
)

say() { printf '\033[1m%s\033[0m %s\n' "vaxtrail:" "$*" >&2; }
die() { printf '\033[31mvaxtrail: %s\033[0m\n' "$*" >&2; exit 1; }

# as_root CMD...: runs a command as root, through sudo when we are not root.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# pid_alive PIDFILE: the pid file exists and names a live process.
pid_alive() { [ -s "$1" ] && kill -0 "$(head -n1 "$1")" 2>/dev/null; }

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until SECONDS DESCRIPTION CMD...: polls CMD until it succeeds or the deadline passes.
wait_until() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# stop_pid NAME PIDFILE: SIGTERM, wait up to 30 s, then SIGKILL. Never by process name.
stop_pid() {
  local name=$1 pidfile=$2
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    return 0
  fi
  local pid; pid=$(head -n1 "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until 30 "$name to stop" bash -c "! kill -0 $pid"; then
    say "$name ($pid) did not stop on SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "$name stopped"
}

# spawn NAME PIDFILE LOGFILE CMD...: starts CMD detached from this shell, recording its pid.
spawn() {
  local name=$1 pidfile=$2 logfile=$3; shift 3
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
  setsid "$@" >>"$logfile" 2>&1 < /dev/null &
  echo $! > "$pidfile"
}

# Postgres refuses to run as root: its cluster belongs to the postgres user, which must be able
# to reach it. When the clone sits where that user cannot look (under /root, say), the cluster
# lives under /var/lib/vaxtrail instead, named after the clone.
pg_dir() {
  if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
    echo "$STATE/postgres"
  else
    echo "/var/lib/vaxtrail/$(printf '%s' "$REPO" | sha256sum | cut -c1-12)/postgres"
  fi
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# tail_log FILE: the end of a log, to explain a failure.
tail_log() { [ -f "$1" ] && tail -n 20 "$1" >&2 || true; }

# running_components: the names of the stack's components this clone has running now.
running_components() {
  [ -z "$EXTERNAL_PG" ] && [ -s "$(pg_dir)/data/postmaster.pid" ] && pid_alive "$(pg_dir)/data/postmaster.pid" && echo postgres
  [ -z "$EXTERNAL_REDIS" ] && pid_alive "$STATE/redis/redis.pid" && echo redis
  [ -z "$EXTERNAL_CH" ] && pid_alive "$STATE/clickhouse/clickhouse.pid" && echo clickhouse
  pid_alive "$STATE/broker/tansu.pid" && echo broker
  pid_alive "$STATE/registry/registry.pid" && echo registry
  local entry name
  for entry in "${SERVICES[@]}"; do
    read -r name _ _ <<<"$entry"
    pid_alive "$STATE/services/$name.pid" && echo "$name"
  done
  return 0
}

# The shared target dir outlives clones and sessions. Every change to the dependency graph leaves
# another copy of each test binary (~180 MB each, 13 binaries) and incremental caches grow with
# each edit, so a busy machine once filled its disk and the linker died with SIGBUS mid-CI.
# Before building: keep only the newest executable of each name in deps/, and when the disk is
# still short of $VAXTRAIL_MIN_FREE_GB (default 25), drop the incremental caches too (they only
# make rebuilds faster; cargo recreates them).
prune_target() {
  local deps=$CARGO_TARGET_DIR/debug/deps freed=0 stem file
  [ -d "$deps" ] || return 0
  declare -A newest=()
  while IFS= read -r file; do
    stem=${file##*/}
    stem=${stem%-*}
    if [ -n "${newest[$stem]:-}" ]; then
      freed=$((freed + $(stat -c %s "$file")))
      rm -f "$file"
    else
      newest[$stem]=$file
    fi
  done < <(find "$deps" -maxdepth 1 -type f -executable ! -name '*.so' -printf '%T@ %p\n' \
    | sort -rn | cut -d' ' -f2-)
  [ "$freed" -eq 0 ] || say "target dir: removed $((freed / 1048576)) MB of superseded binaries"
  local free_gb
  free_gb=$(df -P --block-size=1G "$CARGO_TARGET_DIR" | awk 'NR==2 {print $4}')
  if [ "$free_gb" -lt "${VAXTRAIL_MIN_FREE_GB:-25}" ] && [ -d "$CARGO_TARGET_DIR/debug/incremental" ]; then
    say "target dir: only ${free_gb} GB free, removing incremental caches"
    rm -rf "$CARGO_TARGET_DIR/debug/incremental"
  fi
}
