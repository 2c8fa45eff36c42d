//! The default policy runs under the stock `wasmtime` CLI, with no numafit host at all: the
//! component imports nothing, and its exports are called with WAVE-encoded arguments.

mod support;
use support::*;

use std::process::Command;

fn wasmtime() -> Option<String> {
    let found = Command::new("wasmtime").arg("--version").output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&found.stdout).into_owned())
}

#[test]
fn the_stock_wasmtime_cli_runs_the_component() {
    let Some(version) = wasmtime() else {
        if std::env::var_os("NUMAFIT_SKIP_WASMTIME_CLI").is_some() {
            eprintln!("wasmtime CLI not installed; skipped because NUMAFIT_SKIP_WASMTIME_CLI is set");
            return;
        }
        panic!("the wasmtime CLI is not on PATH: `cargo install wasmtime-cli --version 48.0.8 --locked` (scripts/test.sh does this)");
    };
    assert!(version.contains("48.0"), "expected wasmtime 48: {version}");
    let dir = scratch("wasmtime-cli");
    let wasm = dir.join("nova.wasm");
    let o = numafit(&["export-plugin", wasm.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let run = |call: &str| {
        let o = Command::new("wasmtime").args(["run", "--invoke", call]).arg(&wasm).output().expect("wasmtime runs");
        assert!(o.status.success(), "wasmtime run --invoke {call:?} failed: {}", stderr(&o));
        stdout(&o)
    };
    let info = run("info()");
    assert!(info.contains(r#"name: "nova""#) && info.contains(r#"contract: "0.5.0""#), "{info}");

    // Two host cells of one SMT core each; a 2-vCPU dedicated guest packs onto one core's threads.
    let cell = |id: u32| format!("{{id: {id}, memory-mb: 4096, memory-used-mb: 0, shared-vcpus-used: 0, socket: none}}");
    // CPUs 0,1 (one core) on cell 0 and 2,3 (one core) on cell 1, all pinnable (role bit 1).
    let host = format!(
        "{{cells: [{}, {}], cpus: {{ids: [0, 1, 2, 3], cells: [0, 0, 1, 1], cores: [0, 0, 1, 1], roles: [2, 2, 2, 2], l3: []}}, \
         pages: [], distances: [], pci-pools: [], networks: []}}",
        cell(0),
        cell(1)
    );
    let request =
        "{cells: [{memory-mb: 1024, page-size: none}], shared-vcpus: {cells: [], ids: []}, dedicated-vcpus: {cells: [0, 0], ids: [0, 1]}, \
                   cpu-policy: some(dedicated), thread-policy: none, emulator-threads: none, pci-requests: []}";
    let limits = "{cpu-allocation-ratio: none, ram-allocation-ratio: none, network: none, strategy: spread}";
    let out = run(&format!("fit({host}, {request}, {limits})"));
    assert!(out.starts_with("ok("), "{out}");
    assert!(out.contains("host-cell: 0") && out.contains("pinned: {cells: [0, 0], vcpus: [0, 1], pcpus: [0, 1]}"), "{out}");

    // A guest too big for either cell: a rejection with per-cell numbers.
    let big = request.replace("{cells: [0, 0], ids: [0, 1]}", "{cells: [0, 0, 0], ids: [0, 1, 2]}");
    let out = run(&format!("fit({host}, {big}, {limits})"));
    assert!(out.starts_with("err(") && out.contains("pinnable-cpus") && out.contains("needed: 3"), "{out}");
}
