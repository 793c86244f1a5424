# A stand-in for node:20-slim where no registry is reachable (tools/docker-base.sh builds it on a
# Debian made with debootstrap): Debian's nodejs 18 and npm 9, enough for `npm ci` of a v3 lockfile.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
CMD ["node"]
