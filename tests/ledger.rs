//! The claims ledger through the real binary and real processes: claims recorded under an
//! instance id on a recorded machine (`--numactl-output`), idempotent, released, listed; drift
//! reported by `status`; concurrent claimers SIGKILLed at random moments never pinning a CPU twice
//! nor losing an acknowledged claim or release; a first-schema database opening after an upgrade.

mod support;
use support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use numafit_host::ledger::{self, Ledger};
use serde_json::Value;

fn machine() -> PathBuf {
    fixture("numactl/2node-8cpu.txt")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

/// A request for `cpus` dedicated vCPUs in one guest cell.
fn request(dir: &Path, cpus: u32) -> PathBuf {
    let path = dir.join(format!("request-{cpus}.json"));
    let ids: Vec<u32> = (0..cpus).collect();
    let doc = serde_json::json!({"cells": [{"pcpuset": ids, "memory": 1024}], "cpu_policy": "dedicated"});
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

fn claim(state: &Path, machine: &Path, id: &str, request: &Path) -> std::process::Output {
    numafit(&["claim", "--instance", id, "--request", s(request), "--numactl-output", s(machine), "--state-dir", s(state), "--json"])
}

fn release(state: &Path, id: &str) -> std::process::Output {
    numafit(&["release", "--instance", id, "--state-dir", s(state), "--json"])
}

/// Every pinned host CPU of every claim in the ledger, with the instance that pins it.

#[test]
fn claims_are_recorded_idempotent_per_instance_and_released() {
    let dir = scratch("ledger-basics");
    let state = dir.join("state");
    let r2 = request(&dir, 2);
    let o = claim(&state, &machine(), "vm-a", &r2);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let a = json_of(&o);
    assert_eq!(a["instance"], "vm-a");
    assert_eq!(a["policy"]["name"], "nova");
    assert_eq!(a["policy"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(a["placement"]["fits"], true);

    // The same id and request again: the recorded claim, nothing new.
    let o = claim(&state, &machine(), "vm-a", &r2);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_of(&o)["placement"], a["placement"]);
    // The same request written another way (key order, spacing) is the same request.
    let reworded = dir.join("reworded.json");
    std::fs::write(&reworded, "{ \"cpu_policy\": \"dedicated\",\n  \"cells\": [ {\"memory\": 1024, \"pcpuset\": [0, 1]} ] }").unwrap();
    let o = claim(&state, &machine(), "vm-a", &reworded);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(json_of(&o)["placement"], a["placement"]);
    // The same id with another request: a conflict naming the claim.
    let o = claim(&state, &machine(), "vm-a", &request(&dir, 3));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(json_of(&o)["code"], "InstanceExists");
    assert!(json_of(&o)["message"].as_str().unwrap().contains("vm-a"));

    // A second instance gets other CPUs: the live state includes the first claim.
    let o = claim(&state, &machine(), "vm-b", &r2);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(pins(&state).values().all(|who| who.len() == 1), "{:?}", pins(&state));
    assert_eq!(pins(&state).len(), 4);

    let o = numafit(&["claims", "--state-dir", s(&state), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ids: Vec<String> = json_of(&o).as_array().unwrap().iter().map(|c| c["instance"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["vm-a", "vm-b"]);
    let text = stdout(&numafit(&["claims", "--state-dir", s(&state)]));
    assert!(text.contains("vm-a: host cell") && text.contains("vm-b: host cell"), "{text}");

    // The placement listed is the document `fit --json` prints, readable by the stateless claim.
    let listed = json_of(&numafit(&["claims", "--state-dir", s(&state), "--json"]));
    let placement = dir.join("placement.json");
    std::fs::write(&placement, listed[0]["placement"].to_string()).unwrap();
    let o = numafit(&["claim", "--numactl-output", s(&machine()), "--placement", s(&placement), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let o = release(&state, "vm-a");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_of(&o)["instance"], "vm-a");
    let o = release(&state, "vm-a");
    assert_eq!(o.status.code(), Some(1), "releasing an unknown id is refused");
    assert_eq!(json_of(&o)["code"], "InstanceNotFound");
    assert_eq!(pins(&state).len(), 2);

    // Bad input names the flag and the value.
    let o = claim(&state, &machine(), "", &r2);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--instance \"\""), "{}", stderr(&o));
    let o = numafit(&["claim", "--instance", "x", "--state-dir", s(&state)]);
    assert_eq!(o.status.code(), Some(2), "--instance needs --request");
    // A state directory that is a file, a ledger that is not a database: named, exit 2.
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let o = numafit(&["claims", "--state-dir", s(&file)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not-a-dir") && stderr(&o).contains("not a directory"), "{}", stderr(&o));
    let junk = dir.join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join(ledger::DB_FILE), "not sqlite").unwrap();
    let o = numafit(&["claims", "--state-dir", s(&junk)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(ledger::DB_FILE) && stderr(&o).contains("not a database"), "{}", stderr(&o));
}

#[test]
fn a_full_host_refuses_and_status_names_claims_the_topology_lost() {
    let dir = scratch("ledger-drift");
    let state = dir.join("state");
    let r2 = request(&dir, 2);
    for id in ["a", "b", "c", "d"] {
        let o = claim(&state, &machine(), id, &r2);
        assert_eq!(o.status.code(), Some(0), "{id}: {}", stderr(&o));
    }
    // Eight CPUs, four instances of two: nothing is left.
    let o = claim(&state, &machine(), "e", &r2);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(json_of(&o)["fits"], false);

    let o = numafit(&["status", "--numactl-output", s(&machine()), "--state-dir", s(&state), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let st = json_of(&o);
    assert_eq!((st["claims"].as_u64(), st["lost"].as_array().map(Vec::len)), (Some(4), Some(0)));

    // The machine shrank: node 0 lost CPUs 2 and 3, node 1 most of its memory.
    let shrunk = fixture("numactl/2node-8cpu-shrunk.txt");
    let o = numafit(&["status", "--numactl-output", s(&shrunk), "--state-dir", s(&state), "--json"]);
    assert_eq!(o.status.code(), Some(0), "status reports; it does not refuse: {}", stderr(&o));
    let st = json_of(&o);
    let lost: BTreeMap<String, String> = st["lost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["instance"].as_str().unwrap().to_string(), l["reason"].as_str().unwrap().to_string()))
        .collect();
    let on_cpu_2_or_3: BTreeSet<String> =
        pins(&state).into_iter().filter(|(cpu, _)| [2, 3].contains(cpu)).flat_map(|(_, who)| who).collect();
    for id in &on_cpu_2_or_3 {
        assert!(lost.get(id).is_some_and(|why| why.contains("CPU")), "{id} pinned a CPU that is gone: {lost:?}");
    }
    assert!(lost.len() >= on_cpu_2_or_3.len() && lost.len() < 4, "{lost:?}");
    let text = stdout(&numafit(&["status", "--numactl-output", s(&shrunk), "--state-dir", s(&state)]));
    assert!(text.contains("no longer fits: instance"), "{text}");

    // New claims still work on what is left: releasing one makes room again.
    let kept = ["a", "b", "c", "d"].into_iter().find(|id| !lost.contains_key(*id)).unwrap();
    assert_eq!(release(&state, kept).status.code(), Some(0));
    let o = claim(&state, &shrunk, "f", &request(&dir, 1));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// A small deterministic generator: the test must fail the same way twice.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default)]
struct Acked {
    claimed: BTreeSet<String>,
    /// Releases tried, acknowledged or killed: a killed one may have committed.
    release_tried: BTreeSet<String>,
    released: BTreeSet<String>,
}

/// Runs `args`, SIGKILLing it after `kill_after` when given; the exit code when it ended by itself.
fn run_maybe_killed(args: &[&str], kill_after: Option<Duration>) -> Option<i32> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_numafit")).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    status.code()
}

#[test]
fn concurrent_claimers_killed_at_random_never_pin_twice_nor_lose_an_acknowledged_claim() {
    let dir = scratch("ledger-crash");
    let state = dir.join("state");
    let machine = machine();
    let r2 = request(&dir, 2);
    let acked = std::sync::Mutex::new(Acked::default());
    let killed = std::sync::atomic::AtomicUsize::new(0);
    let text = std::fs::read_to_string(&machine).unwrap();
    let base = numafit_host::discover::parse_numactl(&text, &machine).unwrap().host(&Default::default()).unwrap();
    for round in 0..10u64 {
        std::thread::scope(|scope| {
            for worker in 0..4u64 {
                let (state, machine, r2, acked, killed) = (&state, &machine, &r2, &acked, &killed);
                scope.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (round * 31 + worker + 1));
                    for i in 0..5 {
                        let id = format!("r{round}-w{worker}-{i}");
                        let kill = |rng: &mut Rng| {
                            let k = rng.next().is_multiple_of(3).then(|| Duration::from_millis(rng.next() % 60));
                            killed.fetch_add(usize::from(k.is_some()), std::sync::atomic::Ordering::Relaxed);
                            k
                        };
                        let args =
                            ["claim", "--instance", &id, "--request", s(r2), "--numactl-output", s(machine), "--state-dir", s(state)];
                        if run_maybe_killed(&args, kill(&mut rng)) == Some(0) {
                            acked.lock().unwrap().claimed.insert(id.clone());
                        }
                        if !rng.next().is_multiple_of(4) {
                            acked.lock().unwrap().release_tried.insert(id.clone());
                            let args = ["release", "--instance", &id, "--state-dir", s(state)];
                            if run_maybe_killed(&args, kill(&mut rng)) == Some(0) {
                                acked.lock().unwrap().released.insert(id.clone());
                            }
                        }
                    }
                });
            }
        });
        // After every round: the ledger opens, no CPU is pinned twice, every acknowledged claim
        // no release was tried for is there, and every acknowledged release is gone.
        let present = {
            let seen = acked.lock().unwrap();
            assert_storm_survived(round, &state, &base, &seen.claimed, &seen.release_tried, &seen.released)
        };
        // Give the host back for the next round (claims whose acknowledgement was killed included).
        for id in &present {
            let o = release(&state, id);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            let mut seen = acked.lock().unwrap();
            seen.release_tried.insert(id.clone());
            seen.released.insert(id.clone());
        }
    }
    // The test means something only if processes were killed and claims landed.
    let seen = acked.lock().unwrap();
    assert!(killed.into_inner() > 20 && seen.claimed.len() > 40, "killed and acknowledged too few to tell: {} claims", seen.claimed.len());
}

#[test]
fn a_first_schema_ledger_opens_after_an_upgrade_and_a_newer_one_is_refused() {
    let dir = scratch("ledger-migrate");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Written by the first schema version (`numafit claim --instance` at schema 1), kept as it was.
    std::fs::copy(fixture("ledger/schema-1.sqlite3"), state.join(ledger::DB_FILE)).unwrap();
    let o = numafit(&["claims", "--state-dir", s(&state), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ids: Vec<String> = json_of(&o).as_array().unwrap().iter().map(|c| c["instance"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["first-1", "first-2"]);
    let o = numafit(&["status", "--numactl-output", s(&machine()), "--state-dir", s(&state), "--json"]);
    assert_eq!(json_of(&o)["lost"], serde_json::json!([]));
    let o = claim(&state, &machine(), "after-upgrade", &request(&dir, 2));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The generation starts at the upgrade and moves with every claim and release since.
    let mut l = ledger::Ledger::open(&state).unwrap();
    let (generation, claims) = l.snapshot().unwrap();
    assert_eq!((generation, claims.len()), (1, 3));
    l.release("first-1").unwrap();
    assert_eq!(l.snapshot().unwrap().0, 2);

    // A ledger from a newer numafit is refused, named, and left as it is.
    let newer = dir.join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    let db = newer.join(ledger::DB_FILE);
    std::fs::copy(fixture("ledger/schema-1.sqlite3"), &db).unwrap();
    rusqlite::Connection::open(&db).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let before = std::fs::read(&db).unwrap();
    let o = numafit(&["claims", "--state-dir", s(&newer)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("schema version 99"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn a_fit_made_on_a_stale_view_is_refused_inside_the_transaction_not_recorded() {
    use numafit_host::formats::PlacementJson;
    use numafit_host::ledger::{NewClaim, PolicyVersion, Recorded};
    let dir = scratch("ledger-stale");
    let text = std::fs::read_to_string(machine()).unwrap();
    let base = numafit_host::discover::parse_numactl(&text, &machine()).unwrap().host(&Default::default()).unwrap();
    let admit = |h: &numafit_plugin::HostTopology, p: &numafit_plugin::Placement| numafit_host::verify::admit(h, p, None);
    let placement: PlacementJson = serde_json::from_value(serde_json::json!({
        "fits": true, "policy": "nova", "cpu_policy": "dedicated", "numa_constrained": true,
        "cells": [{"guest_cell": 0, "host_cell": 0, "cpuset": [], "pcpuset": [0, 1], "memory": 1024,
                   "pagesize_kb": null, "cpu_pinning": {"0": 0, "1": 1}}]
    }))
    .unwrap();
    let claim = |id: &str| NewClaim {
        instance: id.into(),
        request: serde_json::json!({}),
        placement: placement.clone(),
        policy: PolicyVersion { name: "nova".into(), version: "test".into(), sha256: "0".repeat(64) },
        owner: None,
        generation: None,
    };
    // Two writers, each with its own connection, both fitted on the empty host: CPUs 0 and 1.
    let (mut first, mut second) = (Ledger::open(&dir).unwrap(), Ledger::open(&dir).unwrap());
    assert!(matches!(first.record(&base, claim("a"), &admit).unwrap(), Recorded::New(_)));
    match second.record(&base, claim("b"), &admit).unwrap() {
        Recorded::Stale(why) => assert!(why.contains("CPU"), "{why}"),
        other => panic!("a placement on CPUs another writer took was not refused: {other:?}"),
    }
    // The same instance and placement again: unchanged; another placement: a conflict.
    assert!(matches!(second.record(&base, claim("a"), &admit).unwrap(), Recorded::Unchanged(_)));
    let mut moved = claim("a");
    moved.placement.cells[0].cpu_pinning = [("0".to_string(), 2), ("1".to_string(), 3)].into_iter().collect();
    assert!(matches!(second.record(&base, moved, &admit).unwrap(), Recorded::Conflict(_)));
    let ids: Vec<String> = first.claims().unwrap().into_iter().map(|c| c.instance).collect();
    assert_eq!(ids, ["a"], "nothing but the first claim was recorded");
}
