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

# The Python module (integrations/python), built by pip from this workspace into a venv and tested
# with pytest against the CLI just built. The dev profile reuses what cargo test compiled (a
# release build of wasmtime would add some five minutes); `pip install ./integrations/python`
# without it builds the optimised module an operator installs.
venv=target/python-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r integrations/python/requirements.txt
MATURIN_PEP517_ARGS="--profile dev" "$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps ./integrations/python
NUMAFIT_BIN="$PWD/target/debug/numafit" "$venv/bin/python" -m pytest -q integrations/python/tests

# The Nova filter (integrations/nova) in the same venv, with Nova 34.0.0 and its test dependencies
# pinned: Nova's own NUMATopologyFilter tests run against NUMAFitFilter, then the filter's tests.
# Nova's test fixtures give every test a fresh HOME; the compiled-policy cache stays put. Loading
# Nova's test modules switches the process to eventlet (nova-scheduler's default mode), so the
# filter's own tests run twice: beside Nova's, green, and alone, with native threads.
"$venv/bin/pip" install -q --disable-pip-version-check -r integrations/nova/requirements.txt
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps ./integrations/nova
export NUMAFIT_CACHE_DIR="$PWD/target/numafit-cache" NUMAFIT_BIN="$PWD/target/debug/numafit" PYTHONWARNINGS=ignore
(cd integrations/nova/tests && "../../../$venv/bin/python" -m unittest test_nova_filter_suite test_filter test_render)
(cd integrations/nova/tests && "../../../$venv/bin/python" -m unittest test_filter)
