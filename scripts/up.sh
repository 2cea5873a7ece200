#!/usr/bin/env bash
# All-in-one start: runs thecloud's daemons on this host, in the background, with their data, logs and pid
# files in ./.thecloud/. Idempotent: a daemon whose pid file points at a live process is left alone.
# Stop with scripts/down.sh (make down).
#
# Environment: THECLOUD_DATA_DIR (default ./.thecloud), THECLOUD_BIND (default 127.0.0.1),
# THECLOUD_API_PORT (8600), THECLOUD_RAFT_PORT (8700), THECLOUD_AGENT_API_PORT (8601, the controller's
# mutual-TLS port for agents), THECLOUD_AGENT_PORT (8620, the agent's own), THECLOUD_AGENT_DRIVER (docker;
# docker is installed and started if missing), THECLOUD_S3_PORT (8610), THECLOUD_STORAGE_BACKEND (file, in
# DATA/volumes), THECLOUD_NET_BACKEND (linuxbridge), THECLOUD_HEALTH_TIMEOUT (seconds, 30), THECLOUD_VENV (.venv).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=${THECLOUD_VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
BIN="$VENV/bin"
PY="$BIN/python"
DATA=${THECLOUD_DATA_DIR:-$ROOT/.thecloud}
case "$DATA" in /*) ;; *) DATA="$ROOT/$DATA" ;; esac
BIND=${THECLOUD_BIND:-127.0.0.1}
API_PORT=${THECLOUD_API_PORT:-8600}
RAFT_PORT=${THECLOUD_RAFT_PORT:-8700}
AGENT_API_PORT=${THECLOUD_AGENT_API_PORT:-8601}
AGENT_PORT=${THECLOUD_AGENT_PORT:-8620}
AGENT_DRIVER=${THECLOUD_AGENT_DRIVER:-docker}
HEALTH_TIMEOUT=${THECLOUD_HEALTH_TIMEOUT:-30}
S3_PORT=${THECLOUD_S3_PORT:-8610}
STORAGE_BACKEND=${THECLOUD_STORAGE_BACKEND:-file}
NET_BACKEND=${THECLOUD_NET_BACKEND:-linuxbridge}
HOST_NAME=${THECLOUD_HOST_NAME:-$(hostname)}
case "$BIND" in 0.0.0.0 | :: | "") URL_HOST=127.0.0.1 ;; *:*) URL_HOST="[$BIND]" ;; *) URL_HOST=$BIND ;; esac
API_URL="http://$URL_HOST:$API_PORT"

log() { echo "up: $*"; }
die() { echo "up: ERROR: $*" >&2; exit 1; }

# Pid from NAME's pid file if that process is alive and still looks like NAME (guards against pid reuse).
running_pid() {
    local pidf="$DATA/$1.pid" pid
    [ -s "$pidf" ] || return 1
    pid=$(tr -dc '0-9' <"$pidf")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$1"; then
        return 1
    fi
    echo "$pid"
}

# Fails if something already listens on HOST:PORT (so a health check cannot be answered by a stranger).
require_free_port() {
    "$PY" - "$1" "$2" <<'EOF' || die "$1:$2 is already in use by another process (see: ss -ltnp)"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like a server would: TIME_WAIT is no conflict
try:
    s.bind((host, port))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

STARTED=()  # daemons started by this run, stopped again if bringing the cluster up fails

# start_daemon NAME CMD...: runs CMD in the background in its own session, immune to hangups, output
# appended to $DATA/NAME.log, pid in $DATA/NAME.pid. Skips it when it is already running.
start_daemon() {
    local name=$1 pid pidf="$DATA/$1.pid" logf="$DATA/$1.log"
    shift
    if pid=$(running_pid "$name"); then
        log "$name is already running (pid $pid)"
        return 0
    fi
    rm -f "$pidf"
    printf '\n==== %s starting %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$*" >>"$logf"
    # The inner shell writes its own pid and then execs the daemon, so the pid file holds the daemon's
    # pid whether or not setsid had to fork.
    local detach=()
    if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi
    "${detach[@]}" nohup bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "$@" \
        >>"$logf" 2>&1 </dev/null &
    local i
    for ((i = 0; i < 50; i++)); do
        [ -s "$pidf" ] && break
        sleep 0.1
    done
    [ -s "$pidf" ] || fail "$name" "did not start (no pid file after 5 s)"
    STARTED+=("$name")
    log "$name started (pid $(cat "$pidf"), log $logf)"
}

# On failure: show the log, stop what this run started, exit 1.
fail() {
    local name=$1 logf="$DATA/$1.log" n
    shift
    echo "up: ERROR: $name $*" >&2
    if [ -f "$logf" ]; then
        echo "---- last 40 lines of $logf ----" >&2
        tail -n 40 "$logf" >&2
        echo "----" >&2
    fi
    for n in "${STARTED[@]}"; do
        THECLOUD_DATA_DIR="$DATA" "$ROOT/scripts/down.sh" "$n" >&2 || true
    done
    exit 1
}

# wait_healthy NAME URL [JSON-FIELD=VALUE]...: polls URL until it answers 200 with a JSON object whose
# fields have the given values, for up to $HEALTH_TIMEOUT s; fails early if NAME's process exits.
wait_healthy() {
    local name=$1 url=$2 pid out
    shift 2
    pid=$(running_pid "$name") || fail "$name" "exited during startup"
    if out=$("$PY" - "$url" "$HEALTH_TIMEOUT" "$pid" "$@" <<'EOF'
import json, os, sys, time, urllib.request

url, timeout, pid, want = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
want = dict(w.split("=", 1) for w in want)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy
deadline = time.monotonic() + timeout
last = "no answer yet"
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        print(f"exited while waiting for {url} (last: {last})")
        sys.exit(1)
    except PermissionError:
        pass
    try:
        with opener.open(url, timeout=2) as resp:
            body = json.loads(resp.read().decode() or "null")
        if isinstance(body, dict) and all(str(body.get(k)) == v for k, v in want.items()):
            print(", ".join(f"{k}={body.get(k)}" for k in ("status", "role") if k in body))
            sys.exit(0)
        last = f"HTTP 200 {json.dumps(body)[:200]}"
    except Exception as e:  # connection refused, HTTP error, bad JSON: keep polling
        last = f"{type(e).__name__}: {e}"
    time.sleep(0.25)
print(f"not healthy after {timeout:g} s at {url} (last: {last})")
sys.exit(1)
EOF
    ); then
        log "$name is healthy ($out)"
    else
        fail "$name" "$out"
    fi
}

# wait_host_up: polls until this host's agent heartbeats (host state up).
wait_host_up() {
    local out
    if out=$(THECLOUD_URL="$API_URL" THECLOUD_API_KEY="$(cat "$ADMIN_KEY")" "$PY" - "$HEALTH_TIMEOUT" "$HOST_NAME" \
        <<'EOF'
import sys, time
from shared.sdk import CloudClient, CloudError
timeout, name = float(sys.argv[1]), sys.argv[2]
deadline = time.monotonic() + timeout
state = "unknown"
with CloudClient.from_config() as client:
    while time.monotonic() < deadline:
        try:
            state = client.hosts.get(name)["state"]
        except CloudError as exc:
            state = str(exc)
        if state == "up":
            print("host " + name + " is up")
            sys.exit(0)
        time.sleep(0.25)
print(f"host {name} is not up after {timeout:g} s (last: {state})")
sys.exit(1)
EOF
    ); then
        log "agent is healthy ($out)"
    else
        fail agent "$out"
    fi
}

[ -x "$BIN/thecloud-controller" ] || die "$BIN/thecloud-controller not found: run 'make install' first"

umask 077
mkdir -p "$DATA"
chmod 0700 "$DATA"
mkdir -p "$DATA/controller"

SECRET="$DATA/cluster.secret"
ADMIN_KEY="$DATA/admin.key"
if [ ! -s "$SECRET" ]; then
    log "generating cluster secret $SECRET"
    "$BIN/thecloud-controller" gen-secret "$SECRET" || die "'thecloud-controller gen-secret $SECRET' failed"
    [ -s "$SECRET" ] || die "thecloud-controller gen-secret did not write $SECRET"
fi
chmod 0600 "$SECRET"

if [ "$AGENT_DRIVER" = docker ]; then
    log "making sure dockerd runs (scripts/services/docker.sh)"
    "$ROOT/scripts/services/docker.sh" || die "could not install or start docker; see the output above"
fi

log "making sure the storage and networking tools are installed"
"$ROOT/scripts/services/storage.sh" >/dev/null || die "could not install the storage tools (scripts/services/storage.sh)"
"$ROOT/scripts/services/packages.sh" iproute2 nftables dnsmasq-base >/dev/null \
    || die "could not install iproute2, nftables and dnsmasq-base"

# This host's address and uplink, for VXLAN and outbound NAT: the route to a public address (no traffic sent).
read -r UPLINK VTEP < <(ip -4 route get 192.0.2.1 2>/dev/null \
    | awk '{for (i = 1; i < NF; i++) {if ($i == "dev") d = $(i + 1); if ($i == "src") s = $(i + 1)}} END {print d, s}')
UPLINK=${THECLOUD_PUBLIC_INTERFACE:-${UPLINK:-lo}}
VTEP=${THECLOUD_VTEP:-${VTEP:-127.0.0.1}}

# ---- the daemons, in start order (scripts/down.sh stops them in reverse) ----------------------------
if ! running_pid controller >/dev/null; then
    require_free_port "$BIND" "$API_PORT"
    require_free_port "$BIND" "$RAFT_PORT"
    require_free_port "$BIND" "$AGENT_API_PORT"
fi
start_daemon controller "$BIN/thecloud-controller" run \
    --data-dir "$DATA/controller" \
    --api "$BIND:$API_PORT" \
    --raft "$BIND:$RAFT_PORT" \
    --agent-api "$BIND:$AGENT_API_PORT" \
    --cluster-secret-file "$SECRET" \
    --admin-key-file "$ADMIN_KEY"
wait_healthy controller "$API_URL/v1/health" status=ok role=leader

# The controller creates the admin key at startup; give it a moment if it is written after health is up.
for ((i = 0; i < 20; i++)); do
    [ -s "$ADMIN_KEY" ] && break
    sleep 0.25
done
[ -s "$ADMIN_KEY" ] || fail controller "is healthy but did not create the admin key file $ADMIN_KEY"

# The agent joins once (with a one-time token from the controller), then runs this host's instances.
if [ ! -s "$DATA/agent/identity.json" ]; then
    token=$(THECLOUD_URL="$API_URL" THECLOUD_API_KEY="$(cat "$ADMIN_KEY")" "$BIN/cloud" -o json host token create \
        --expires 10m | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["token"])') \
        || fail controller "did not hand out a join token"
    "$BIN/thecloud-agent" join --controller "$API_URL" --token "$token" --data-dir "$DATA/agent" \
        --name "$HOST_NAME" >>"$DATA/agent.log" 2>&1 || fail agent "could not join (see $DATA/agent.log)"
fi
if ! running_pid agent >/dev/null; then
    require_free_port 127.0.0.1 "$AGENT_PORT"
fi
start_daemon agent "$BIN/thecloud-agent" run \
    --data-dir "$DATA/agent" \
    --driver "$AGENT_DRIVER" \
    --listen "127.0.0.1:$AGENT_PORT" \
    --controller "$URL_HOST:$AGENT_API_PORT"
wait_host_up

# netd and storaged speak for the same host, with the identity the agent got at join.
start_daemon netd "$BIN/thecloud-netd" run \
    --backend "$NET_BACKEND" \
    --vtep "$VTEP" \
    --public-interface "$UPLINK" \
    --identity-dir "$DATA/agent" \
    --controller "$URL_HOST:$AGENT_API_PORT"
if ! running_pid storaged >/dev/null; then
    require_free_port "$BIND" "$S3_PORT"
fi
mkdir -p "$DATA/volumes"
start_daemon storaged "$BIN/thecloud-storaged" run \
    --data-dir "$DATA/storaged" \
    --s3 "$BIND:$S3_PORT" \
    --backend "$STORAGE_BACKEND" \
    --pool "$DATA/volumes" \
    --identity-dir "$DATA/agent" \
    --controller "$URL_HOST:$AGENT_API_PORT"
wait_healthy storaged "http://$URL_HOST:$S3_PORT/v1/health"
# --------------------------------------------------------------------------------------------------------

REL_KEY=${ADMIN_KEY#"$ROOT"/}
REL_VENV=${VENV#"$ROOT"/}
cat <<EOF

thecloud is up.
  API:        $API_URL
  Host:       $HOST_NAME (agent driver $AGENT_DRIVER, network $NET_BACKEND via $UPLINK, volumes $STORAGE_BACKEND)
  S3:         http://$URL_HOST:$S3_PORT   (keys: cloud s3 credentials create -o json)
  Admin key:  $ADMIN_KEY
  Logs:       $DATA/*.log

Log in (from $ROOT):
  source $REL_VENV/bin/activate
  export THECLOUD_URL=$API_URL THECLOUD_API_KEY=\$(cat $REL_KEY)
  cloud whoami          # or, without activating: $REL_VENV/bin/cloud whoami
  cloud instance create hello --image local/busybox --type tiny --wait -- sleep 3600
  cloud volume create data --size 1 && cloud volume attach data --instance hello --mount-path /data

Stop with: make down
EOF
