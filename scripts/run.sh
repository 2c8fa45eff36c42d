#!/usr/bin/env bash
# The main job on the embedded default policy: place the sample request on the sample host and
# print the pinned placement. Extra arguments go to `numafit fit` (e.g. --json, --strategy pack).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --quiet --release --locked -p numafit -- fit --host examples/host.json --request examples/request.json "$@"
