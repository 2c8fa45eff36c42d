//! How long applying a placement takes, side by side with what it adds to: `numafit run -- true`
//! against `claim` + `release` (the run's own claim and release) from the CLI; a child started
//! inside its placement (affinity + memory policy before exec) against a plain spawn; a claim
//! with its cgroup written (`POST /v1/claims` with `apply`) against a claim alone, over the
//! daemon's Unix socket. Medians of repeated runs, all in one process run.
//! `cargo bench --bench apply [-- ROUNDS]`.

#[path = "../../tests/support/http.rs"]
mod http;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use numafit_host::apply::{cgroup, process, Binding, MemPolicy};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn numafit(args: &[&str]) {
    let st = Command::new(env!("CARGO_BIN_EXE_numafit")).args(args).stdout(Stdio::null()).status().expect("numafit runs");
    assert!(st.success(), "numafit {args:?}: {st}");
}

fn scratch_cgroup(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("cgroup");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("cgroup.controllers"), "cpuset cpu memory\n").unwrap();
    std::fs::write(root.join("cgroup.subtree_control"), "+cpuset\n").unwrap();
    root
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(40);
    let dir = std::env::temp_dir().join(format!("numafit-bench-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::env::set_var("NUMAFIT_CACHE_DIR", dir.join("cache"));
    let state = dir.join("state");
    let st = state.to_str().unwrap();
    let request = dir.join("request.json");
    std::fs::write(&request, r#"{"cells": [{"pcpuset": [0], "memory": 64}], "cpu_policy": "dedicated"}"#).unwrap();
    let rq = request.to_str().unwrap();
    let root = scratch_cgroup(&dir);
    let rt = root.to_str().unwrap();
    // Warm the compiled-artifact cache so no round compiles.
    numafit(&["claim", "--instance", "warm", "--request", rq, "--state-dir", st]);
    numafit(&["release", "--instance", "warm", "--state-dir", st]);

    println!("numafit apply timings: median of {rounds} rounds, this machine, side by side");
    println!("| what | median (ms) | against | median (ms) | added (ms) |");
    println!("|---|---|---|---|---|");
    let (mut base, mut run) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let id = format!("vm-{i}");
        base.push(ms(|| {
            numafit(&["claim", "--instance", &id, "--request", rq, "--state-dir", st]);
            numafit(&["release", "--instance", &id, "--state-dir", st]);
        }));
        run.push(ms(|| numafit(&["run", "--instance", &id, "--request", rq, "--state-dir", st, "--", "true"])));
    }
    let (b, r) = (median(base), median(run));
    println!(
        "| `numafit run -- true` (claim, pinned exec, wait, release) | {r:.2} | `claim` + `release` (two processes) | {b:.2} | {:.2} |",
        r - b
    );

    let (mut cli_apply, mut cli_claim) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let id = format!("vm-a-{i}");
        cli_claim.push(ms(|| numafit(&["claim", "--instance", &id, "--request", rq, "--state-dir", st])));
        let group = format!("vm-a-{i}");
        cli_apply
            .push(ms(|| numafit(&["apply", "--instance", &id, "--cgroup", &group, "--cgroup-root", rt, "--create", "--state-dir", st])));
        numafit(&["release", "--instance", &id, "--state-dir", st]);
    }
    let (c, a) = (median(cli_claim), median(cli_apply));
    println!("| `numafit claim` then `numafit apply` (claim to cpuset written) | {:.2} | `numafit claim` alone | {c:.2} | {a:.2} |", c + a);

    // In one process: the child's start inside its placement against a plain spawn.
    let host = numafit_host::discover::read_sysfs(Path::new("/")).unwrap().host(&Default::default()).unwrap();
    let placement: numafit_host::formats::PlacementJson = serde_json::from_value(serde_json::json!({
        "fits": true, "policy": "bench", "cpu_policy": "dedicated", "numa_constrained": true,
        "cells": [{"guest_cell": 0, "host_cell": 0, "cpuset": [], "pcpuset": [0], "memory": 64, "pagesize_kb": null,
                   "cpu_pinning": {"0": host.cells[0].pcpuset.first().unwrap()}, "cpuset_reserved": null}]
    }))
    .unwrap();
    let binding = Binding::of(&placement, &host).unwrap();
    let program = std::ffi::OsString::from("true");
    let (mut placed, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..rounds * 5 {
        let launch = process::Launch { instance: "bench", binding: &binding, mem_policy: MemPolicy::Strict, program: &program, args: &[] };
        placed.push(ms(|| {
            process::spawn(&launch).unwrap().wait().unwrap();
        }));
        plain.push(ms(|| {
            Command::new("true").status().unwrap();
        }));
    }
    let (p, q) = (median(placed), median(plain));
    println!(
        "| child started pinned + memory bound, to its exit (in process) | {p:.3} | plain spawn of the same | {q:.3} | {:.3} |",
        p - q
    );
    let mut writes = Vec::new();
    for i in 0..rounds * 5 {
        let group = format!("inproc-{i}");
        writes.push(ms(|| {
            cgroup::apply(&root, &group, true, &binding).unwrap();
        }));
    }
    println!("| cgroup cpuset written, group created (in process, scratch tree) | {:.3} | | | |", median(writes));

    // Over the daemon: a claim with its cgroup written against a claim alone.
    let d = http::Daemon::start(&dir.join("serve.sock"), &["--state-dir", dir.join("state-serve").to_str().unwrap(), "--cgroup-root", rt]);
    let mut client = d.client();
    let small = r#"{"cells": [{"pcpuset": [0], "memory": 64}], "cpu_policy": "dedicated"}"#;
    let (mut plain_claims, mut applied) = (Vec::new(), Vec::new());
    for i in 0..rounds * 5 {
        let id = format!("d-{i}");
        plain_claims
            .push(ms(|| assert_eq!(client.post("/v1/claims", &format!(r#"{{"instance": "{id}", "request": {small}}}"#)).status, 201)));
        let _ = client.send("DELETE", &format!("/v1/claims/{id}"), &[], Vec::new());
        let body = format!(r#"{{"instance": "{id}", "request": {small}, "apply": {{"cgroup": "serve-{i}", "create": true}}}}"#);
        applied.push(ms(|| assert_eq!(client.post("/v1/claims", &body).status, 201)));
        let _ = client.send("DELETE", &format!("/v1/claims/{id}"), &[], Vec::new());
    }
    let (c, a) = (median(plain_claims), median(applied));
    println!(
        "| `POST /v1/claims` with `apply.cgroup` (claim to cpuset written) | {a:.3} | the same claim without apply | {c:.3} | {:.3} |",
        a - c
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
