#!/usr/bin/env bash
# The container lane's podman setup and Debian base image (docs/deployment.md, "Containers").
#
#   scripts/container-base.sh conf   # print the CONTAINERS_CONF file to use (written if missing)
#   scripts/container-base.sh base   # print the base image's tag, building it first when absent
#
# No registry serves base images on this machine, so the base is built from Debian packages with
# mmdebstrap and `podman import`ed; the Dockerfile takes it as --build-arg BASE=<tag>. Its tag carries a
# hash of everything that goes into it, so a second run finds it and returns at once, and a change
# (packages, suite, mirror, CA bundle, RECIPE) builds a new one. The host's CA bundle is copied in: builds here reach
# PyPI through a proxy whose certificate only the host's bundle trusts.
set -euo pipefail

STATE=${DRIFTLOOP_CONTAINER_STATE:-/var/tmp/driftloop-container}
SUITE=bookworm                      # Debian 12: python3 is 3.11, as the cp311 torch wheel needs
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,ca-certificates,libgomp1,passwd
CA_BUNDLE=${DRIFTLOOP_CONTAINER_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
RECIPE=1                            # bump when the mmdebstrap hooks below change

conf() {
  # runc (crun is not installed), cgroupfs (no systemd session), no default ulimits (the sandbox refuses
  # raising them), events in a file (no journald; `podman events` reads them). Tests use --network host
  # only, so no network backend is needed. A CONTAINERS_CONF the caller set is used as it is.
  if [[ -n ${CONTAINERS_CONF:-} ]]; then
    echo "$CONTAINERS_CONF"
    return
  fi
  mkdir -p "$STATE"
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n' \
    >"$STATE/containers.conf"
  echo "$STATE/containers.conf"
}

base() {
  local key tag
  CONTAINERS_CONF=$(conf)
  export CONTAINERS_CONF
  key=$( { echo "$RECIPE $SUITE $MIRROR $PACKAGES"; [[ -r $CA_BUNDLE ]] && cat "$CA_BUNDLE"; } | sha256sum | cut -c1-12)
  tag=localhost/driftloop-base:$SUITE-$key
  if podman image exists "$tag"; then
    echo "$tag"
    return
  fi
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap is not installed" >&2; exit 3; }
  mkdir -p "$STATE"
  TAR=$(mktemp "$STATE/base-XXXXXX.tar")
  trap 'rm -f "$TAR"' EXIT
  local hooks=()
  [[ -r $CA_BUNDLE ]] && hooks+=(--customize-hook="copy-in $CA_BUNDLE /etc/ssl/certs")
  echo "building the Debian $SUITE base with mmdebstrap (about a minute)…" >&2
  mmdebstrap --quiet --variant=apt --include="$PACKAGES" "${hooks[@]}" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$SUITE" "$TAR" "$MIRROR" >&2
  podman import --quiet --change 'CMD ["/bin/bash"]' "$TAR" "$tag" >/dev/null
  echo "$tag"
}

case ${1:-} in
  conf) conf ;;
  base) base ;;
  *) echo "usage: $0 conf|base" >&2; exit 2 ;;
esac
