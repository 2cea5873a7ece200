#!/usr/bin/env bash
# Stops the daemons scripts/up.sh started, by their pid files in ./.thecloud/ (SIGTERM, then SIGKILL after
# 10 s), and removes the pid files. Idempotent: nothing running is not an error.
#
# Usage: scripts/down.sh [NAME...]   (default: every NAME.pid in the data dir, host daemons before the
# controller). Environment: THECLOUD_DATA_DIR (default ./.thecloud), THECLOUD_STOP_TIMEOUT (seconds, 10).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${THECLOUD_DATA_DIR:-$PWD/.thecloud}
STOP_TIMEOUT=${THECLOUD_STOP_TIMEOUT:-10}

log() { echo "down: $*"; }

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

stop_daemon() {
    local name=$1 pid i
    if ! pid=$(running_pid "$name"); then
        if [ -e "$DATA/$name.pid" ]; then log "$name is not running (removing stale pid file)"; fi
        rm -f "$DATA/$name.pid"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop within ${STOP_TIMEOUT} s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$DATA/$name.pid"
    log "$name stopped"
}

[ -d "$DATA" ] || { log "nothing was running"; exit 0; }

if [ $# -gt 0 ]; then
    names=("$@")
else
    # Reverse of up.sh's start order: host daemons (and anything unknown) first, the controller last.
    known=(storaged netd agent controller)
    names=()
    for f in "$DATA"/*.pid; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .pid)
        case " ${known[*]} " in *" $n "*) ;; *) names+=("$n") ;; esac
    done
    names+=("${known[@]}")
fi

stopped=0
for n in "${names[@]}"; do
    if running_pid "$n" >/dev/null; then stopped=$((stopped + 1)); fi
    stop_daemon "$n"
done
if [ "$stopped" = 0 ] && [ $# = 0 ]; then log "nothing was running"; fi
