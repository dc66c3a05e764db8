#!/usr/bin/env bash
# fetch_llama.sh DIR: llama.cpp's CPU shared libraries for llama_ref_bench, from the npm registry
# (the only package source this VM reaches besides apt): @node-llama-cpp/linux-x64, a prebuilt
# CPU build of ggml-org/llama.cpp (with the minimax-m2 architecture and one ggml CPU backend per
# x86 level, AVX-512/AMX included), MIT licensed. The tarball is checked against its sha256
# before anything is unpacked; the libraries land in DIR (kept: a second run does nothing).
# Prints DIR on success.
set -euo pipefail
dir=${1:?usage: fetch_llama.sh DIR}
PKG=@node-llama-cpp/linux-x64
VERSION=3.22.1
SHA256=0d953e1503d5ab4608d8ed5b739132308c81ac05ffeb760d2a7f30e08a9f90e0
stamp=$dir/.fetched-$VERSION
if [[ ! -f $stamp ]]; then
  command -v npm >/dev/null || { echo "fetch_llama.sh: npm is not installed" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$PKG@$VERSION" >/dev/null 2>"$tmp/npm.err") ||
    { echo "fetch_llama.sh: npm pack $PKG@$VERSION failed: $(tail -1 "$tmp/npm.err")" >&2; exit 1; }
  tarball=$(ls "$tmp"/*.tgz)
  actual=$(sha256sum "$tarball" | cut -d' ' -f1)
  [[ $actual == "$SHA256" ]] ||
    { echo "fetch_llama.sh: $tarball has sha256 $actual, expected $SHA256" >&2; exit 1; }
  tar -xzf "$tarball" -C "$tmp"
  mkdir -p "$dir"
  cp "$tmp"/package/bins/linux-x64/*.so "$tmp/package/LICENSE" "$dir/"
  touch "$stamp"
fi
echo "$dir"
