//! End-to-end tests of the `numafit` binary: the embedded component computes, the host verifies
//! and prints, and the exit status says what happened (0 fits, 1 refused, 2 invalid input).

mod support;
use support::*;

use serde_json::Value;

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn fit_on_the_shipped_example_prints_a_pinned_placement() {
    let (h, r) = (example("host.json"), example("request.json"));
    let o = numafit(&["fit", "--host", path(&h), "--request", path(&r)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("fits") && text.contains("pinned vCPU->pCPU"), "{text}");

    let o = numafit(&["fit", "--host", path(&h), "--request", path(&r), "--json"]);
    let p = json_of(&o);
    assert_eq!(p["fits"], true);
    assert_eq!(p["policy"], "nova");
    let cells = p["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2);
    // Host cell 0 has core {0,16} and {1,17} pinned already: the guest gets the next free pairs.
    assert_eq!(cells[0]["host_cell"], 0);
    assert_eq!(cells[0]["cpu_pinning"], serde_json::json!({"0": 2, "1": 18, "2": 3, "3": 19}));
    assert_eq!(cells[0]["pagesize_kb"], 2048);
    assert_eq!(cells[1]["cpu_pinning"], serde_json::json!({"4": 8, "5": 24, "6": 9, "7": 25}));
}

#[test]
fn claim_then_release_gives_back_the_identical_host() {
    let dir = scratch("claim");
    let (h, r) = (example("host.json"), example("request.json"));
    let o = numafit(&["fit", "--host", path(&h), "--request", path(&r), "--json"]);
    let placement = dir.join("placement.json");
    std::fs::write(&placement, &o.stdout).unwrap();

    let o = numafit(&["claim", "--host", path(&h), "--placement", path(&placement), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let claimed = json_of(&o);
    let cell0 = &claimed["cells"][0];
    assert_eq!(cell0["memory_usage"], 4096);
    assert_eq!(cell0["pinned_cpus"], serde_json::json!([0, 1, 2, 3, 16, 17, 18, 19]));
    assert_eq!(cell0["mempages"][1]["used"], 2048, "4 GiB in 2 MiB pages");
    let claimed_path = dir.join("claimed.json");
    std::fs::write(&claimed_path, &o.stdout).unwrap();

    // The same placement again collides: exit 1 and Nova's error name.
    let o = numafit(&["claim", "--host", path(&claimed_path), "--placement", path(&placement), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_of(&o)["code"], "CPUPinningInvalid");

    let o = numafit(&["release", "--host", path(&claimed_path), "--placement", path(&placement), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let original: Value = serde_json::from_slice(&std::fs::read(&h).unwrap()).unwrap();
    assert_eq!(json_of(&o), original);

    // Releasing what is not pinned is refused.
    let o = numafit(&["release", "--host", path(&h), "--placement", path(&placement), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_of(&o)["code"], "CPUUnpinningInvalid");

    // A placement whose dedicated vCPUs are not the ones it pins is invalid input, named.
    let mut edited: Value = serde_json::from_slice(&std::fs::read(&placement).unwrap()).unwrap();
    edited["cells"][0]["pcpuset"] = serde_json::json!([0, 1, 2]);
    let bad = dir.join("bad-placement.json");
    std::fs::write(&bad, edited.to_string()).unwrap();
    let o = numafit(&["claim", "--host", path(&h), "--placement", path(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cells[0].pcpuset") && stderr(&o).contains("cpu_pinning"), "{}", stderr(&o));
}

#[test]
fn a_request_that_fits_nowhere_prints_per_cell_reasons() {
    let case = fixture("bench/08-8cell-4cell-last-fits-nowhere");
    let (h, r) = (case.join("host.json"), case.join("request.json"));
    let o = numafit(&["fit", "--host", path(&h), "--request", path(&r)]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.contains("does not fit: guest cell 3 fits on no host cell"), "{text}");
    assert!(text.contains("pinnable-cpus") && text.contains("16 CPUs pinnable, needs 17"), "{text}");

    let o = numafit(&["fit", "--host", path(&h), "--request", path(&r), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let j = json_of(&o);
    assert_eq!(j["fits"], false);
    let reasons = j["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 8, "one reason per host cell for guest cell 3");
    assert!(reasons.iter().all(|r| r["guest_cell"] == 3 && r["needed"] == 17 && r["available"] == 16 && r["shortfall"] == "pinnable-cpus"));
}

#[test]
fn malformed_and_invalid_input_exit_2_naming_file_field_and_value() {
    let dir = scratch("bad");
    let (h, r) = (example("host.json"), example("request.json"));
    let bad = dir.join("bad.json");

    std::fs::write(&bad, "{\"cells\": [").unwrap();
    let o = numafit(&["fit", "--host", path(&bad), "--request", path(&r)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.json") && stderr(&o).contains("invalid JSON"), "{}", stderr(&o));

    std::fs::write(&bad, r#"{"cells": [{"id": 0, "cpuset": [0], "pcpuset": ["x"], "memory": 1024}]}"#).unwrap();
    let o = numafit(&["fit", "--host", path(&bad), "--request", path(&r)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cells[0].pcpuset[0]") && stderr(&o).contains("\"x\""), "{}", stderr(&o));

    std::fs::write(&bad, r#"{"cells": [{"id": 0, "pcpuset": [0, 1], "pinned_cpus": [5], "memory": 1024}]}"#).unwrap();
    let o = numafit(&["fit", "--host", path(&bad), "--request", path(&r)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cells[0].pinned_cpus") && stderr(&o).contains("CPU 5"), "{}", stderr(&o));

    std::fs::write(&bad, r#"{"cells": [{"id": 0, "pcpuset": [0], "memroy": 1024}]}"#).unwrap();
    let o = numafit(&["fit", "--host", path(&bad), "--request", path(&r)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("memroy"), "{}", stderr(&o));

    std::fs::write(&bad, r#"{"flavor": {"vcpus": 4, "memory_mb": 4096, "extra_specs": {"hw:numa_nodes": "3"}}}"#).unwrap();
    let o = numafit(&["fit", "--host", path(&h), "--request", path(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ImageNUMATopologyAsymmetric") && stderr(&o).contains("hw:numa_nodes=3"), "{}", stderr(&o));

    std::fs::write(&bad, r#"{"cells": [{"id": 0, "pcpuset": [0, 4000000000], "memory": 1024}]}"#).unwrap();
    let o = numafit(&["fit", "--host", path(&bad), "--request", path(&r)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cells[0].pcpuset") && stderr(&o).contains("4000000000"), "{}", stderr(&o));

    std::fs::write(
        &bad,
        r#"{"cells": [{"cpuset": [0, 1], "pcpuset": [], "memory": 1024}], "cpu_policy": "shared", "cpu_thread_policy": "isolate"}"#,
    )
    .unwrap();
    let o = numafit(&["fit", "--host", path(&h), "--request", path(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cpu_thread_policy") && stderr(&o).contains("CPUThreadPolicyConfigurationInvalid"), "{}", stderr(&o));

    std::fs::write(&bad, r#"{"cells": [{"cpuset": [0], "pcpuset": [1], "memory": 1024}], "cpu_policy": "dedicated"}"#).unwrap();
    let o = numafit(&["fit", "--host", path(&h), "--request", path(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cells[0].cpuset"), "{}", stderr(&o));

    std::fs::write(&bad, r#"{"cpu_allocation_ratio": -1}"#).unwrap();
    let o = numafit(&["fit", "--host", path(&h), "--request", path(&r), "--limits", path(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cpu_allocation_ratio") && stderr(&o).contains("-1"), "{}", stderr(&o));

    let o = numafit(&["fit", "--host", "/nonexistent/host.json", "--request", path(&r)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/host.json"), "{}", stderr(&o));
}

#[test]
fn shared_guests_with_limits_and_the_no_constraint_case() {
    let case = fixture("bench/10-8cell-4cell-shared-limits");
    let o = numafit(&[
        "fit",
        "--host",
        path(&case.join("host.json")),
        "--request",
        path(&case.join("request.json")),
        "--limits",
        path(&case.join("limits.json")),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json_of(&o);
    assert!(j["cells"].as_array().unwrap().iter().all(|c| c["cpu_pinning"] == serde_json::json!({})));

    let dir = scratch("noconstraint");
    let req = dir.join("r.json");
    std::fs::write(&req, r#"{"flavor": {"vcpus": 2, "memory_mb": 2048, "extra_specs": {}}}"#).unwrap();
    let o = numafit(&["fit", "--host", path(&example("host.json")), "--request", path(&req)]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("no NUMA constraint"), "{}", stdout(&o));
}

#[test]
fn strategy_pack_changes_the_chosen_cell() {
    let dir = scratch("pack");
    let req = dir.join("r.json");
    std::fs::write(&req, r#"{"flavor": {"vcpus": 2, "memory_mb": 2048, "extra_specs": {"hw:cpu_policy": "dedicated"}}}"#).unwrap();
    let h = example("host.json");
    let cell_of = |strategy: &str| {
        let o = numafit(&["fit", "--host", path(&h), "--request", path(&req), "--strategy", strategy, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        json_of(&o)["cells"][0]["host_cell"].as_u64().unwrap()
    };
    // Cell 0 has pinned CPUs: spread avoids it, pack fills it.
    assert_eq!(cell_of("spread"), 1);
    assert_eq!(cell_of("pack"), 0);
}

#[test]
fn request_prints_the_guest_topology_or_novas_error() {
    let o = numafit(&["request", "--request", path(&example("request.json")), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json_of(&o);
    assert_eq!(j["cells"].as_array().unwrap().len(), 2);
    assert_eq!(j["cells"][1]["pcpuset"], serde_json::json!([4, 5, 6, 7]));
    assert_eq!(j["cells"][0]["pagesize"], 2048);
}

#[test]
fn info_and_export_plugin() {
    let o = numafit(&["info", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let j = json_of(&o);
    assert_eq!((j["name"].as_str(), j["contract"].as_str()), (Some("nova"), Some("0.5.0")));

    let dir = scratch("export");
    let out = dir.join("nova.wasm");
    let o = numafit(&["export-plugin", path(&out)]);
    assert_eq!(o.status.code(), Some(0));
    let o = numafit(&["info", "--plugin", path(&out)]);
    assert!(stdout(&o).contains("policy nova"), "{}", stdout(&o));
    let out = dir.join("balanced.wasm");
    assert_eq!(numafit(&["export-plugin", path(&out), "--policy", "balanced"]).status.code(), Some(0));
    let o = numafit(&["info", "--plugin", path(&out)]);
    assert!(stdout(&o).contains("policy balanced"), "{}", stdout(&o));

    let o = numafit(&["info", "--plugin", "/nonexistent.wasm"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent.wasm"));
}

#[test]
fn policy_balanced_answers_differently_on_asymmetric_distances() {
    let dir = scratch("balanced");
    let req = dir.join("r.json");
    std::fs::write(
        &req,
        r#"{"flavor": {"vcpus": 4, "memory_mb": 4096, "extra_specs": {"hw:numa_nodes": "2", "hw:cpu_policy": "dedicated"}}}"#,
    )
    .unwrap();
    let host = fixture("asymmetric-host.json");
    let cells = |policy: &str| -> (Vec<u64>, String) {
        let o = numafit(&["fit", "--host", path(&host), "--request", path(&req), "--policy", policy, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let j = json_of(&o);
        (
            j["cells"].as_array().unwrap().iter().map(|c| c["host_cell"].as_u64().unwrap()).collect(),
            j["policy"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(cells("nova"), (vec![0, 1], "nova".to_string()), "Nova: first cells in its order");
    assert_eq!(cells("balanced"), (vec![0, 3], "balanced".to_string()), "balanced: cells 0 and 3 are 11 apart, the rest 21");
    let o = numafit(&["info", "--policy", "balanced"]);
    assert!(stdout(&o).contains("policy balanced"), "{}", stdout(&o));
    let o = numafit(&["fit", "--host", path(&host), "--request", path(&req), "--policy", "balanced", "--plugin", "x.wasm"]);
    assert_eq!(o.status.code(), Some(2), "--policy and --plugin conflict");
}

#[test]
fn pci_requests_pull_the_guest_to_the_cell_with_the_devices() {
    let dir = scratch("pci");
    let mut host: Value = serde_json::from_slice(&std::fs::read(fixture("asymmetric-host.json")).unwrap()).unwrap();
    host["pci_pools"] = serde_json::json!([{"numa_node": 2, "count": 2, "vendor_id": "8086", "product_id": "154d"}]);
    let host_path = dir.join("host.json");
    std::fs::write(&host_path, serde_json::to_vec(&host).unwrap()).unwrap();
    let run = |request: &str| {
        let req = dir.join("r.json");
        std::fs::write(&req, request).unwrap();
        let o = numafit(&["fit", "--host", path(&host_path), "--request", path(&req), "--json"]);
        (o.status.code(), json_of(&o))
    };
    let flavor = r#""flavor": {"vcpus": 2, "memory_mb": 2048, "extra_specs": {"hw:cpu_policy": "dedicated", "hw:pci_numa_affinity_policy": "required"}}"#;
    let (code, j) = run(&format!(r#"{{{flavor}, "pci_requests": [{{"count": 2, "spec": [{{"vendor_id": "8086"}}]}}]}}"#));
    assert_eq!((code, j["cells"][0]["host_cell"].as_u64()), (Some(0), Some(2)), "{j}");
    let (code, j) = run(&format!(r#"{{{flavor}}}"#));
    assert_eq!((code, j["cells"][0]["host_cell"].as_u64()), (Some(0), Some(0)), "without devices, cells with devices come last: {j}");
    let (code, j) = run(&format!(r#"{{{flavor}, "pci_requests": [{{"count": 3, "spec": [{{"vendor_id": "8086"}}]}}]}}"#));
    assert_eq!(code, Some(1), "{j}");
    assert!(j["reasons"].as_array().unwrap().iter().any(|r| r["detail"].as_str().unwrap().contains("PCI")), "{j}");
}

#[test]
fn a_claim_is_recorded_on_the_host_as_written_by_the_hosts_own_accounting() {
    // Page pools listed largest first, and no sibling groups: the record keeps the operator's
    // layout, and memory that asks for no page size is charged to the smallest pool wherever it
    // stands in the list.
    let dir = scratch("claim-as-written");
    let host = dir.join("host.json");
    let doc = serde_json::json!({"cells": [{
        "id": 0, "cpuset": [0, 1], "pcpuset": [2, 3], "memory": 4096,
        "mempages": [{"size_kb": 2048, "total": 512}, {"size_kb": 4, "total": 786432}]
    }]});
    std::fs::write(&host, doc.to_string()).unwrap();
    let request = dir.join("request.json");
    std::fs::write(&request, r#"{"cells": [{"pcpuset": [0, 1], "memory": 1024}], "cpu_policy": "dedicated"}"#).unwrap();
    let o = numafit(&["fit", "--host", path(&host), "--request", path(&request), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let placement = dir.join("placement.json");
    std::fs::write(&placement, &o.stdout).unwrap();

    let o = numafit(&["claim", "--host", path(&host), "--placement", path(&placement), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = json_of(&o);
    let cell = &after["cells"][0];
    assert_eq!(cell["pinned_cpus"], serde_json::json!([2, 3]));
    assert_eq!(cell["memory_usage"], 1024);
    assert_eq!(cell["mempages"][0]["size_kb"], 2048, "the pools keep their order");
    assert_eq!(cell["mempages"][0]["used"], 0);
    assert_eq!(cell["mempages"][1]["used"], 262144, "1 GiB in 4 KiB pages, from the smallest pool");
    assert_eq!(cell["siblings"], serde_json::json!([]), "no sibling groups invented");

    let claimed = dir.join("claimed.json");
    std::fs::write(&claimed, &o.stdout).unwrap();
    let o = numafit(&["release", "--host", path(&claimed), "--placement", path(&placement), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut original = doc.clone();
    for (k, v) in [("cpu_usage", 0), ("memory_usage", 0)] {
        original["cells"][0][k] = v.into();
    }
    original["cells"][0]["pinned_cpus"] = serde_json::json!([]);
    original["cells"][0]["siblings"] = serde_json::json!([]);
    for pool in original["cells"][0]["mempages"].as_array_mut().unwrap() {
        pool["used"] = 0.into();
        pool["reserved"] = 0.into();
    }
    assert_eq!(json_of(&o), original, "release gives the host back as written");
}
