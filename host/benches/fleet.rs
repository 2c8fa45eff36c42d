//! The fleet filter's scale: one dedicated 4-cell request (24 vCPUs and 48 GiB a cell) against 10,000 hosts of 8 cells × 64
//! pCPUs with realistic usage (each host's cells 20-85% pinned, by whole cores, and their memory
//! as used), measured side by side:
//! - `fleet/10000x8x64/component-sent`: one `fit-many` call with the 10,000 host tables lowered
//!   into the plugin (what `numafit filter` does with an inventory);
//! - `fleet/10000x8x64/component-loaded`: one `fit-loaded` call over the 10,000 hosts loaded once
//!   (`host-state`, a scheduler's steady state: hosts reloaded only when they change);
//! - `fleet/10000x8x64/native`: the same core linked natively over the same prepared hosts;
//! - `fleet/10000x8x64/component-batch`: contract 0.5's `fit-batch-packed`, a loaded request on
//!   the loaded hosts, the answers crossing as one batch (placements packed, rejections as
//!   columns); `native-batch` the same core writing the same batch natively (`native-batch-columns`
//!   writing 0.4's columns instead); `component-batch-rows` the call and then every host's answer
//!   read out of the batch as a record (what `fit-loaded` hands over).
//!
//! `cargo bench --bench fleet`; the targets: the whole filter in one call ≤ 50 ms on
//! one core, component / native ≤ 1.5. `NUMAFIT_BENCH_PAIRS=N` also times N pairs of the two
//! batch calls back to back and prints the distribution of their ratio, on the whole fleet and on
//! the hosts that fit and those that do not, apart; with `NUMAFIT_BENCH_AGAINST=OTHER.wasm` also
//! the other build's batch call against this one's, in pairs (for changes to the guest).

use criterion::{criterion_group, criterion_main, Criterion};
use numafit_host::formats::{HostJson, LimitsJson, RequestInput, RequestJson};
use numafit_host::runtime::{wit, Plugin, PluginLimits};
use numafit_plugin::{Policy, PreparedHost, Strategy, ValidRequest};
use serde_json::json;

#[path = "support/pairs.rs"]
mod pairs;
use pairs::{in_pairs, in_pairs_named};

const HOSTS: usize = 10_000;
const CELLS: u32 = 8;
const PCPUS: u32 = 64;

