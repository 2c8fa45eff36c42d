//! What numafit refuses to trust: claims a fit could never have produced, compiled artifacts that
//! are not what they claim to be, and hostile or malformed input. Every case runs the real binary
//! on real files; each names the field or flag and the value, and exits with the README's code.

mod support;
use support::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn write(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path
}

fn run_in(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_numafit")).args(args).env("NUMAFIT_CACHE_DIR", cache).output().expect("numafit runs")
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A one-cell host: 4 single-thread pinnable CPUs, 4 shared ones, 8 GiB in 4 KiB pages and 16 free
/// 2 MiB pages (4 reserved).
fn small_host() -> Value {
    json!({"cells": [{"id": 0, "cpuset": [4, 5, 6, 7], "pcpuset": [0, 1, 2, 3], "memory": 8192,
        "mempages": [{"size_kb": 4, "total": 2097152, "used": 0, "reserved": 0},
                     {"size_kb": 2048, "total": 20, "used": 0, "reserved": 4}]}]})
}

fn placement(cells: Value, cpu_policy: Option<&str>) -> Value {
    json!({"fits": true, "policy": "nova", "cpu_policy": cpu_policy, "cpu_thread_policy": null,
           "emulator_threads_policy": null, "numa_constrained": true, "cells": cells})
}

fn cell(memory: u64, pagesize: Option<u32>, shared: &[u32], pinning: Value, reserved: Value) -> Value {
    let pcpus: Vec<u32> = pinning.as_object().map(|m| m.keys().map(|k| k.parse().unwrap()).collect()).unwrap_or_default();
    json!({"guest_cell": 0, "host_cell": 0, "cpuset": shared, "pcpuset": pcpus, "memory": memory,
           "pagesize_kb": pagesize, "cpu_pinning": pinning, "cpuset_reserved": reserved})
}

#[test]
fn claims_refuse_what_no_fit_could_have_produced() {
    let dir = scratch("trust-claims");
    let host = write(&dir, "host.json", &small_host());
    let mut full = small_host();
    full["cells"][0]["mempages"][1]["used"] = json!(16);
    let full = write(&dir, "full.json", &full);
    let limits = write(&dir, "limits.json", &json!({"ram_allocation_ratio": 1.25}));
    let dedicated = Some("dedicated");
    // (name, host, placement, extra args, exit, what the output names)
    let rows: Vec<(&str, &PathBuf, Value, Vec<&str>, i32, &str)> = vec![
        (
            "2 MiB pages beyond the free ones",
            &full,
            placement(json!([cell(2, Some(2048), &[], json!({"0": 0}), json!(null))]), dedicated),
            vec![],
            1,
            "ComputeResourcesUnavailable",
        ),
        (
            "2 MiB pages beyond the unreserved ones",
            &host,
            placement(json!([cell(34, Some(2048), &[], json!({"0": 0}), json!(null))]), dedicated),
            vec![],
            1,
            "17 2048 KiB pages; 16 are free",
        ),
        (
            "a page size the cell has no pool of",
            &host,
            placement(json!([cell(1024, Some(1048576), &[], json!({"0": 0}), json!(null))]), dedicated),
            vec![],
            1,
            "MemoryPageSizeNotSupported",
        ),
        (
            "a CPU that is not pinnable",
            &host,
            placement(json!([cell(1024, None, &[], json!({"0": 5}), json!(null))]), dedicated),
            vec![],
            1,
            "CPUPinningUnknown",
        ),
        (
            "pinned memory beyond the free small pages",
            &host,
            placement(json!([cell(9000, None, &[], json!({"0": 0}), json!(null))]), dedicated),
            vec![],
            1,
            "ComputeResourcesUnavailable",
        ),
        (
            "floating memory beyond the cell",
            &host,
            placement(json!([cell(9000, None, &[4], json!(null), json!(null))]), None),
            vec![],
            1,
            "ComputeResourcesUnavailable",
        ),
        (
            "floating vCPUs beyond the shared CPUs",
            &host,
            placement(json!([cell(1024, None, &[0, 1, 2, 3, 4], json!(null), json!(null))]), None),
            vec![],
            1,
            "5 shared vCPUs, but the cell has 4 shared CPUs",
        ),
        (
            "memory 2^64-1",
            &host,
            placement(json!([cell(u64::MAX, None, &[4], json!(null), json!(null))]), None),
            vec![],
            2,
            "cells[0].memory",
        ),
        ("memory 0", &host, placement(json!([cell(0, None, &[4], json!(null), json!(null))]), None), vec![], 2, "cells[0].memory: 0 MiB"),
        (
            "two vCPUs on one CPU",
            &host,
            placement(json!([cell(1024, None, &[], json!({"0": 1, "1": 2, "2": 3, "3": 3}), json!(null))]), dedicated),
            vec![],
            2,
            "host CPU 3 is already given",
        ),
        (
            "emulator CPU on a vCPU's CPU",
            &host,
            placement(json!([cell(1024, None, &[], json!({"0": 1}), json!([1]))]), dedicated),
            vec![],
            2,
            "cells[0].cpuset_reserved: host CPU 1",
        ),
        ("a NUMA-constrained placement with no cells", &host, placement(json!([]), dedicated), vec![], 2, "field cells"),
    ];
    for (name, host, p, extra, code, says) in rows {
        let file = write(&dir, "placement.json", &p);
        let mut args = vec!["claim", "--host", path_str(host), "--placement", path_str(&file), "--json"];
        args.extend(extra);
        let o = numafit(&args);
        let out = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(code), "{name}: {out}");
        assert!(out.contains(says), "{name}: expected {says:?} in {out}");
    }
    // Nova records small-page overcommit of floating guests: a second 6 GiB guest on the 8 GiB
    // cell is recorded without limits, refused over the RAM allocation ratio, and the smallest pool
    // may then show more used than total.
    let mut used = small_host();
    used["cells"][0]["memory_usage"] = json!(6144);
    used["cells"][0]["mempages"][0]["used"] = json!(6144 * 256);
    let used = write(&dir, "used.json", &used);
    let six = write(&dir, "six.json", &placement(json!([cell(6144, None, &[4], json!(null), json!(null))]), None));
    let o = numafit(&["claim", "--host", path_str(&used), "--placement", path_str(&six), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(after["cells"][0]["memory_usage"], json!(12288));
    let o = numafit(&["claim", "--host", path_str(&used), "--placement", path_str(&six), "--limits", path_str(&limits), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("ram_allocation_ratio 1.25"), "{}", stdout(&o));
    // The recorded overcommitted host reads back and releases.
    let over = write(&dir, "over.json", &after);
    let o = numafit(&["release", "--host", path_str(&over), "--placement", path_str(&six), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn placements_as_nova_holds_them_read_back() {
    let dir = scratch("trust-null");
    let host = write(&dir, "host.json", &small_host());
    let p = write(&dir, "p.json", &placement(json!([cell(1024, None, &[4, 5], json!(null), json!(null))]), None));
    let o = numafit(&["claim", "--host", path_str(&host), "--placement", path_str(&p), "--json"]);
    assert_eq!(o.status.code(), Some(0), "null cpu_pinning and cpuset_reserved read as none: {}", stderr(&o));
}

fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    v.sort();
    v
}

fn info_name(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["name"].as_str().unwrap().to_string()
}

#[test]
fn a_foreign_artifact_copied_over_the_cache_is_discarded_not_run() {
    let nova = scratch("trust-cache-nova");
    let balanced = scratch("trust-cache-balanced");
    assert_eq!(info_name(&run_in(&nova, &["info", "--json"])), "nova");
    assert_eq!(info_name(&run_in(&balanced, &["info", "--json", "--policy", "balanced"])), "balanced");
    let (target, foreign) = (artifacts(&nova).remove(0), artifacts(&balanced).remove(0));
    // The artifact alone, then the artifact with its record: neither makes numafit run it.
    for with_record in [false, true] {
        std::fs::copy(&foreign, &target).unwrap();
        if with_record {
            std::fs::copy(foreign.with_extension("cwasm.sha256"), target.with_extension("cwasm.sha256")).unwrap();
        }
        let o = run_in(&nova, &["info", "--json"]);
        assert_eq!(info_name(&o), "nova", "the embedded nova policy answers, not the foreign artifact");
        assert!(stderr(&o).contains("discarded cached artifact"), "{}", stderr(&o));
        let o = run_in(&nova, &["info", "--json"]);
        assert_eq!(info_name(&o), "nova");
        assert!(stderr(&o).is_empty(), "recompiled and stored again: {}", stderr(&o));
    }
}

#[test]
fn a_corrupted_artifact_is_recompiled_not_executed() {
    let dir = scratch("trust-cache-flip");
    assert_eq!(info_name(&run_in(&dir, &["info", "--json"])), "nova");
    let target = artifacts(&dir).remove(0);
    let mut bytes = std::fs::read(&target).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&target, &bytes).unwrap();
    let fit = ["fit", "--host", "examples/host.json", "--request", "examples/request.json", "--json"];
    let o = Command::new(env!("CARGO_BIN_EXE_numafit")).args(fit).current_dir(root()).env("NUMAFIT_CACHE_DIR", &dir).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("do not match their recorded SHA-256"), "{}", stderr(&o));
    assert_ne!(std::fs::read(&target).unwrap(), bytes, "the corrupted artifact was replaced");
}

#[test]
fn an_unsafe_cache_directory_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let open = scratch("trust-cache-open");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = run_in(&open, &["info", "--json"]);
    assert_eq!(info_name(&o), "nova");
    assert!(stderr(&o).contains("writable by others"), "{}", stderr(&o));
    assert!(artifacts(&open).is_empty(), "nothing is written into a directory others can write");
    // Owned by someone else (the tests run as root here; elsewhere chown is refused and skipped).
    let theirs = scratch("trust-cache-theirs");
    if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_ok() {
        let o = run_in(&theirs, &["info", "--json"]);
        assert_eq!(info_name(&o), "nova");
        assert!(stderr(&o).contains("belongs to uid 65534"), "{}", stderr(&o));
        assert!(artifacts(&theirs).is_empty());
    }
}
