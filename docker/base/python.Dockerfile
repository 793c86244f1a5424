# A stand-in for python:3.11-slim where no registry is reachable (tools/docker-base.sh builds it
# on a Debian made with debootstrap): Debian's Python 3.11 in a venv that is first on PATH, so
# `python` and `pip install` behave as in the upstream image (no "externally managed" refusal).
# libpython3.11 is the shared library that Triton's python-backend stub loads.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv libpython3.11 \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /usr/local/python
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["python3"]
