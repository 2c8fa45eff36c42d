//! `numafit simulate` and `numafit generate` through the real binary and the embedded
//! components: generated fleets and traces are the same for the same seed; a replay accounts for
//! every arrival, claims every placement it makes, and draws its plot; bad traces and policies are
//! refused by name.

mod support;
use support::*;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn generated(dir: &Path, what: &[&str], name: &str) -> PathBuf {
    let o = numafit(&[&["generate"], what].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let p = dir.join(name);
    std::fs::write(&p, &o.stdout).unwrap();
    p
}

#[test]
fn a_trace_replays_over_a_fleet_per_policy_with_every_arrival_accounted_for() {
    let dir = scratch("simulate");
    let fleet = generated(&dir, &["fleet", "--hosts", "24", "--seed", "7"], "fleet.json");
    let trace = generated(&dir, &["trace", "--instances", "240", "--seed", "7"], "trace.json");
    // The same seed, the same documents.
    assert_eq!(std::fs::read(&fleet).unwrap(), numafit(&["generate", "fleet", "--hosts", "24", "--seed", "7"]).stdout);
    let hosts: Value = serde_json::from_slice(&std::fs::read(&fleet).unwrap()).unwrap();
    let cells: std::collections::BTreeSet<usize> =
        hosts.as_array().unwrap().iter().map(|h| h["host"]["cells"].as_array().unwrap().len()).collect();
    assert!(cells.len() >= 3, "mixed hosts: {cells:?}");

    let plot = dir.join("u.svg");
    let o = numafit(&[
        "simulate",
        "--fleet",
        s(&fleet),
        "--trace",
        s(&trace),
        "--policy",
        "nova",
        "--policy",
        "balanced",
        "--plot",
        s(&plot),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    let runs = out["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0]["weighers"].clone(), runs[1]["weighers"].clone()), (json!(["spread"]), json!(["cell-pack", "pack=0.5"])));
    for r in runs {
        let n = |k: &str| r[k].as_u64().unwrap();
        assert_eq!(n("arrivals"), 240);
        assert_eq!(n("placed") + n("rejected") + n("unplaceable") + n("failed_claims"), 240, "{r}");
        assert_eq!(n("failed_claims"), 0, "every placement the policy made claims: {r}");
        assert!(n("placed") > 0 && n("placed_before_first_rejection") <= n("placed"), "{r}");
        let spans: u64 = r["numa_spans"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(spans, n("placed"));
        assert_eq!(r["stranded"].as_array().unwrap().len(), 24);
        assert!(!r["samples"].as_array().unwrap().is_empty());
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 4, "a CPU and a memory line per policy");
    assert!(svg.contains("nova (spread)") && svg.contains("balanced (cell-pack, pack=0.5)"));

    // The table for people.
    let o = numafit(&["simulate", "--fleet", s(&fleet), "--trace", s(&trace)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("nova (spread)"), "{}", stdout(&o));
}

/// The shipped fleet and trace (tests/fixtures/fleet: `numafit generate fleet --hosts 100 --seed 1`
/// and `generate trace --instances 1000 --seed 1`): balanced places at least 10% more instances
/// before the first rejection than Nova's spread, and every placement of either claims.
#[test]
fn on_the_shipped_trace_balanced_places_more_before_the_first_rejection_than_spread() {
    let fleet = fixture("fleet/fleet-100.json");
    let trace = fixture("fleet/trace-1000.json");
    // They are what the generator makes, so the README's commands give them again.
    assert_eq!(std::fs::read(&fleet).unwrap(), numafit(&["generate", "fleet", "--hosts", "100", "--seed", "1"]).stdout);
    assert_eq!(std::fs::read(&trace).unwrap(), numafit(&["generate", "trace", "--instances", "1000", "--seed", "1"]).stdout);
    let o = numafit(&["simulate", "--fleet", s(&fleet), "--trace", s(&trace), "--policy", "nova", "--policy", "balanced", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    let runs = out["runs"].as_array().unwrap();
    let n = |r: &Value, k: &str| r[k].as_u64().unwrap();
    for r in runs {
        assert_eq!(n(r, "failed_claims"), 0, "{}", r["weighers"]);
        assert_eq!(n(r, "unplaceable"), 0, "every request fits some empty host");
        assert!(n(r, "rejected") > 0, "the trace outgrows the fleet, so a first rejection exists");
    }
    let (nova, balanced) = (n(&runs[0], "placed_before_first_rejection"), n(&runs[1], "placed_before_first_rejection"));
    assert!(balanced * 10 >= nova * 11, "balanced {balanced} against nova {nova} before the first rejection");
}

#[test]
fn bad_traces_and_policies_are_refused_by_name() {
    let dir = scratch("simulate-bad");
    let fleet = generated(&dir, &["fleet", "--hosts", "2"], "fleet.json");
    let request = json!({"cells": [{"pcpuset": [0], "memory": 512}], "cpu_policy": "dedicated"});
    let cases = [
        (json!([{"t": 0, "instance": "a", "depart": true}]), "event [0]: field instance"),
        (json!([{"t": 5, "instance": "a", "request": request}, {"t": 1, "instance": "a", "depart": true}]), "event [1]: field t"),
        (json!([{"t": 0, "instance": "a"}]), "event [0]: give either request"),
        (json!([{"t": 0, "instance": "a", "request": request}, {"t": 1, "instance": "a", "request": request}]), "arrives twice"),
        (json!([{"t": 0, "instance": "a", "request": request, "colour": 1}]), "colour"),
    ];
    for (i, (trace, want)) in cases.into_iter().enumerate() {
        let p = dir.join(format!("trace-{i}.json"));
        std::fs::write(&p, trace.to_string()).unwrap();
        let o = numafit(&["simulate", "--fleet", s(&fleet), "--trace", s(&p)]);
        assert_eq!(o.status.code(), Some(2), "{want}: {}", stderr(&o));
        assert!(stderr(&o).contains(want) && stderr(&o).contains(&format!("trace-{i}.json")), "{want}: {}", stderr(&o));
    }
    let ok = dir.join("ok.json");
    std::fs::write(&ok, json!([{"t": 0, "instance": "a", "request": request}]).to_string()).unwrap();
    for (policy, want) in [("nvoa", "\"nvoa\" is not one of nova, balanced"), ("balanced=packk", "packk")] {
        let o = numafit(&["simulate", "--fleet", s(&fleet), "--trace", s(&ok), "--policy", policy]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
    }
    let o = numafit(&["generate", "trace", "--mix", "gaming"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--mix gaming"), "{}", stderr(&o));
}
