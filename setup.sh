#!/usr/bin/env bash
# afd setup: installs what is missing (Debian bookworm), builds, then runs or tests.
#   ./setup.sh run    build, then start gateway + attention node + expert nodes on the default model
#   ./setup.sh test   build, then run the whole test suite (ctest)
#   ./setup.sh build  install + build only
# Idempotent: packages already installed are skipped; the build directory is reused.
set -euo pipefail
cd "$(dirname "$0")"

ACTION=${1:-build}
BUILD_DIR=${AFD_BUILD_DIR:-build}
JOBS=${AFD_JOBS:-$(nproc)}

PACKAGES=(build-essential cmake ninja-build ccache pkg-config git curl ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libopenblas-dev libyaml-cpp-dev libhwy-dev nlohmann-json3-dev libonig-dev libpcre2-dev
  libcpp-httplib-dev libgtest-dev libgmock-dev libbenchmark-dev nodejs npm)

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # npm may come from a non-Debian node install; accept any working npm.
  if command -v npm >/dev/null 2>&1; then
    missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
    local tmp=(); for p in "${missing[@]}"; do [ -n "$p" ] && tmp+=("$p"); done; missing=("${tmp[@]+"${tmp[@]}"}")
  fi
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  echo "setup: installing ${missing[*]}"
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

install_packages
build

case "$ACTION" in
  build) ;;
  test)
    cd "$BUILD_DIR"
    ctest --output-on-failure -j "${AFD_TEST_JOBS:-2}" ${AFD_CTEST_ARGS:-}
    ;;
  run)
    shift || true
    if [ -x "$BUILD_DIR/bin/afd" ] && "$BUILD_DIR/bin/afd" help 2>/dev/null | grep -q '^  up'; then
      exec "$BUILD_DIR/bin/afd" up "$@"
    fi
    exec "$BUILD_DIR/bin/afd" run-default "$@"
    ;;
  *) echo "usage: $0 run|test|build" >&2; exit 2 ;;
esac
