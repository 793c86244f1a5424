#!/usr/bin/env bash
# `docker compose` v2 from its Go module, for machines where it is not packaged (Debian ships
# only compose v1). The plugin goes where the docker CLI looks for it,
# ~/.docker/cli-plugins/docker-compose, and is rebuilt only when its version is not the pinned one.
#
#   tools/compose-plugin.sh        build it if needed, then print `docker compose version`
#
# `go install module@version` refuses this module (its go.mod has exclude directives), so the
# pinned module is downloaded through the Go module proxy, its hash checked against the one
# pinned here (as a go.sum line would), copied somewhere writable and built there with its own
# go.mod and go.sum. A cold build takes about 2 min on 2 cores and fills ~1.4 GB of Go caches
# (GOMODCACHE, GOCACHE), which make a rebuild after a version bump much faster.
set -euo pipefail

MODULE=github.com/docker/compose/v2
VERSION=v2.40.3
SUM=h1:XeYkQu1svDtyfZPv5nTwFryQ25ZJMkIlc4pz9HalMPI=
PLUGIN=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose

say() { echo "compose-plugin: $*" >&2; }

if [ -x "$PLUGIN" ] && [ "$("$PLUGIN" version --short 2>/dev/null)" = "${VERSION#v}" ]; then
    docker compose version
    exit 0
fi
command -v go >/dev/null || { say "go is needed to build docker compose $VERSION"; exit 1; }

started=$SECONDS
info=$(go mod download -json "$MODULE@$VERSION")
field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}$/\1/p" <<<"$info"; }
if [ "$(field Sum)" != "$SUM" ]; then
    say "$MODULE@$VERSION has hash $(field Sum), pinned $SUM: refusing to build it"
    exit 1
fi
work=$(mktemp -d)
trap 'chmod -R u+w "$work" && rm -rf "$work"' EXIT
cp -r "$(field Dir)/." "$work/src"  # the module cache is read-only; the build writes beside go.mod
chmod -R u+w "$work/src"
say "building docker compose $VERSION (about 2 min on 2 cores the first time)"
mkdir -p "$(dirname "$PLUGIN")"
if ! (cd "$work/src" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X $MODULE/internal.Version=$VERSION" -o "$PLUGIN.tmp" ./cmd) >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    say "go build failed"
    exit 1
fi
mv "$PLUGIN.tmp" "$PLUGIN"
say "built in $((SECONDS - started))s: $PLUGIN"
docker compose version
