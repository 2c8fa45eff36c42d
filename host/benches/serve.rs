//! Load generator for `numafit serve` (the release binary, over its Unix socket): dry-run fits of
//! bench case 04, claims and releases, and hot swaps, each reported as a rate and latency
//! percentiles against the issue's targets. `cargo bench --bench serve [-- SECONDS]`.

#[path = "../../tests/support/http.rs"]
mod http;
#[path = "support/load.rs"]
mod load;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::Daemon;
use load::{load, Lean, Run};

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
        println!(
            "| POST /v1/fit, case 04, 4 clients | this build (/s) | {} (/s) | ratio | service CPU/request, this (µs) | other (µs) | ratio |",
            other.display()
        );
        println!("|---|---|---|---|---|---|---|");
        for round in 0..5 {
            let mut rates = Vec::new();
            let mut cpu = Vec::new();
            for bin in [&this, &other] {
                let socket = dir.join(format!("ab-{round}-{}.sock", rates.len()));
                let d = Daemon::start_with(bin, &socket, &["--host", host.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
                let run = load(&d, 4, secs, "fit", || Lean::connect(&d), |c, _| c.send("POST", "/v1/fit", &request));
                rates.push(run.rate);
                cpu.push(run.service_us);
            }
            println!(
                "| round {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {:.2} |",
                round + 1,
                rates[0],
                rates[1],
                rates[0] / rates[1],
                cpu[0],
                cpu[1],
                cpu[0] / cpu[1]
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    println!("| load | client | clients | rate (/s) | p50 (ms) | p99 (ms) | service CPU/request (µs) | client CPU/request (µs) | target |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let row = |what: &str, client: &str, threads: usize, r: &Run, target: &str| {
        println!(
            "| {what} | {client} | {threads} | {:.0} | {:.3} | {:.3} | {:.1} | {:.1} | {target} |",
            r.rate, r.p50, r.p99, r.service_us, r.client_us
        )
    };
    let fit_target = ">= 20000/s, p99 <= 1 ms";
    for threads in [1, 2, 4, 8] {
        let r = load(&d, threads, secs, "fit", || Lean::connect(&d), |c, _| c.send("POST", "/v1/fit", &request));
        row("POST /v1/fit, case 04", "lean", threads, &r, fit_target);
    }
    // The same load from hyper's client, for how much of the machine a heavier client takes.
    for threads in [2, 4] {
        let r = load(&d, threads, secs, "fit", || d.client(), |c, _| c.post("/v1/fit", &request).status);
        row("POST /v1/fit, case 04", "hyper", threads, &r, fit_target);
    }
    let small = r#"{"cells": [{"pcpuset": [0, 1], "memory": 1024}], "cpu_policy": "dedicated"}"#;
    for threads in [1, 2, 4] {
        let r = load(
            &d,
            threads,
            secs,
            "claim",
            || Lean::connect(&d),
            |c, i| {
                let id = format!("bench-{threads}-{i}");
                let status = c.send("POST", "/v1/claims", &format!(r#"{{"instance": "{id}", "request": {small}}}"#));
                // Released at once, so the host never fills; the rate counts claims only.
                let _ = c.send("DELETE", &format!("/v1/claims/{id}"), "");
                status
            },
        );
        // Each iteration was a claim and a release: claims per second is the iteration rate.
        row("POST /v1/claims (+ DELETE)", "lean", threads, &r, ">= 1000 claims/s, p99 <= 10 ms");
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
