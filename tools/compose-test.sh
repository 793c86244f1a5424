#!/usr/bin/env bash
# The compose suite (tests/compose) from nothing: the Docker engine (installed and started if
# none runs), the compose v2 plugin, the base images, then pytest, which builds the images and
# brings the deployment up once. Whatever happens, the deployment's containers are removed and
# the dockerd this script started is stopped by its PID.
#
#   tools/compose-test.sh [PYTEST ARGS...]      (make compose-test; needs `make models` first)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

step() {  # NAME COMMAND...: run it, say how long it took
    local started=$SECONDS
    "${@:2}"
    echo "compose-test: $1 took $((SECONDS - started))s" >&2
}

cleanup() {  # containers and volumes of suite runs that were killed before their `down`
    local ids volumes
    ids=$(docker ps -a --format '{{.ID}} {{.Label "com.docker.compose.project"}}' | awk '$2 ~ /^ms-compose-test-/ {print $1}')
    volumes=$(docker volume ls -q | grep '^ms-compose-test-' || true)
    if [ -n "$ids$volumes" ]; then
        echo "compose-test: removing what an earlier run left: $ids $volumes" >&2
        # shellcheck disable=SC2086
        { [ -z "$ids" ] || docker rm -f $ids; [ -z "$volumes" ] || docker volume rm $volumes; } >/dev/null
    fi
}

finish() {
    local code=$?
    cleanup || code=1
    tools/docker-engine.sh stop || code=1
    exit "$code"
}

trap finish EXIT
trap 'exit 130' INT  # a signal ends the script through `finish` too
trap 'exit 143' TERM
step "engine install and start" tools/docker-engine.sh start
cleanup
step "compose plugin" tools/compose-plugin.sh
step "base images" tools/docker-base.sh
step "compose suite" "$PYTHON" -m pytest tests/compose "$@"
