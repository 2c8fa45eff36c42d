#!/usr/bin/env bash
# Installs what building and testing numafit needs beyond the Rust toolchain: the wasm target the
# policy component is compiled for, and (for the test that runs the component without numafit's
# host) the stock wasmtime CLI. Idempotent; quiet when everything is there.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

if [ "${1:-}" = "--with-wasmtime-cli" ]; then
  # The tests of applying placements: virt-xml-validate (libvirt's domain schema, with xmllint)
  # checks the rendered libvirt XML; numactl --show reads back a started process's memory policy.
  if ! command -v virt-xml-validate >/dev/null || ! command -v xmllint >/dev/null || ! command -v numactl >/dev/null; then
    echo "installing libvirt-clients, libxml2-utils and numactl (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends libvirt-clients libxml2-utils numactl >/dev/null ||
      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends libvirt-clients libxml2-utils numactl >/dev/null; }
  fi
  if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8'; then
    echo "installing wasmtime-cli 48.0.8 (about 8 minutes, once)" >&2
    cargo install wasmtime-cli --version 48.0.8 --locked
  fi
fi
