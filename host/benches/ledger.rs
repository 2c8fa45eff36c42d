//! Load generator for the claims ledger (not criterion: it measures whole processes and
//! concurrent writers). Prints, in one run, side by side:
//! - `numafit claim --instance` end to end, sequentially, process start included (claims/s);
//! - the library API with 1 and 4 concurrent writers, each its own connection (claims/s), and the
//!   p50/p99 of one claim transaction;
//! - the database size after 100,000 claim/release cycles.
//!
//! `cargo bench -p numafit --bench ledger` (`LEDGER_CYCLES=N` for fewer cycles).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use numafit_host::formats::{self, PlacementJson, RequestJson};
use numafit_host::ledger::{Ledger, NewClaim, PolicyVersion, Recorded};
use numafit_host::verify;
use numafit_plugin::{HostTopology, Placement};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("numafit-ledger-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn machine() -> PathBuf {
    root().join("tests/fixtures/numactl/2node-8cpu.txt")
}

fn base() -> HostTopology {
    let text = std::fs::read_to_string(machine()).expect("machine");
    let topo = numafit_host::discover::parse_numactl(&text, &machine()).expect("numactl");
    topo.host(&Default::default()).expect("host")
}

/// A placement pinning host CPUs `cpus` (on host cell `cell`) for one guest cell of two vCPUs.
fn placement(cell: u32, cpus: [u32; 2]) -> PlacementJson {
    let doc = serde_json::json!({
        "fits": true, "policy": "nova", "cpu_policy": "dedicated", "numa_constrained": true,
        "cells": [{"guest_cell": 0, "host_cell": cell, "cpuset": [], "pcpuset": [0, 1], "memory": 1024,
                   "pagesize_kb": null, "cpu_pinning": {"0": cpus[0], "1": cpus[1]}}]
    });
    serde_json::from_value(doc).expect("placement")
}

fn admit(host: &HostTopology, p: &Placement) -> Result<HostTopology, String> {
    verify::admit(host, p, None)
}

fn policy() -> PolicyVersion {
    PolicyVersion { name: "nova".into(), version: "bench".into(), sha256: "0".repeat(64) }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `writers` threads, each its own connection and its own CPUs, claim and release `cycles` times.
fn library(writers: u32, cycles: u32) -> (f64, Vec<Duration>) {
    let dir = scratch(&format!("lib-{writers}"));
    let base = base();
    let start = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (dir, base) = (&dir, &base);
                scope.spawn(move || {
                    let mut ledger = Ledger::open(dir).expect("ledger");
                    let p = placement(w / 2, [w * 2, w * 2 + 1].map(|c| c % 8));
                    let mut lat = Vec::with_capacity(cycles as usize);
                    for i in 0..cycles {
                        let claim = NewClaim {
                            instance: format!("w{w}-{i}"),
                            request: serde_json::json!({}),
                            placement: p.clone(),
                            policy: policy(),
                            owner: None,
                            generation: None,
                        };
                        let t = Instant::now();
                        match ledger.record(base, claim, &admit).expect("record") {
                            Recorded::New(_) => {}
                            other => panic!("writer {w}: {other:?}"),
                        }
                        lat.push(t.elapsed());
                        ledger.release(&format!("w{w}-{i}")).expect("release");
                    }
                    lat
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("writer")).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut lat = latencies;
    lat.sort_unstable();
    (f64::from(writers * cycles) / secs, lat)
}

fn cli(claims: u32) -> f64 {
    let dir = scratch("cli");
    let state = dir.join("state");
    let request = dir.join("request.json");
    std::fs::write(&request, r#"{"cells": [{"pcpuset": [0, 1], "memory": 1024}], "cpu_policy": "dedicated"}"#).unwrap();
    let _: RequestJson = formats::read_json(&request).expect("request");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_numafit"));
    let run = |args: &[&str]| {
        let st = Command::new(&bin).args(args).output().expect("numafit runs");
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    };
    let (m, s, r) = (machine(), state.display().to_string(), request.display().to_string());
    let m = m.display().to_string();
    // One warm-up: the compile cache is filled, the ledger created.
    run(&["claim", "--instance", "warm", "--request", &r, "--numactl-output", &m, "--state-dir", &s]);
    run(&["release", "--instance", "warm", "--state-dir", &s]);
    let mut claiming = Duration::ZERO;
    for i in 0..claims {
        let id = format!("vm-{i}");
        let t = Instant::now();
        run(&["claim", "--instance", &id, "--request", &r, "--numactl-output", &m, "--state-dir", &s]);
        claiming += t.elapsed();
        // Four instances fill the host: release as we go, outside the timing.
        run(&["release", "--instance", &id, "--state-dir", &s]);
    }
    f64::from(claims) / claiming.as_secs_f64()
}

fn size_after(cycles: u32) -> (u64, u64) {
    let dir = scratch("size");
    let base = base();
    let mut ledger = Ledger::open(&dir).expect("ledger");
    let p = placement(0, [0, 1]);
    for i in 0..cycles {
        let claim = NewClaim {
            instance: format!("vm-{i}"),
            request: serde_json::json!({"cells": []}),
            placement: p.clone(),
            policy: policy(),
            owner: None,
            generation: None,
        };
        ledger.record(&base, claim, &admit).expect("record");
        ledger.release(&format!("vm-{i}")).expect("release");
    }
    let len = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let (db, wal) = (len(dir.join("ledger.sqlite3")), len(dir.join("ledger.sqlite3-wal")));
    drop(ledger);
    (db, wal)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cycles: u32 = std::env::var("LEDGER_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let cli_rate = cli(200);
    let (one, lat1) = library(1, 2000);
    let (four, lat4) = library(4, 2000);
    let (db, wal) = size_after(cycles);
    println!("| measure | value |");
    println!("|---|---|");
    println!("| `numafit claim --instance`, sequential, process start included | {cli_rate:.0} claims/s |");
    println!("| library API, 1 writer | {one:.0} claims/s |");
    println!("| library API, 4 concurrent writers | {four:.0} claims/s |");
    for (n, lat) in [(1, &lat1), (4, &lat4)] {
        println!(
            "| one claim transaction, {n} writer(s): p50 / p99 | {:.0} µs / {:.0} µs |",
            percentile(lat, 0.5).as_secs_f64() * 1e6,
            percentile(lat, 0.99).as_secs_f64() * 1e6
        );
    }
    println!("| database after {cycles} claim/release cycles | {} KiB (+ {} KiB WAL before checkpoint) |", db / 1024, wal / 1024);
}
