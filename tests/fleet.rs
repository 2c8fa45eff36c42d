//! `numafit filter` through the real binary and the embedded component: one request against a
//! fleet inventory in one policy call, each host's answer exactly what `numafit fit` gives for that
//! host alone, scored by the host's weighers; bad inventories and weighers refused by name.

mod support;
use support::*;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

/// Bench case 04's 8-cell host with its first `busy` cells half used (memory and pinned CPUs).
fn half_used(busy: usize) -> Value {
    half_used_host(&fixture("bench/04-8cell-4cell-prefer/host.json"), busy)
}

/// A host with its first `busy` cells half used.
fn half_used_host(path: &Path, busy: usize) -> Value {
    let mut h = read(path);
    for c in h["cells"].as_array_mut().unwrap().iter_mut().take(busy) {
        c["memory_usage"] = json!(c["memory"].as_u64().unwrap() / 2);
        let pcpus: Vec<Value> = c["pcpuset"].as_array().unwrap().clone();
        c["pinned_cpus"] = json!(pcpus[..pcpus.len() / 2]);
    }
    h
}

#[test]
fn every_hosts_answer_is_what_fit_gives_for_it_alone() {
    let dir = scratch("fleet-alone");
    // Every bench host (2 to 64 cells, with and without distances), an asymmetric one, a used one.
    let mut hosts: Vec<(String, PathBuf)> =
        bench_cases().iter().map(|c| (c.file_name().unwrap().to_string_lossy().into_owned(), c.join("host.json"))).collect();
    hosts.push(("asymmetric".into(), fixture("asymmetric-host.json")));
    hosts.push(("half-used".into(), write(&dir, "half-used.json", &half_used(8))));
    let inventory: Vec<Value> = hosts.iter().map(|(n, p)| json!({"name": n, "host": read(p)})).collect();
    let inventory = write(&dir, "inventory.json", &Value::Array(inventory));
    let mut fitted = 0;
    let mut refused = 0;
    for case in bench_cases() {
        let request = case.join("request.json");
        let mut args = vec!["filter", "--hosts", s(&inventory), "--request", s(&request), "--json"];
        let limits = case.join("limits.json");
        if limits.exists() {
            args.extend(["--limits", s(&limits)]);
        }
        let o = numafit(&args);
        let answer = json_of(&o);
        let answers = answer["hosts"].as_array().unwrap();
        assert_eq!(answers.len(), hosts.len(), "{case:?}");
        assert_eq!(o.status.code(), Some(if answers.iter().any(|h| h["fits"] == true) { 0 } else { 1 }), "{}", stderr(&o));
        for ((name, host), got) in hosts.iter().zip(answers) {
            assert_eq!(got["name"], json!(name), "inventory order");
            let mut alone = vec!["fit", "--host", s(host), "--request", s(&request), "--json"];
            if limits.exists() {
                alone.extend(["--limits", s(&limits)]);
            }
            let o = numafit(&alone);
            let expected = json_of(&o);
            let what = format!("{} on {name}", case.display());
            assert_eq!(got["fits"], expected["fits"], "{what}");
            if expected["fits"] == true {
                assert_eq!(got["placement"], expected, "{what}");
                assert!(got.get("rejection").is_none(), "{what}");
                assert!(got["score"].as_f64().is_some_and(|s| (0.0..=1.0).contains(&s)), "{what}: spread scores in [0, 1]: {got}");
                fitted += 1;
            } else {
                assert_eq!(got["rejection"], expected, "{what}");
                assert_eq!(got["score"], json!(0.0), "{what}");
                refused += 1;
            }
        }
    }
    assert!(fitted > 20 && refused > 20, "both kinds of answer are covered: {fitted} fit, {refused} refused");
}

