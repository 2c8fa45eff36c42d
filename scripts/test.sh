#!/usr/bin/env bash
# Every test: plugin unit, table and property tests, the host's end-to-end tests through the real
# component and the numafit binary, and the component under the stock wasmtime CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-wasmtime-cli
export PATH="$HOME/.cargo/bin:$PATH"
# Backtraces on every wasmtime error make the trap tests slow and the output long.
export RUST_BACKTRACE=0
cargo test --workspace --locked
