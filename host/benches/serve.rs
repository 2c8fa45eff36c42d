//! Load generator for `numafit serve` (the release binary, over its Unix socket): dry-run fits of
//! bench case 04, claims and releases, and hot swaps, each reported as a rate and latency
//! percentiles against the issue's targets. `cargo bench --bench serve [-- SECONDS]`.

#[path = "../../tests/support/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{Client, Daemon};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn shared_case(name: &str) -> PathBuf {
    let shared = root().join("../shared/bench").join(name);
    if shared.exists() {
        shared
    } else {
        root().join("tests/fixtures/bench").join(name)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `threads` clients, each on its own connection, sending `make(i)` for `secs`: rate, p50, p99.
fn load(d: &Daemon, threads: usize, secs: f64, what: &str, send: impl Fn(&mut Client, usize) -> u16 + Sync) -> (f64, f64, f64) {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut all: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, send) = (&stop, &send);
                scope.spawn(move || {
                    let mut c = d.client();
                    let mut lat = Vec::new();
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let s = Instant::now();
                        let status = send(&mut c, i);
                        lat.push(s.elapsed().as_secs_f64() * 1e3);
                        assert!(status < 300, "{what}: status {status}");
                        i += threads;
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().flat_map(|h| h.join().expect("client")).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (all.len() as f64 / elapsed, percentile(&all, 0.5), percentile(&all, 0.99))
}

fn main() {
    let secs: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5.0);
    let dir = std::env::temp_dir().join(format!("numafit-bench-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("cache");
    std::env::set_var("NUMAFIT_CACHE_DIR", &cache);
    let case = shared_case("04-8cell-4cell-prefer");
    let request = std::fs::read_to_string(case.join("request.json")).unwrap();
    let policy_file = dir.join("policy.wasm");
    std::fs::write(&policy_file, numafit_host::runtime::EMBEDDED_NOVA).unwrap();
    let host = case.join("host.json");
    let state = dir.join("state");
    let d = Daemon::start(
        &dir.join("serve.sock"),
        &["--host", host.to_str().unwrap(), "--state-dir", state.to_str().unwrap(), "--plugin", policy_file.to_str().unwrap(), "--watch"],
    );
    println!("numafit serve load generator: {secs} s per run, clients over the Unix socket, one keep-alive connection each");
    if let Some(other) = std::env::var_os("NUMAFIT_BENCH_AGAINST") {
        // Side by side: this build's daemon and another's, alternating, the same load.
        drop(d);
        let other = PathBuf::from(other);
        let this = PathBuf::from(env!("CARGO_BIN_EXE_numafit"));
        println!("| POST /v1/fit, case 04, 4 clients | this build (/s) | {} (/s) | ratio |", other.display());
        println!("|---|---|---|---|");
        for round in 0..5 {
            let mut rates = Vec::new();
            for bin in [&this, &other] {
                let socket = dir.join(format!("ab-{round}-{}.sock", rates.len()));
                let d = Daemon::start_with(bin, &socket, &["--host", host.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
                let (rate, _, _) = load(&d, 4, secs, "fit", |c, _| c.post("/v1/fit", &request).status);
                rates.push(rate);
            }
            println!("| round {} | {:.0} | {:.0} | {:.2} |", round + 1, rates[0], rates[1], rates[0] / rates[1]);
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    println!("| load | clients | rate (/s) | p50 (ms) | p99 (ms) | target |");
    println!("|---|---|---|---|---|---|");
    for threads in [1, 2, 4] {
        let (rate, p50, p99) = load(&d, threads, secs, "fit", |c, _| c.post("/v1/fit", &request).status);
        println!("| POST /v1/fit, case 04 | {threads} | {rate:.0} | {p50:.3} | {p99:.3} | >= 20000/s, p99 <= 1 ms |");
    }
    let small = r#"{"cells": [{"pcpuset": [0, 1], "memory": 1024}], "cpu_policy": "dedicated"}"#;
    for threads in [1, 2, 4] {
        let (rate, p50, p99) = load(&d, threads, secs, "claim", |c, i| {
            let id = format!("bench-{threads}-{i}");
            let status = c.post("/v1/claims", &format!(r#"{{"instance": "{id}", "request": {small}}}"#)).status;
            // Released at once, so the host never fills; the rate counts claims only.
            let _ = c.send("DELETE", &format!("/v1/claims/{id}"), &[], Vec::new());
            status
        });
        // Each iteration was a claim and a release: claims per second is the iteration rate.
        println!("| POST /v1/claims (+ DELETE) | {threads} | {rate:.0} | {p50:.3} | {p99:.3} | >= 1000 claims/s, p99 <= 10 ms |");
    }
    // Swaps: file replaced -> first answer from the new version.
    let mut c = d.client();
    let versions = [("balanced", numafit_host::runtime::EMBEDDED_BALANCED), ("nova", numafit_host::runtime::EMBEDDED_NOVA)];
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for round in 0..6 {
        let (name, bytes) = versions[round % 2];
        let sha = numafit_host::runtime::cache::sha256(bytes);
        let tmp = dir.join("policy.wasm.new");
        std::fs::write(&tmp, bytes).unwrap();
        let started = Instant::now();
        std::fs::rename(&tmp, &policy_file).unwrap();
        while c.post("/v1/fit", &request).policy_sha().as_deref() != Some(sha.as_str()) {
            assert!(started.elapsed() < Duration::from_secs(60), "{name} never answered");
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        // Only the first swap to balanced compiles it; nova was compiled at start.
        if round == 0 {
            cold.push(ms)
        } else {
            cached.push(ms)
        }
    }
    cached.sort_by(f64::total_cmp);
    println!("| swap, file replaced -> first answer | cold compile | {:.1} ms | | | <= 1 s |", cold[0]);
    println!(
        "| swap, file replaced -> first answer | cached artifact, median of {} | {:.1} ms (max {:.1}) | | | <= 100 ms |",
        cached.len(),
        cached[cached.len() / 2],
        cached[cached.len() - 1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
