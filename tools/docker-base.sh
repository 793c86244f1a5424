#!/usr/bin/env bash
# The base images the test deployment builds on, made here because no container registry is
# reachable: nothing can be pulled, so `python:3.11-slim` and the rest do not exist locally.
#
#   tools/docker-base.sh      make ms-base/debian:bookworm, ms-base/python:3.11, ms-base/node:18
#
# ms-base/debian:bookworm is `debootstrap --variant=minbase bookworm`, imported with
# `docker import`, with what lets apt, pip, npm and Maven inside a build reach the registries as
# this host does: its apt sources and the apt settings that touch downloads (Acquire::*), its
# locally added CA certificates and its CA bundle, and a pip config naming that bundle. The
# python and node bases are built on it by docker/base/compose.yaml (Debian's python3.11 in a venv on
# PATH, Debian's nodejs and npm). The debootstrap is redone only when its inputs change (this
# script, the CA bundle, the apt files copied): their hash is a label of the image, and images
# stay in the engine's store between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
DEBIAN=ms-base/debian:$SUITE
LABEL=org.marketing-scorer.base-inputs
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

say() { echo "docker-base: $*" >&2; }

apt_files() {  # the host's apt sources, and the apt.conf.d files that set download options
    ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    grep -l '^[[:space:]]*Acquire' /etc/apt/apt.conf.d/* 2>/dev/null || true
}

mirror() {  # the host's first Debian mirror, for debootstrap itself
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    [ -n "$uri" ] || uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]*\/debian\)[[:space:]]\+.*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1)
    echo "${uri:-http://deb.debian.org/debian}"
}

inputs_hash() {
    # shellcheck disable=SC2046
    cat "$0" "$CA_BUNDLE" $(apt_files) /usr/local/share/ca-certificates/* 2>/dev/null | sha256sum | cut -c1-16
}

debian_base() {
    local want have
    want=$(inputs_hash)
    have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$DEBIAN" 2>/dev/null || true)
    if [ "$have" = "$want" ]; then
        say "$DEBIAN is up to date ($want)"
        return 0
    fi
    command -v debootstrap >/dev/null || {
        say "debootstrap is missing: tools/docker-engine.sh start installs it"
        return 1
    }
    local started=$SECONDS rootfs
    rootfs=$(mktemp -d /var/tmp/ms-rootfs.XXXXXX)
    # shellcheck disable=SC2064
    trap "$SUDO rm -rf '$rootfs'" RETURN
    say "debootstrap $SUITE from $(mirror) (about 30 s)"
    $SUDO debootstrap --variant=minbase "$SUITE" "$rootfs" "$(mirror)" >"$rootfs.log" 2>&1 || {
        tail -n 20 "$rootfs.log" >&2
        return 1
    }
    rm -f "$rootfs.log"
    local file
    for file in $(apt_files); do
        $SUDO install -D -m 0644 "$file" "$rootfs$file"
    done
    [ -f /etc/apt/sources.list.d/debian.sources ] && $SUDO rm -f "$rootfs/etc/apt/sources.list"
    $SUDO mkdir -p "$rootfs/usr/local/share/ca-certificates" "$rootfs/etc/ssl/certs"
    $SUDO cp -L /usr/local/share/ca-certificates/* "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    $SUDO cp -L "$CA_BUNDLE" "$rootfs$CA_BUNDLE"
    printf '[global]\ncert = %s\n' "$CA_BUNDLE" | $SUDO tee "$rootfs/etc/pip.conf" >/dev/null
    $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    $SUDO tar -C "$rootfs" -c . | docker import \
        --change "LABEL $LABEL=$want" \
        --change "ENV SSL_CERT_FILE=$CA_BUNDLE NODE_EXTRA_CA_CERTS=$CA_BUNDLE LANG=C.UTF-8" \
        --change 'CMD ["bash"]' \
        - "$DEBIAN" >/dev/null
    say "$DEBIAN imported in $((SECONDS - started))s ($want)"
}

debian_base
started=$SECONDS
docker compose -f docker/base/compose.yaml build --quiet
say "ms-base/python:3.11 and ms-base/node:18 ready in $((SECONDS - started))s"
