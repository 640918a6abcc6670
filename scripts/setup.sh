#!/usr/bin/env bash
# scripts/setup.sh -- install every Debian package the project needs (idempotent,
# non-interactive; needs root or sudo only when something is missing), then build.
#   scripts/setup.sh                 install + configure + build ./build
#   scripts/setup.sh --sanitize      the same for ./build-asan (ASan + UBSan)
#   scripts/setup.sh --packages-only install, no build
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential pkg-config meson ninja-build git
  libhdf5-dev hdf5-tools libcjson-dev libcriterion-dev
  python3-h5py python3-numpy
  libsdl2-dev libusb-1.0-0-dev libopenblas-dev libmujoco-dev libcairo2-dev
  xvfb xauth libxtst6 libx11-dev libgl1-mesa-dri libegl-dev libegl-mesa0 libgl-dev libosmesa6-dev
  umockdev libumockdev-dev libopenmpi-dev openmpi-bin
  libdnnl-dev
  chromium
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${#missing[@]} Debian package(s): ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "${1:-}" = "--packages-only" ] && exit 0

dir=build
opts=(-Dwerror=true)
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  # plain 'undefined' leaves float-to-int overflow out: a huge number cast to an int must be caught too
  opts+=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
    -Dc_args=-fsanitize=float-cast-overflow -Dc_link_args=-fsanitize=float-cast-overflow)
fi
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "${opts[@]}" >/dev/null
fi
ninja -C "$dir" >/dev/null
echo "setup: built $dir"
