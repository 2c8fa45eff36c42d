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
    type Row<'a> = (&'a str, &'a PathBuf, Value, Vec<&'a str>, i32, &'a str);
    let rows: Vec<Row> = vec![
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

fn two_cell_host() -> Value {
    json!({"cells": [
        {"id": 0, "pcpuset": [0, 1], "pinned_cpus": [], "memory": 4096, "siblings": [[0, 1]], "distances": [10, 21],
         "mempages": [{"size_kb": 4, "total": 1048576}, {"size_kb": 2048, "total": 16}]},
        {"id": 1, "pcpuset": [2, 3], "memory": 4096, "siblings": [[2, 3]], "distances": [21, 10],
         "mempages": [{"size_kb": 4, "total": 1048576}, {"size_kb": 2048, "total": 16}]}]})
}

/// `two_cell_host` with one field replaced (a JSON pointer and its new value).
fn host_with(pointer: &str, value: Value) -> Value {
    let mut h = two_cell_host();
    *h.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = value;
    h
}

#[test]
fn malformed_input_is_refused_naming_the_field_and_value() {
    let dir = scratch("trust-input");
    let request =
        write(&dir, "request.json", &json!({"flavor": {"vcpus": 2, "memory_mb": 1024, "extra_specs": {"hw:cpu_policy": "dedicated"}}}));
    let good = serde_json::to_string(&two_cell_host()).unwrap();
    // (name, HOST.json text, what stderr names)
    let rows: Vec<(&str, String, &str)> = vec![
        ("trailing text", format!("{good} xyz"), "data after the document"),
        ("two documents", format!("{good}{good}"), "data after the document"),
        (
            "a sibling group naming an unknown CPU",
            host_with("/cells/0/siblings", json!([[0, 99]])).to_string(),
            "cells[0].siblings[0]: CPU 99 is not a CPU of this cell",
        ),
        (
            "an empty sibling group",
            host_with("/cells/0/siblings", json!([[0, 1], []])).to_string(),
            "cells[0].siblings[1]: an empty sibling group",
        ),
        ("a CPU twice in pcpuset", host_with("/cells/0/pcpuset", json!([0, 1, 1])).to_string(), "cells[0].pcpuset: CPU 1 is listed twice"),
        (
            "a CPU twice in pinned_cpus",
            host_with("/cells/0/pinned_cpus", json!([0, 0])).to_string(),
            "cells[0].pinned_cpus: CPU 0 is listed twice",
        ),
        ("a CPU past the largest", host_with("/cells/0/pcpuset", json!([0, 1, 70000])).to_string(), "CPU 70000 is beyond"),
        ("a local distance that is not 10", host_with("/cells/0/distances", json!([0, 21])).to_string(), "not a SLIT"),
        ("a remote distance under 10", host_with("/cells/1/distances", json!([5, 10])).to_string(), "not a SLIT"),
        (
            "hugepages used beyond total",
            host_with("/cells/0/mempages/1", json!({"size_kb": 2048, "total": 16, "used": 17})).to_string(),
            "cells[0].mempages[1].used",
        ),
        (
            "a page size that is not a power of two",
            host_with("/cells/0/mempages/1", json!({"size_kb": 3000, "total": 16})).to_string(),
            "3000 is not a page size",
        ),
        (
            "a PCI pool on an unknown cell",
            {
                let mut h = two_cell_host();
                h["pci_pools"] = json!([{"numa_node": 7, "count": 1, "vendor_id": "8086", "product_id": "154d"}]);
                h.to_string()
            },
            "pci_pools[0].numa_node: 7 is not a cell",
        ),
    ];
    for (name, text, says) in rows {
        let host = dir.join("host.json");
        std::fs::write(&host, text).unwrap();
        let o = numafit(&["fit", "--host", path_str(&host), "--request", path_str(&request)]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains(path_str(&host)) && stderr(&o).contains(says), "{name}: expected {says:?} in {}", stderr(&o));
    }
    // The same host, well formed, fits: the refusals above are about the values, not the host.
    std::fs::write(dir.join("host.json"), &good).unwrap();
    let o = numafit(&["fit", "--host", path_str(&dir.join("host.json")), "--request", path_str(&request)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_pcpuset_of_millions_of_repeats_stops_at_the_first_repeat() {
    let dir = scratch("trust-huge-list");
    let mut text = String::from(r#"{"cells": [{"id": 0, "memory": 1024, "pcpuset": [0"#);
    text.push_str(&",1".repeat(5_000_000));
    text.push_str("]}]}");
    let host = dir.join("host.json");
    std::fs::write(&host, text).unwrap();
    let request = write(&dir, "request.json", &json!({"flavor": {"vcpus": 1, "memory_mb": 64}}));
    let o = numafit(&["fit", "--host", path_str(&host), "--request", path_str(&request)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cells[0].pcpuset: CPU 1 is listed twice"), "{}", stderr(&o));
}

#[test]
fn flags_that_cannot_be_used_are_refused() {
    let host = example("host.json");
    let request = example("request.json");
    let (h, r) = (path_str(&host), path_str(&request));
    let rows: Vec<(Vec<&str>, &str)> = vec![
        (vec!["fit", "--host", h, "--request", r, "--fuel", "0"], "--fuel"),
        (vec!["fit", "--host", h, "--request", r, "--memory-limit-mb", "0"], "--memory-limit-mb"),
        (vec!["fit", "--host", h, "--request", r, "--reserved-memory", "0:100"], "--reserved-memory"),
        (vec!["fit", "--host", h, "--request", r, "--dedicated-cpus", "0-3"], "--dedicated-cpus"),
        (vec!["fit", "--request", r, "--reserved-hugepages", "0:3000:1"], "--reserved-hugepages \"0:3000:1\""),
        // Thousands of CPUs in an error read as a range, not a list.
        (vec!["fit", "--request", r, "--shared-cpus", "0-9999"], "-9999 are not online CPUs of this host"),
    ];
    for (args, says) in rows {
        let o = numafit(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: expected {says:?} in {}", stderr(&o));
    }
}

#[test]
fn flavors_nova_would_refuse_exit_2_from_every_command() {
    let dir = scratch("trust-flavors");
    let host = example("host.json");
    let rows: Vec<(Value, &str)> = vec![
        (json!({"flavor": {"vcpus": 2, "memory_mb": 0}}), "memory_mb must be at least 1"),
        (
            json!({"flavor": {"vcpus": 2, "memory_mb": 1024, "extra_specs": {"hw:numa_nodes": "2", "hw:numa_cpus.0": "0", "hw:numa_cpus.1": "1",
                "hw:numa_mem.0": "18446744073709551615", "hw:numa_mem.1": "1025"}}}),
            "ImageNUMATopologyMemoryOutOfRange",
        ),
        (
            json!({"flavor": {"vcpus": 2, "memory_mb": 1024, "extra_specs": {"hw:cpu_polcy": "dedicated"}}}),
            "did you mean \"hw:cpu_policy\"",
        ),
        (json!({"flavor": {"vcpus": 2, "memory_mb": 1024, "extra_specs": {"hw:numa_nodez": "2"}}}), "did you mean \"hw:numa_nodes\""),
        (json!({"flavor": {"vcpus": 2, "memory_mb": 1024, "extra_specs": {"hw:cpu_policy": "pinned"}}}), "hw:cpu_policy=\"pinned\""),
        (json!({"cells": [{"cpuset": [0], "memory": 1024, "pagesize": true}]}), "true is not small, large, any or a page size in KiB"),
    ];
    for (req, says) in rows {
        let file = write(&dir, "request.json", &req);
        for args in [vec!["request", "--request", path_str(&file)], vec!["fit", "--host", path_str(&host), "--request", path_str(&file)]] {
            let o = numafit(&args);
            assert_eq!(o.status.code(), Some(2), "{req}: {args:?}: {}{}", stdout(&o), stderr(&o));
            assert!(stderr(&o).contains(says), "{req}: expected {says:?} in {}", stderr(&o));
        }
    }
    // Keys Nova accepts that do not place stay accepted, and so does numafit's own mempolicy.
    let ok = write(
        &dir,
        "ok.json",
        &json!({"flavor": {"vcpus": 2, "memory_mb": 1024, "extra_specs":
        {"hw:cpu_sockets": "1", "hw:watchdog_action": "reset", "hw:numa_mempolicy": "preferred"}}, "image_props": {"hw_numa_mempolicy": "strict"}}),
    );
    let o = numafit(&["request", "--request", path_str(&ok)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn request_output_reads_as_pages_and_back_as_a_request() {
    let dir = scratch("trust-request-out");
    let flavor = write(
        &dir,
        "flavor.json",
        &json!({"flavor": {"vcpus": 4, "memory_mb": 4096, "extra_specs":
        {"hw:numa_nodes": "2", "hw:cpu_policy": "dedicated", "hw:mem_page_size": "2MB"}}}),
    );
    let o = numafit(&["request", "--request", path_str(&flavor)]);
    assert!(stdout(&o).contains("2048 MiB in 2 MiB pages") && !stdout(&o).contains("Some("), "{}", stdout(&o));
    let plain = write(&dir, "plain.json", &json!({"flavor": {"vcpus": 2, "memory_mb": 1024, "extra_specs": {"hw:numa_nodes": "1"}}}));
    assert!(stdout(&numafit(&["request", "--request", path_str(&plain)])).contains("small pages"));
    for f in [&flavor, &plain, &write(&dir, "none.json", &json!({"flavor": {"vcpus": 2, "memory_mb": 1024}}))] {
        let o = numafit(&["request", "--request", path_str(f), "--json"]);
        assert_eq!(o.status.code(), Some(0));
        let again = dir.join("again.json");
        std::fs::write(&again, &o.stdout).unwrap();
        let o2 = numafit(&["request", "--request", path_str(&again), "--json"]);
        assert_eq!(o2.status.code(), Some(0), "request --json output reads back: {}", stderr(&o2));
        assert_eq!(o.stdout, o2.stdout, "and means the same");
    }
}

#[test]
fn a_plugin_that_is_not_a_component_is_named_for_what_it_is() {
    let dir = scratch("trust-plugin-kind");
    let module = dir.join("core.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let o = numafit(&["info", "--plugin", path_str(&module)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("core WebAssembly module, not a component"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("component parser"), "{}", stderr(&o));
}

#[test]
fn a_closed_or_full_stdout_never_panics() {
    use std::process::Stdio;
    // /dev/full: the write error is reported, exit 2.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_numafit"))
        .args(["fit", "--host", "examples/host.json", "--request", "examples/request.json"])
        .current_dir(root())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write the output") && !stderr(&o).contains("panicked"), "{}", stderr(&o));
    // A reader that is gone before numafit writes: ended by SIGPIPE like any filter, no panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_numafit"))
        .args(["fit", "--host", "examples/host.json", "--request", "examples/request.json", "--json"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(o.status.signal() == Some(libc::SIGPIPE) || o.status.code() == Some(141), "{:?} {}", o.status, stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// A recorded sysfs tree of two nodes with two CPUs each, written file by file.
fn sysfs_tree(name: &str) -> PathBuf {
    let root = scratch(name);
    let _ = std::fs::remove_dir_all(&root);
    let put = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put("sys/devices/system/cpu/online", "0-3\n");
    for c in 0..4 {
        put(&format!("sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list"), &format!("{c}\n"));
    }
    for n in 0..2 {
        let dir = format!("sys/devices/system/node/node{n}");
        put(&format!("{dir}/cpulist"), &format!("{}-{}\n", n * 2, n * 2 + 1));
        put(&format!("{dir}/meminfo"), &format!("Node {n} MemTotal:       4194304 kB\nNode {n} MemFree:        2097152 kB\n"));
        put(&format!("{dir}/distance"), if n == 0 { "10 21\n" } else { "21 10\n" });
        put(&format!("{dir}/hugepages/hugepages-2048kB/nr_hugepages"), "16\n");
        put(&format!("{dir}/hugepages/hugepages-2048kB/free_hugepages"), "16\n");
    }
    put("sys/devices/system/node/online", "0-1\n");
    root
}

fn topology_json(root: &Path) -> Output {
    numafit(&["topology", "--sysfs-root", path_str(root), "--json"])
}

#[test]
fn sysfs_from_buggy_firmware_or_odd_files_is_refused_or_read_with_a_note() {
    let good = sysfs_tree("trust-sysfs-good");
    let o = numafit(&["topology", "--sysfs-root", path_str(&good)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("4 KiB assumed"), "a recorded tree's base page size is said: {}", stdout(&o));

    // The same CPUs under both nodes: never a CPU in two cells.
    let overlap = sysfs_tree("trust-sysfs-overlap");
    for n in 0..2 {
        std::fs::write(overlap.join(format!("sys/devices/system/node/node{n}/cpulist")), "0-3\n").unwrap();
        std::fs::write(overlap.join(format!("sys/devices/system/node/node{n}/distance")), "10 10\n").unwrap();
    }
    let o = topology_json(&overlap);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("nodes 0 and 1 both list CPUs 0-3"), "{}", stderr(&o));

    // An empty per-CPU online file: online, with a note.
    let empty = sysfs_tree("trust-sysfs-empty-online");
    std::fs::remove_file(empty.join("sys/devices/system/cpu/online")).unwrap();
    std::fs::write(empty.join("sys/devices/system/cpu/cpu1/online"), "").unwrap();
    let o = numafit(&["topology", "--sysfs-root", path_str(&empty)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("node 0: 2 CPUs") && stdout(&o).contains("cpu1: its online file is empty"), "{}", stdout(&o));

    // The base page size a recorded tree says.
    let arm = sysfs_tree("trust-sysfs-64k");
    std::fs::create_dir_all(arm.join("proc/self")).unwrap();
    std::fs::write(arm.join("proc/self/smaps"), "00400000-00452000 r-xp 00000000 08:02 173521 /bin/x\nKernelPageSize:       64 kB\n")
        .unwrap();
    let o = topology_json(&arm);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let host: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(host["cells"][0]["mempages"][0]["size_kb"], json!(64));

    // Files that cannot be what they claim: refused with the file and the reason.
    let rows: Vec<(&str, &str, &str)> = vec![
        ("sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages", "-1\n", "-1 is not a page count"),
        ("sys/devices/system/node/node1/meminfo", "Node 1 MemTotal: 99999999999999999999999 kB\n", "MemTotal \"99999999999999999999999\""),
    ];
    for (rel, text, says) in rows {
        let t = sysfs_tree("trust-sysfs-bad");
        std::fs::write(t.join(rel), text).unwrap();
        let o = topology_json(&t);
        assert_eq!(o.status.code(), Some(2), "{rel}: {}", stdout(&o));
        assert!(stderr(&o).contains(rel) && stderr(&o).contains(says), "{rel}: expected {says:?} in {}", stderr(&o));
    }

    // A FIFO where a sysfs file belongs: refused at once, never read (which would block forever).
    let fifo = sysfs_tree("trust-sysfs-fifo");
    let meminfo = fifo.join("sys/devices/system/node/node0/meminfo");
    std::fs::remove_file(&meminfo).unwrap();
    let made = Command::new("mkfifo").arg(&meminfo).status().expect("mkfifo runs");
    assert!(made.success());
    let o = Command::new("timeout")
        .args(["60", env!("CARGO_BIN_EXE_numafit"), "topology", "--sysfs-root", path_str(&fifo)])
        .env("NUMAFIT_CACHE_DIR", scratch("trust-fifo-cache"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
}

#[test]
fn topology_reports_in_one_unit_and_blames_the_right_limit() {
    let t = sysfs_tree("trust-sysfs-mems");
    // The cgroup (not the status file) keeps node 1's memory from this process.
    std::fs::create_dir_all(t.join("proc/self")).unwrap();
    std::fs::write(t.join("proc/self/cpuset"), "/jail\n").unwrap();
    std::fs::write(t.join("proc/mounts"), "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n").unwrap();
    std::fs::create_dir_all(t.join("sys/fs/cgroup/jail")).unwrap();
    std::fs::write(t.join("sys/fs/cgroup/jail/cpuset.cpus.effective"), "0-3\n").unwrap();
    std::fs::write(t.join("sys/fs/cgroup/jail/cpuset.mems.effective"), "0\n").unwrap();
    let o = numafit(&["topology", "--sysfs-root", path_str(&t)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("node 1: 2 CPUs, 0 MiB, socket") || text.contains("node 1: 2 CPUs, 0 MiB\n"),
        "no free memory on a node with none: {text}"
    );
    assert!(text.contains("(the cgroup's cpuset.mems)") && !text.contains("Mems_allowed_list"), "{text}");
    assert!(text.contains("2 MiB pages: 32 MiB total (16 pages), 32 MiB free, 0 MiB reserved"), "{text}");
}

#[test]
fn the_svg_draws_each_node_once_with_labels_inside_their_boxes() {
    let dir = scratch("trust-svg");
    // Four nodes whose sockets interleave (0, 1, 0, 1), numbered past 10,000.
    let root = dir.join("tree");
    let _ = std::fs::remove_dir_all(&root);
    let put = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let cpus = |n: u32| (10000 + n * 2, 10001 + n * 2);
    put("sys/devices/system/cpu/online", "10000-10007\n");
    for n in 0..4u32 {
        let (a, b) = cpus(n);
        for c in [a, b] {
            put(&format!("sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list"), &format!("{a}-{b}\n"));
            put(&format!("sys/devices/system/cpu/cpu{c}/topology/physical_package_id"), &format!("{}\n", n % 2));
        }
        let dir = format!("sys/devices/system/node/node{n}");
        put(&format!("{dir}/cpulist"), &format!("{a}-{b}\n"));
        put(&format!("{dir}/meminfo"), &format!("Node {n} MemTotal: 1048576 kB\n"));
    }
    let svg = dir.join("t.svg");
    let o = numafit(&["topology", "--sysfs-root", path_str(&root), "--svg", path_str(&svg)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    for n in 0..4 {
        assert_eq!(text.matches(&format!(">node {n}: ")).count(), 1, "node {n} drawn once:\n{text}");
    }
    // Every node box is at least as wide as its label (12 px text, about 7 px a character).
    for line in text.lines().filter(|l| l.contains("rx=\"8\"")) {
        let width: u32 = line.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(width >= "node 0: 1024 MiB, 0 MiB used".len() as u32 * 7, "{line}");
    }
}

#[test]
fn a_host_too_large_for_the_fuel_budget_says_how_to_raise_it() {
    let dir = scratch("trust-fuel");
    let cells: Vec<Value> = (0..2000).map(|i| json!({"id": i, "pcpuset": [i], "memory": 1024})).collect();
    let host = write(&dir, "host.json", &json!({ "cells": cells }));
    let request =
        write(&dir, "request.json", &json!({"flavor": {"vcpus": 1, "memory_mb": 64, "extra_specs": {"hw:cpu_policy": "dedicated"}}}));
    let o = numafit(&["fit", "--host", path_str(&host), "--request", path_str(&request), "--fuel", "100000"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("raise the budget with --fuel"), "{}", stderr(&o));
    let o = numafit(&["fit", "--host", path_str(&host), "--request", path_str(&request)]);
    assert_eq!(o.status.code(), Some(0), "the default budget holds 2,000 cells: {}", stderr(&o));
}
