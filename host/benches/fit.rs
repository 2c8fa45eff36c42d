//! `fit` on every case of tests/fixtures/bench (copies of shared/bench), measured side by side:
//! - `fit/<case>/component`: through the embedded wasm component as a scheduler calls it, on a host
//!   and a request both loaded into the plugin (`host-state`, `request-state`): two handles and the
//!   limits cross the boundary, the answer is lifted back, fuel and memory cap on;
//! - `fit/<case>/native`: the same core linked natively, on the same prepared host and validated
//!   request (`PreparedHost`, `ValidRequest`);
//! - `fit/<case>/component-request-sent`: a loaded host, the request lowered with each call;
//! - `fit/<case>/component-stateless`: the 0.1-style call that also lowers and models the whole
//!   host on every call (what a one-shot `numafit fit` does);
//! - `load/<case>/component`: loading the host (`host-state.load`), paid once per host state;
//! - `fit-batch/<case>/component`: a scheduler's call, one request against 64 loaded hosts at once
//!   (`fit-loaded`), reported per host (criterion's throughput in elements); `component-packed`
//!   the same through contract 0.5's `fit-batch-packed` (a loaded request), every answer then read
//!   back as a record;
//! - `call/info`: a call that takes nothing and returns three short strings, the floor under all;
//! - `fit/<case>/component-against`: with `NUMAFIT_BENCH_AGAINST=OTHER.wasm`, the `component` call
//!   on another build of the policy, in the same run (for changes to the guest);
//! - with `NUMAFIT_BENCH_PAIRS=N`, also N pairs of 2,000 `native` and 2,000 `component` fits timed
//!   back to back (the ratio per pair, which this VM's drift does not skew), and with
//!   `NUMAFIT_BENCH_AGAINST` pairs of the two builds' `component` fits (`NUMAFIT_BENCH_PAIRS_CASES`:
//!   the case-name prefixes to pair, comma-separated; all by default).
//!
//! Inputs are parsed once, outside the timing, like the Nova reference figures ("pre-built
//! objects"). `scripts/bench-report.py` turns the results into the ratio table.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use numafit_host::formats::{self, HostJson, LimitsJson, RequestInput, RequestJson};
use numafit_host::runtime::{wit, Plugin, PluginLimits, PluginPool};
use numafit_plugin::{Policy, PreparedHost, Strategy, ValidRequest};

#[path = "support/pairs.rs"]
mod pairs;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bench");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("bench fixtures").filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    v.sort();
    v
}

/// Whether `NUMAFIT_BENCH_PAIRS_CASES` (case-name prefixes, comma-separated) selects `case`.
fn group_selected(case: &str) -> bool {
    std::env::var("NUMAFIT_BENCH_PAIRS_CASES").map_or(true, |list| list.split(',').any(|p| case.starts_with(p.trim())))
}