#[test]
fn weighers_order_hosts_as_named_and_weights_combine() {
    let dir = scratch("fleet-weighers");
    let empty = read(&fixture("bench/04-8cell-4cell-prefer/host.json"));
    let inventory = write(&dir, "inventory.json", &json!([{"name": "busy", "host": half_used(8)}, {"name": "empty", "host": empty}]));
    let one_cell = write(&dir, "one.json", &json!({"cells": [{"pcpuset": [0, 1], "memory": 1024}], "cpu_policy": "dedicated"}));
    let score = |request: &Path, weighers: &[&str]| -> Vec<f64> {
        let mut args = vec!["filter", "--hosts", s(&inventory), "--request", s(request), "--json"];
        for w in weighers {
            args.extend(["--weigher", w]);
        }
        let o = numafit(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        json_of(&o)["hosts"].as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect()
    };
    let pack = score(&one_cell, &["pack"]);
    assert!(pack[0] > pack[1], "pack prefers the busy host: {pack:?}");
    let spread = score(&one_cell, &["spread"]);
    assert!(spread[1] > spread[0], "spread prefers the empty host: {spread:?}");
    assert_eq!(score(&one_cell, &[]), spread, "spread is the default");
    for (p, s) in pack.iter().zip(&spread) {
        assert!((p + s - 1.0).abs() < 1e-9, "pack and spread are each other's complement");
    }
    // Half the CPUs and memory of every cell used, then 2 more CPUs of 128 and 1 GiB of 512 GiB.
    assert!((pack[0] - (0.5 + 2.0 / 128.0 + 0.5 + 1.0 / 512.0) / 2.0).abs() < 1e-9, "{pack:?}");
    assert_eq!(score(&one_cell, &["fewest-cells"]), vec![1.0, 1.0]);
    assert_eq!(score(&one_cell, &["numa-distance"]), vec![1.0, 1.0], "one cell is local");
    let four_cells = fixture("bench/04-8cell-4cell-prefer/request.json");
    assert_eq!(score(&four_cells, &["fewest-cells"]), vec![0.25, 0.25]);
    // Case 04's host states no distances: Linux's default 20 for remote against 10 local.
    assert_eq!(score(&four_cells, &["numa-distance"]), vec![0.5, 0.5]);
    let combined = score(&one_cell, &["pack=2", "numa-distance=0.5"]);
    for (c, p) in combined.iter().zip(&pack) {
        assert!((c - (2.0 * p + 0.5)).abs() < 1e-9, "weights multiply and add: {combined:?}");
    }
}

#[test]
fn cell_pack_scores_the_fullest_resource_of_the_cells_used() {
    let dir = scratch("fleet-cell-pack");
    let empty = read(&fixture("bench/04-8cell-4cell-prefer/host.json"));
    // Every cell's 2 MiB pages (32 GiB of its 64) taken, its CPUs all free.
    let mut pages_gone = empty.clone();
    for c in pages_gone["cells"].as_array_mut().unwrap() {
        c["memory_usage"] = json!(32768);
        c["mempages"][1]["used"] = json!(16384);
    }
    let inventory = write(
        &dir,
        "inventory.json",
        &json!([{"name": "empty", "host": empty}, {"name": "pages-gone", "host": pages_gone}, {"name": "half", "host": half_used(8)}]),
    );
    let score = |request: &Value| -> Vec<f64> {
        let request = write(&dir, "request.json", request);
        let o = numafit(&["filter", "--hosts", s(&inventory), "--request", s(&request), "--weigher", "cell-pack", "--json"]);
        assert!(o.status.code() == Some(0), "{}", stderr(&o));
        json_of(&o)["hosts"].as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect()
    };
    // 2 pinned CPUs of a cell's 16 and 1 GiB of its 64, on small pages: the empty host's cell is
    // 2/16 full after it; a cell without large pages left counts as full (a small-page guest
    // belongs there, not in a cell a large-page guest could still use); the half-used cell is
    // (8 + 2)/16 full.
    let small = json!({"cells": [{"pcpuset": [0, 1], "memory": 1024}], "cpu_policy": "dedicated"});
    assert_eq!(score(&small), vec![0.125, 1.0, 0.625]);
    // On 2 MiB pages: the pool is the fullest resource now (512 of 16384 pages on the empty host).
    let large = json!({"cells": [{"pcpuset": [0, 1], "memory": 1024, "pagesize": 2048}], "cpu_policy": "dedicated"});
    assert_eq!(score(&large), vec![0.125, 0.0, 0.625], "the pages-gone host does not fit");
    let mut tight = empty.clone();
    tight["cells"].as_array_mut().unwrap().iter_mut().for_each(|c| c["mempages"][1]["used"] = json!(8192 + 4096));
    let inventory2 = write(&dir, "inventory2.json", &json!([{"name": "tight", "host": tight}]));
    let request = write(&dir, "large.json", &large);
    let o = numafit(&["filter", "--hosts", s(&inventory2), "--request", s(&request), "--weigher", "cell-pack", "--json"]);
    let got = json_of(&o)["hosts"][0]["score"].as_f64().unwrap();
    assert_eq!(got, (8192.0 + 4096.0 + 512.0) / 16384.0, "three quarters of the pages used, then 512 more");
}

#[test]
fn the_distance_weigher_reads_the_slit() {
    let dir = scratch("fleet-slit");
    // The 16-cell bench host states distances; a 2-cell request lands on some pair of its cells.
    let host = fixture("bench/14-16cell-8cell-too-big/host.json");
    let inventory = write(&dir, "inventory.json", &json!([{"name": "n16", "host": read(&host)}]));
    let two = write(
        &dir,
        "two.json",
        &json!({"cells": [{"pcpuset": [0], "memory": 512}, {"pcpuset": [1], "memory": 512}], "cpu_policy": "dedicated"}),
    );
    let o = numafit(&["filter", "--hosts", s(&inventory), "--request", s(&two), "--weigher", "numa-distance", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = &json_of(&o)["hosts"][0];
    let cells: Vec<usize> =
        got["placement"]["cells"].as_array().unwrap().iter().map(|c| c["host_cell"].as_u64().unwrap() as usize).collect();
    let h = read(&host);
    let d = |a: usize, b: usize| h["cells"][a]["distances"][b].as_f64().unwrap();
    let expected = d(cells[0], cells[0]).min(d(cells[1], cells[1])) / d(cells[0], cells[1]).max(d(cells[1], cells[0]));
    assert!((got["score"].as_f64().unwrap() - expected).abs() < 1e-9, "{got} vs {expected}");
}

#[test]
fn bad_inventories_and_weighers_are_refused_by_name() {
    let dir = scratch("fleet-bad");
    let host = read(&fixture("bench/01-2cell-host-2cell-dedicated/host.json"));
    let request = fixture("bench/01-2cell-host-2cell-dedicated/request.json");
    let run = |inventory: &Value, extra: &[&str]| {
        let p = write(&dir, "inventory.json", inventory);
        let mut args = vec!["filter", "--hosts", s(&p), "--request", s(&request)];
        args.extend(extra);
        let o = numafit(&args);
        (o.status.code(), stderr(&o), stdout(&o))
    };
    let mut broken = host.clone();
    broken["cells"][1]["memory_usage"] = json!(-5);
    let mut overused = host.clone();
    overused["cells"][0]["pinned_cpus"] = json!([999]);
    for (inventory, names) in [
        (json!([{"name": "a", "host": host}, {"name": "a", "host": host}]), vec!["[1].name", "\"a\"", "[0]"]),
        (json!([{"name": "", "host": host}]), vec!["[0].name", "empty"]),
        (json!([{"name": "a", "host": host}, {"name": "b", "host": broken}]), vec!["[1]", "memory_usage", "-5"]),
        (json!([{"name": "a", "host": host}, {"name": "b", "host": overused}]), vec!["entry [1] (\"b\")", "pinned_cpus"]),
        (json!([{"name": "a", "host": host, "zone": 1}]), vec!["zone"]),
        (json!({"name": "a"}), vec!["inventory.json"]),
    ] {
        let (code, err, out) = run(&inventory, &[]);
        assert_eq!(code, Some(2), "{inventory}: {err}");
        assert!(out.is_empty(), "nothing printed for a refused inventory: {out}");
        for n in names {
            assert!(err.contains(n), "{inventory}: the error names {n}: {err}");
        }
    }
    let ok = json!([{"name": "a", "host": host}]);
    for (weigher, names) in
        [("packing", vec!["\"packing\"", "pack, spread"]), ("pack=heavy", vec!["\"heavy\""]), ("pack=NaN", vec!["not finite"])]
    {
        let (code, err, _) = run(&ok, &["--weigher", weigher]);
        assert_eq!(code, Some(2), "{weigher}: {err}");
        for n in names {
            assert!(err.contains(n), "{weigher}: {err}");
        }
    }
    // An empty fleet: nothing fits, said as a refusal, not an error.
    let (code, err, out) = run(&json!([]), &["--json"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"hosts": []}));
    // Text for people: a line per host.
    let (code, _, out) = run(&ok, &[]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("1 of 1 hosts fit") && out.contains("  a "), "{out}");
}

/// The extender scores on the view it keeps (the changed cells only, checked against its index);
/// `numafit filter` on a fresh one (the whole host claimed). Both say the same of every host.
#[test]
fn a_judgement_on_kept_views_scores_as_one_on_fresh_hosts() {
    use numafit_host::fleet::{judge, Candidate, Weights};
    use numafit_host::formats::{HostJson, RequestInput, RequestJson};
    use numafit_host::{contract, runtime, verify};
    let mut plugin = runtime::Plugin::embedded(runtime::PluginLimits::default()).expect("the embedded policy loads");
    let weights =
        Weights::parse(&["pack".into(), "spread=0.5".into(), "numa-distance=2".into(), "fewest-cells".into()], "weighers").unwrap();
    for case in bench_cases() {
        let host: HostJson = numafit_host::formats::read_json(&case.join("host.json")).unwrap();
        let host = host.to_record("host.json").unwrap();
        let half = half_used_host(&case.join("host.json"), 2);
        let half: HostJson = serde_json::from_value(half).unwrap();
        let hosts = vec![("empty".to_string(), host), ("half".to_string(), half.to_record("half").unwrap())];
        let req: RequestJson = numafit_host::formats::read_json(&case.join("request.json")).unwrap();
        let RequestInput::Explicit(request) = req.to_input("request.json").unwrap() else { continue };
        let limits = numafit_host::formats::LimitsJson::default().to_wit("", runtime::wit::Strategy::Spread).unwrap();
        let shown: Vec<_> = hosts.iter().map(|(_, h)| contract::host_view(h)).collect();
        let index: Vec<_> = shown.iter().map(verify::HostIndex::of).collect();
        let mut answers = || plugin.fit_many(&shown, &request, &limits).expect("no trap");
        let fresh = judge("nova", "nova", &Candidate::of(&hosts, &shown), &request, &limits, Some(&weights), answers()).unwrap();
        let kept: Vec<Candidate> = hosts
            .iter()
            .zip(&shown)
            .zip(&index)
            .map(|(((name, host), shown), index)| Candidate { name, host, shown, index: Some(index) })
            .collect();
        let kept = judge("nova", "nova", &kept, &request, &limits, Some(&weights), answers()).unwrap();
        for (f, k) in fresh.iter().zip(&kept) {
            assert_eq!((f.fits, f.score), (k.fits, k.score), "{}: {}", case.display(), f.name);
        }
        assert!(fresh.iter().any(|h| h.fits && h.score > 0.0) || fresh.iter().all(|h| !h.fits), "{}", case.display());
    }
}