/// A small deterministic generator (xorshift64*): the same fleet every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One host: 8 cells of 32 cores × 2 threads, 128 GiB each, two sockets (distances 10/16/32).
fn host(rng: &mut Rng) -> HostJson {
    let cells: Vec<_> = (0..CELLS)
        .map(|c| {
            let base = c * PCPUS;
            let cores: Vec<[u32; 2]> = (0..PCPUS / 2).map(|k| [base + 2 * k, base + 2 * k + 1]).collect();
            let busy = (PCPUS / 2) as u64 * (20 + rng.below(66)) / 100;
            let mut pinned = Vec::new();
            for core in cores.iter().filter(|_| rng.below(100) < 50).chain(cores.iter()).take(busy as usize) {
                if !pinned.contains(&core[0]) {
                    pinned.extend_from_slice(core);
                }
            }
            pinned.sort_unstable();
            let memory = 131072u64;
            let used = memory * (10 + rng.below(80)) / 100;
            let distances: Vec<u32> = (0..CELLS)
                .map(|o| {
                    if o == c {
                        10
                    } else if o / 4 == c / 4 {
                        16
                    } else {
                        32
                    }
                })
                .collect();
            json!({
                "id": c, "cpuset": [], "pcpuset": (base..base + PCPUS).collect::<Vec<_>>(), "memory": memory,
                "cpu_usage": 0, "memory_usage": used, "pinned_cpus": pinned, "siblings": cores,
                "socket": c / 4, "distances": distances,
                "mempages": [{"size_kb": 4, "total": memory * 256, "used": used * 256, "reserved": 0}],
            })
        })
        .collect();
    serde_json::from_value(json!({ "cells": cells })).expect("a host document")
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let hosts: Vec<HostJson> = (0..HOSTS).map(|_| host(&mut rng)).collect();
    let request: RequestJson = serde_json::from_value(json!({
        "cells": (0..4).map(|i| json!({"pcpuset": (i * 24..i * 24 + 24).collect::<Vec<_>>(), "memory": 49152})).collect::<Vec<_>>(),
        "cpu_policy": "dedicated",
    }))
    .expect("a request document");
    let RequestInput::Explicit(wrequest) = request.to_input("request").expect("valid") else { unreachable!("explicit cells") };
    let wlimits = LimitsJson::default().to_wit("", wit::Strategy::Spread).expect("limits");
    let whosts: Vec<wit::Host> = hosts.iter().map(|h| h.to_wit("host").expect("valid host")).collect();
    let nhosts: Vec<PreparedHost> = hosts.iter().map(|h| PreparedHost::owned(h.to_record("host").expect("valid").normalized())).collect();
    let nguest = ValidRequest::owned(request.to_guest("request").expect("valid")).expect("valid");
    let nlimits = LimitsJson::default().to_core("", Strategy::Spread).expect("limits");

    // One call over 10,000 hosts needs more memory than the per-request default of 256 MiB, and
    // more fuel and time than one host's fit.
    let limits = PluginLimits { memory_bytes: 2 << 30, fuel: u64::MAX / 4, deadline: std::time::Duration::from_secs(600) };
    let mut plugin = Plugin::embedded(limits).expect("embedded plugin");
    let started = std::time::Instant::now();
    let native: Vec<bool> = nhosts.iter().map(|h| Policy::Nova.fit_valid(h, &nguest, &nlimits).is_ok()).collect();
    let native_once = started.elapsed();
    let started = std::time::Instant::now();
    let sent: Vec<bool> = plugin.fit_many(&whosts, &wrequest, &wlimits).expect("no trap").iter().map(Result::is_ok).collect();
    eprintln!("first pass: native {native_once:?}, component {:?}", started.elapsed());
    assert_eq!(sent, native, "the component and the native core agree on every host");
    let fitting = native.iter().filter(|f| **f).count();
    eprintln!("fleet: {HOSTS} hosts x {CELLS} cells x {PCPUS} pCPUs, a dedicated 4-cell request fits {fitting}");
    assert!(fitting > HOSTS / 10 && fitting < HOSTS, "a realistic mix of fits and refusals: {fitting}");

    let mut group = c.benchmark_group(format!("fleet/{HOSTS}x{CELLS}x{PCPUS}"));
    group.sample_size(10);
    group.bench_function("native", |b| b.iter(|| nhosts.iter().filter(|h| Policy::Nova.fit_valid(h, &nguest, &nlimits).is_ok()).count()));
    group.bench_function("component-sent", |b| b.iter(|| plugin.fit_many(&whosts, &wrequest, &wlimits).expect("no trap").len()));
    let loaded: Vec<_> = whosts.iter().map(|h| plugin.load(h.clone()).expect("no trap").expect("valid host")).collect();
    group.bench_function("component-loaded", |b| b.iter(|| plugin.fit_loaded_many(&loaded, &wrequest, &wlimits).expect("no trap").len()));
    // Contract 0.4: the loaded request's answers on the loaded hosts as one batch's columns, and
    // the same core natively writing the same columns.
    let lrequest = plugin.load_request(wrequest.clone()).expect("no trap").expect("valid request");
    let batch = plugin.fit_batch(&loaded, &lrequest, &wlimits).expect("no trap");
    // The guest's share in instructions (one fuel unit is about one wasm instruction): unlike
    // time on this VM, the same from run to run.
    eprintln!("fleet: the batch call burns {} fuel units", plugin.fuel_used().unwrap_or(0));
    assert!(matches!(batch, numafit_host::runtime::FitBatch::Packed { .. }), "the embedded policy answers fit-batch packed");
    // (The bindings' types have no `PartialEq`: their debug forms are compared.)
    assert_eq!(
        format!("{:?}", batch.into_rows().expect("columns that hold together")),
        format!("{:?}", plugin.fit_loaded_many(&loaded, &wrequest, &wlimits).expect("no trap")),
        "a batch's columns read back as the per-host answers"
    );
    group.bench_function("native-batch", |b| b.iter(|| Policy::Nova.fit_batch_packed(&nhosts, &nguest, &nlimits).len()));
    group.bench_function("native-batch-columns", |b| b.iter(|| Policy::Nova.fit_batch(&nhosts, &nguest, &nlimits).len()));
    group.bench_function("component-batch", |b| b.iter(|| plugin.fit_batch(&loaded, &lrequest, &wlimits).expect("no trap").len()));
    group.bench_function("component-batch-rows", |b| {
        b.iter(|| plugin.fit_batch(&loaded, &lrequest, &wlimits).expect("no trap").into_rows().expect("a batch that holds together").len())
    });
    // The ratio in pairs (`NUMAFIT_BENCH_PAIRS=N`): the native batch and the component's batch call
    // one right after the other, N times, so a drift of this VM's speed (±20% within minutes,
    // more than the margin the target leaves) touches both halves of a pair alike. Then the same
    // for the hosts that fit and for those that do not, apart (their shares of the work differ).
    let pairs: usize = std::env::var("NUMAFIT_BENCH_PAIRS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    if pairs > 0 {
        let summary = in_pairs(
            pairs,
            || drop(std::hint::black_box(Policy::Nova.fit_batch_packed(&nhosts, &nguest, &nlimits))),
            || drop(std::hint::black_box(plugin.fit_batch(&loaded, &lrequest, &wlimits).expect("no trap"))),
        );
        eprintln!("fleet: {pairs} pairs of the native batch and the component's batch call: {summary}");
        for fits in [true, false] {
            let kept: Vec<usize> = (0..HOSTS).filter(|&k| native[k] == fits).collect();
            let (nkept, lkept): (Vec<&PreparedHost>, Vec<_>) = kept.iter().map(|&k| (&nhosts[k], &loaded[k])).unzip();
            plugin.fit_batch(&lkept, &lrequest, &wlimits).expect("no trap");
            let fuel = plugin.fuel_used().unwrap_or(0);
            let summary = in_pairs(
                pairs,
                || drop(std::hint::black_box(Policy::Nova.fit_batch_packed(nkept.iter().copied(), &nguest, &nlimits))),
                || drop(std::hint::black_box(plugin.fit_batch(&lkept, &lrequest, &wlimits).expect("no trap"))),
            );
            let which = if fits { "that fit" } else { "that do not" };
            eprintln!("fleet: the {} hosts {which} alone ({fuel} fuel units): {summary}", kept.len());
        }
    }
    // Side by side with another build of the policy (`NUMAFIT_BENCH_AGAINST=OTHER.wasm`): the same
    // loaded call, for changes to how the guest is compiled.
    if let Some(other) = std::env::var_os("NUMAFIT_BENCH_AGAINST") {
        let mut other = Plugin::from_file(std::path::Path::new(&other), limits).expect("the other policy loads");
        let other_loaded: Vec<_> = whosts.iter().map(|h| other.load(h.clone()).expect("no trap").expect("valid host")).collect();
        group.bench_function("component-loaded-against", |b| {
            b.iter(|| other.fit_loaded_many(&other_loaded, &wrequest, &wlimits).expect("no trap").len())
        });
        let other_request = other.load_request(wrequest.clone()).expect("no trap").expect("valid request");
        other.fit_batch(&other_loaded, &other_request, &wlimits).expect("no trap");
        eprintln!("fleet: the other build's batch call burns {} fuel units", other.fuel_used().unwrap_or(0));
        group.bench_function("component-batch-against", |b| {
            b.iter(|| other.fit_batch(&other_loaded, &other_request, &wlimits).expect("no trap").len())
        });
        // With `NUMAFIT_BENCH_PAIRS`, the two builds' batch calls in pairs too.
        if pairs > 0 {
            let summary = in_pairs_named(
                pairs,
                "this/other",
                &mut || drop(std::hint::black_box(other.fit_batch(&other_loaded, &other_request, &wlimits).expect("no trap"))),
                &mut || drop(std::hint::black_box(plugin.fit_batch(&loaded, &lrequest, &wlimits).expect("no trap"))),
            );
            eprintln!("fleet: {pairs} pairs of the other build's batch call and this one's: {summary}");
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