fn bench(c: &mut Criterion) {
    let mut plugin = Plugin::embedded(PluginLimits::default()).expect("embedded plugin");
    let mut against = std::env::var_os("NUMAFIT_BENCH_AGAINST")
        .map(|other| Plugin::from_file(Path::new(&other), PluginLimits::default()).expect("the other policy loads"));
    for dir in cases() {
        let name = dir.file_name().and_then(|n| n.to_str()).expect("case name").to_string();
        // Component inputs: the contract's types, as the CLI builds them.
        let host: HostJson = formats::read_json(&dir.join("host.json")).expect("host");
        let whost = host.to_wit("host.json").expect("valid host");
        let request: RequestJson = formats::read_json(&dir.join("request.json")).expect("request");
        let RequestInput::Explicit(wrequest) = request.to_input("request.json").expect("valid") else {
            panic!("{name}: bench requests are explicit topologies")
        };
        let limits: LimitsJson = if dir.join("limits.json").exists() {
            formats::read_json(&dir.join("limits.json")).expect("limits")
        } else {
            LimitsJson::default()
        };
        let wlimits = limits.to_wit("limits.json", wit::Strategy::Spread).expect("limits");
        // Native inputs: the core's model, read by the same documents.
        let nhost = host.to_record("host.json").expect("valid host").normalized();
        let nguest = request.to_guest("request.json").expect("valid request");
        let nlimits = limits.to_core("limits.json", Strategy::Spread).expect("limits");

        let nhost = PreparedHost::owned(nhost);
        let nguest = ValidRequest::owned(nguest).expect("valid request");

        let mut group = c.benchmark_group(format!("fit/{name}"));
        let loaded = plugin.load(whost.clone()).expect("no trap").expect("valid host");
        let request = plugin.load_request(wrequest.clone()).expect("no trap").expect("valid request");
        group.bench_function("component", |b| b.iter(|| plugin.fit_loaded_request(&loaded, &request, &wlimits).expect("no trap").is_ok()));
        // The guest's share in instructions (one fuel unit is about one wasm instruction).
        plugin.fit_loaded_request(&loaded, &request, &wlimits).expect("no trap").ok();
        eprintln!("{name}: a loaded fit burns {} fuel units", plugin.fuel_used().unwrap_or(0));
        group.bench_function("native", |b| b.iter(|| Policy::Nova.fit_valid(&nhost, &nguest, &nlimits).is_ok()));
        group.bench_function("component-request-sent", |b| {
            b.iter(|| plugin.fit_loaded(&loaded, &wrequest, &wlimits).expect("no trap").is_ok())
        });
        group.bench_function("component-stateless", |b| b.iter(|| plugin.fit(&whost, &wrequest, &wlimits).expect("no trap").is_ok()));
        let pairs: usize = std::env::var("NUMAFIT_BENCH_PAIRS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
        const FITS_PER_HALF: usize = 2000;
        if pairs > 0 && group_selected(&name) {
            let summary = pairs::in_pairs(
                pairs,
                || (0..FITS_PER_HALF).for_each(|_| drop(std::hint::black_box(Policy::Nova.fit_valid(&nhost, &nguest, &nlimits)))),
                || {
                    (0..FITS_PER_HALF)
                        .for_each(|_| drop(std::hint::black_box(plugin.fit_loaded_request(&loaded, &request, &wlimits).expect("no trap"))))
                },
            );
            eprintln!("fit/{name}: {pairs} pairs of {FITS_PER_HALF} native and {FITS_PER_HALF} component fits: {summary}");
        }
        let (loaded_here, request_here) = (&loaded, &request);
        if let Some(other) = against.as_mut() {
            let loaded = other.load(whost.clone()).expect("no trap").expect("valid host");
            let request = other.load_request(wrequest.clone()).expect("no trap").expect("valid request");
            other.fit_loaded_request(&loaded, &request, &wlimits).expect("no trap").ok();
            eprintln!("{name}: a loaded fit of the other build burns {} fuel units", other.fuel_used().unwrap_or(0));
            group.bench_function("component-against", |b| {
                b.iter(|| other.fit_loaded_request(&loaded, &request, &wlimits).expect("no trap").is_ok())
            });
            if pairs > 0 && group_selected(&name) {
                let summary = pairs::in_pairs_named(
                    pairs,
                    "this/other",
                    &mut || {
                        (0..FITS_PER_HALF).for_each(|_| {
                            drop(std::hint::black_box(other.fit_loaded_request(&loaded, &request, &wlimits).expect("no trap")))
                        })
                    },
                    &mut || {
                        (0..FITS_PER_HALF).for_each(|_| {
                            drop(std::hint::black_box(plugin.fit_loaded_request(loaded_here, request_here, &wlimits).expect("no trap")))
                        })
                    },
                );
                eprintln!("fit/{name}: {pairs} pairs of {FITS_PER_HALF} fits of the other build and of this one: {summary}");
            }
            other.unload_request(request).expect("unload");
            other.unload(loaded).expect("unload");
        }
        group.finish();
        if name.starts_with("10-") {
            // Near the floor under a loaded fit: the same two handles and limits cross, and the
            // smallest placement comes back (one cell, one floating vCPU, 1 MiB, first cell tried).
            let empty: RequestJson =
                serde_json::from_value(serde_json::json!({"cells": [{"cpuset": [0], "memory": 1}], "cpu_policy": "shared"}))
                    .expect("a request");
            let RequestInput::Explicit(wempty) = empty.to_input("request").expect("valid") else { unreachable!("explicit cells") };
            let empty = plugin.load_request(wempty).expect("no trap").expect("valid request");
            c.bench_function("call/fit-one-vcpu", |b| {
                b.iter(|| plugin.fit_loaded_request(&loaded, &empty, &wlimits).expect("no trap").is_ok())
            });
            plugin.unload_request(empty).expect("unload");
        }
        plugin.unload_request(request).expect("unload");
        plugin.unload(loaded).expect("unload");

        // 64 loaded copies of the host, asked in one call.
        const BATCH: usize = 64;
        let hosts: Vec<_> = (0..BATCH).map(|_| plugin.load(whost.clone()).expect("no trap").expect("valid host")).collect();
        let mut group = c.benchmark_group(format!("fit-batch/{name}"));
        group.throughput(criterion::Throughput::Elements(BATCH as u64));
        group.bench_function("component", |b| b.iter(|| plugin.fit_loaded_many(&hosts, &wrequest, &wlimits).expect("no trap").len()));
        let loaded_request = plugin.load_request(wrequest.clone()).expect("no trap").expect("valid request");
        group.bench_function("component-packed", |b| {
            b.iter(|| {
                plugin
                    .fit_batch(&hosts, &loaded_request, &wlimits)
                    .expect("no trap")
                    .into_rows()
                    .expect("a batch that holds together")
                    .len()
            })
        });
        plugin.unload_request(loaded_request).expect("unload");
        group.finish();
        for h in hosts {
            plugin.unload(h).expect("unload");
        }

        let mut group = c.benchmark_group(format!("load/{name}"));
        group.bench_function("component", |b| {
            b.iter(|| {
                let loaded = plugin.load(whost.clone()).expect("no trap").expect("valid host");
                plugin.unload(loaded).expect("unload")
            })
        });
        group.finish();
    }
    pool(c);
    // The floor under every call: `info()` takes nothing and returns three short strings.
    c.bench_function("call/info", |b| b.iter(|| plugin.info().expect("no trap").name.len()));
}

/// What a service pays to lend a worker to a request: taking a warm worker from the pool and
/// giving it back, alone and around a fit of case 01 (loaded host and request).
fn pool(c: &mut Criterion) {
    let pool = PluginPool::new(Plugin::embedded(PluginLimits::default()).expect("embedded plugin"));
    let dir = cases().into_iter().next().expect("a bench case");
    let host: HostJson = formats::read_json(&dir.join("host.json")).expect("host");
    let RequestInput::Explicit(request) =
        formats::read_json::<RequestJson>(&dir.join("request.json")).expect("request").to_input("request.json").expect("valid")
    else {
        panic!("bench requests are explicit topologies")
    };
    let limits = LimitsJson::default().to_wit("", wit::Strategy::Spread).expect("limits");
    let mut loader = pool.plugin().worker();
    let loaded = loader.load(host.to_wit("host.json").expect("valid host")).expect("no trap").expect("valid host");
    let loaded_request = loader.load_request(request).expect("no trap").expect("valid request");
    // Warm one worker (its instance made, the host and request loaded into it).
    pool.take().fit_loaded_request(&loaded, &loaded_request, &limits).expect("no trap").expect("fits");
    let mut group = c.benchmark_group("pool");
    group.bench_function("take-return", |b| b.iter(|| drop(pool.take())));
    group.bench_function("take-fit-return", |b| {
        b.iter(|| pool.take().fit_loaded_request(&loaded, &loaded_request, &limits).expect("no trap").is_ok())
    });
    // A worker's first call makes its instance: what a trap costs the next call, and each
    // connection worker pays once (its linear memory mapped, the data segments copied in).
    group.bench_function("fresh-worker-info", |b| b.iter(|| pool.plugin().worker().info().expect("no trap").name.len()));
    group.bench_function("fit-without-pool", |b| {
        b.iter(|| loader.fit_loaded_request(&loaded, &loaded_request, &limits).expect("no trap").is_ok())
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = bench }
criterion_main!(benches);
