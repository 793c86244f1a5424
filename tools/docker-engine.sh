#!/usr/bin/env bash
# The Docker engine for the compose deployment on a machine without systemd.
#
#   tools/docker-engine.sh start   install Debian's engine if there is none, start dockerd, wait for it
#   tools/docker-engine.sh stop    stop the dockerd that `start` started (by its PID), and wait
#
# `start` reuses an engine that already answers (say one a person started) and then `stop`
# leaves it alone: only a dockerd whose PID this script wrote is ever stopped. The daemon runs
# with --iptables=false --bridge=none: containers use host networking only, so no bridge, no
# NAT and no iptables rules are made. Its data root is the default /var/lib/docker, so images
# and the build cache survive from one run to the next on the same machine.
set -euo pipefail

STATE=${MS_DOCKERD_STATE:-/var/run/marketing-scorer}
PIDFILE=$STATE/dockerd.pid
LOG=${MS_DOCKERD_LOG:-/var/log/marketing-scorer-dockerd.log}
WAIT_S=${MS_DOCKERD_WAIT_S:-60}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

say() { echo "docker-engine: $*" >&2; }

answers() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

ours() {  # the PID of the dockerd this script started, if it still runs
    [ -s "$PIDFILE" ] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = dockerd ] && echo "$pid"
}

install() {
    local started=$SECONDS
    say "installing Debian's docker.io and debootstrap (no engine on this machine)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    # policy-rc.d refuses to start services here (no systemd): harmless, dockerd is started below
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        docker.io debootstrap >/dev/null
    say "installed in $((SECONDS - started))s"
}

start() {
    if answers; then
        say "an engine already answers: $(docker info --format '{{.ServerVersion}}')"
        return 0
    fi
    command -v dockerd >/dev/null || install
    command -v debootstrap >/dev/null || install
    $SUDO mkdir -p "$STATE"
    local started=$SECONDS
    # setsid: its own session, so a Ctrl-C in the calling terminal does not reach the daemon
    $SUDO setsid dockerd --iptables=false --bridge=none --pidfile "$PIDFILE" >>"$LOG" 2>&1 </dev/null &
    until answers; do
        if ! kill -0 $! 2>/dev/null && ! ours >/dev/null; then
            say "dockerd exited; the end of $LOG:"
            tail -n 20 "$LOG" >&2
            return 1
        fi
        if ((SECONDS - started > WAIT_S)); then
            say "dockerd did not answer within ${WAIT_S}s; the end of $LOG:"
            tail -n 20 "$LOG" >&2
            stop
            return 1
        fi
        sleep 0.2
    done
    say "dockerd $(docker info --format '{{.ServerVersion}}') up in $((SECONDS - started))s (pid $(ours), log $LOG)"
}

stop() {
    local pid
    if ! pid=$(ours); then
        say "no dockerd started by this script is running"
        return 0
    fi
    $SUDO kill -TERM "$pid"
    # dockerd stops its containers (10 s each at most) and its containerd before it exits
    for _ in $(seq 1 600); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
        say "dockerd $pid still runs after 60 s: SIGKILL"
        $SUDO kill -KILL "$pid"
    fi
    $SUDO rm -f "$PIDFILE"
    say "dockerd $pid stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|stop" >&2
        exit 2
        ;;
esac
