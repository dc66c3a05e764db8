#!/usr/bin/env bash
# pack_binaries.sh: bundles the afd binaries a node-level benchmark needs, stripped, with the
# shared libraries `ldd` lists, into one tar.xz that runs on another x86-64 Linux host with
# glibc >= this one's (nothing installed there): extract it and set LD_LIBRARY_PATH=<dir>/lib.
# glibc itself stays out of lib/ (it must match the host's loader) and goes to glibc/ instead.
#
#   bench/scaleout/pack_binaries.sh build build/carry      # -> build/carry/afd-bin.tar.xz
set -euo pipefail
build=${1:?usage: pack_binaries.sh BUILD_DIR OUT_DIR}
out=${2:?usage: pack_binaries.sh BUILD_DIR OUT_DIR}
programs=(afd-gen-checkpoint afd-expert-node afd-attention-node afd-gateway afd-up afd-generate
          e2e_load_bench expert_roundtrip_bench expert_node_bench matmul_bench clock_bench)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/glibc" "$out"
for p in "${programs[@]}"; do
  if [[ ! -x "$build/bin/$p" ]]; then
    echo "pack_binaries: $build/bin/$p is missing (skipped)" >&2
    continue
  fi
  strip -o "$stage/bin/$p" "$build/bin/$p"
  ldd "$build/bin/$p" | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}'
done | sort -u | while read -r lib; do
  name=$(basename "$lib")
  case "$name" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) dest=glibc ;;
    *) dest=lib ;;
  esac
  cp -L "$lib" "$stage/$dest/$name"
  [[ $dest == lib ]] && strip --strip-unneeded "$stage/$dest/$name" 2>/dev/null || true
done
tar -C "$stage" -cJf "$out/afd-bin.tar.xz" bin lib glibc
du -h "$out/afd-bin.tar.xz"
