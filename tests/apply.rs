//! Applying placements through the real binary and real processes on this machine: `numafit
//! run` starting children inside their claims (read back from the child's own /proc/self/status
//! and `numactl --show`), claims released on exit and by `gc` after numafit is SIGKILLed, exit
//! codes and signals passed through; the cgroup writer on a scratch cgroupfs-shaped tree (and the
//! real cgroup v2 hierarchy where it has a writable cpuset controller); renders against golden
//! files and libvirt's domain schema; `adopt`.

mod support;
use support::*;

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_numafit")
}

fn cache() -> PathBuf {
    std::env::temp_dir().join(format!("numafit-test-cache-{}", std::process::id()))
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

/// This machine's pinnable CPUs, as numafit discovers them.
fn pinnable() -> Vec<u32> {
    let o = numafit(&["topology", "--json"]);
    let host = json_of(&o);
    let mut cpus: Vec<u32> = host["cells"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["pcpuset"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32))
        .collect();
    cpus.sort_unstable();
    assert!(cpus.len() >= 2, "these tests need 2 pinnable CPUs; this machine has {cpus:?}");
    cpus
}

/// A request for `n` dedicated vCPUs in one guest cell, with `extra` merged in.
fn request(dir: &Path, name: &str, n: usize, extra: Value) -> PathBuf {
    let mut doc = serde_json::json!({"cells": [{"pcpuset": (0..n).collect::<Vec<_>>(), "memory": 64}], "cpu_policy": "dedicated"});
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// Half this machine's pinnable CPUs: two such instances fit, a third does not.
fn half() -> usize {
    pinnable().len() / 2
}

fn run_cmd(state: &Path, instance: &str, request: &Path, extra: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--instance", instance, "--request", s(request), "--state-dir", s(state)]).args(extra).arg("--").args(cmd);
    c.env("NUMAFIT_CACHE_DIR", cache());
    c
}

fn claims(state: &Path) -> Vec<Value> {
    let o = numafit(&["claims", "--state-dir", s(state), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    json_of(&o).as_array().unwrap().clone()
}

fn pinned_of(claim: &Value) -> Vec<u32> {
    let mut cpus: Vec<u32> = claim["placement"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["cpu_pinning"].as_object().unwrap().values().map(|v| v.as_u64().unwrap() as u32))
        .collect();
    cpus.sort_unstable();
    cpus
}

fn list_text(cpus: &[u32]) -> String {
    numafit_host::cpulist::text(cpus)
}

/// Waits until `instance`'s claim belongs to a running child (its pid recorded), and returns it.
fn wait_claimed(state: &Path, instance: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(c) = claims(state).into_iter().find(|c| c["instance"] == instance) {
            let pid = c["owner"]["pid"].as_u64().unwrap_or(0);
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "instance {instance} was not claimed by a running child");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_field(pid: u64, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines().find_map(|l| l.strip_prefix(field)).map(|v| v.trim().to_string()).unwrap_or_default()
}

#[test]
fn a_run_child_runs_on_its_pinned_cpus_with_memory_bound_and_the_claim_ends_with_it() {
    let dir = scratch("apply-run");
    let state = dir.join("state");
    let n = half();
    let r = request(&dir, "r", n, serde_json::json!({}));
    // The child reports what the kernel enforces on it, and the claim numafit recorded for it.
    let script = format!(
        "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status; numactl --show; env | grep ^NUMAFIT_ | sort; {} claims --state-dir {} --json > {}/claims.json",
        bin(),
        s(&state),
        s(&dir)
    );
    let o = run_cmd(&state, "vm-run", &r, &[], &["sh", "-c", &script]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("claims.json")).unwrap()).unwrap();
    let claim = &recorded.as_array().unwrap()[0];
    let cpus = list_text(&pinned_of(claim));
    let field = |name: &str| out.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default();
    assert_eq!(field("Cpus_allowed_list:"), cpus, "{out}");
    assert_eq!(field("Mems_allowed_list:"), "0", "{out}");
    assert_eq!(field("policy:"), "bind", "{out}");
    assert_eq!(field("membind:"), "0", "{out}");
    assert_eq!(field("NUMAFIT_CPUS="), cpus, "{out}");
    assert_eq!(field("NUMAFIT_CELL0_CPUS="), cpus, "{out}");
    assert_eq!(field("NUMAFIT_MEMS="), "0", "{out}");
    assert_eq!(field("NUMAFIT_INSTANCE="), "vm-run", "{out}");
    // While it ran, the claim was the child's (the shell's pid, not numafit's).
    assert!(claim["owner"]["pid"].as_u64().is_some(), "{claim}");
    assert!(claims(&state).is_empty(), "the claim outlived its child");

    // The flavor's hw:numa_mempolicy, and the flag over it.
    let r = request(&dir, "interleave", 1, serde_json::json!({"flavor": null}));
    let flavor = serde_json::json!({"flavor": {"vcpus": 1, "memory_mb": 64, "extra_specs": {"hw:cpu_policy": "dedicated", "hw:numa_nodes": "1", "hw:numa_mempolicy": "interleave"}}});
    std::fs::write(&r, flavor.to_string()).unwrap();
    let o = run_cmd(&state, "vm-i", &r, &[], &["numactl", "--show"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("policy: interleave"), "{}", stdout(&o));
    let o = run_cmd(&state, "vm-p", &r, &["--mem-policy", "preferred"], &["numactl", "--show"]).output().unwrap();
    assert!(stdout(&o).contains("policy: preferred"), "{}", stdout(&o));
    let o = run_cmd(&state, "vm-x", &r, &["--mem-policy", "loose"], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("\"loose\" is not a memory policy"), "{}", stderr(&o));
}

#[test]
fn two_runs_take_the_machine_a_third_is_refused_and_each_child_holds_its_own_cpus() {
    let dir = scratch("apply-run-three");
    let state = dir.join("state");
    let r = request(&dir, "r", half(), serde_json::json!({}));
    let mut a = run_cmd(&state, "a", &r, &[], &["sleep", "60"]).spawn().unwrap();
    let ca = wait_claimed(&state, "a");
    let mut b = run_cmd(&state, "b", &r, &[], &["sleep", "60"]).spawn().unwrap();
    let cb = wait_claimed(&state, "b");
    let (pa, pb) = (pinned_of(&ca), pinned_of(&cb));
    assert!(pa.iter().all(|c| !pb.contains(c)), "{pa:?} and {pb:?} overlap");
    for (c, pins) in [(&ca, &pa), (&cb, &pb)] {
        let child = c["owner"]["pid"].as_u64().unwrap();
        assert_eq!(status_field(child, "Cpus_allowed_list:"), list_text(pins));
    }
    let o = run_cmd(&state, "c", &r, &[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not fit") && stderr(&o).contains("free-cpus"), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "a refused run prints on stderr: {}", stdout(&o));
    // Ending a child ends its run, and only its claim.
    unsafe { libc::kill(ca["owner"]["pid"].as_u64().unwrap() as i32, libc::SIGTERM) };
    let st = a.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    let left: Vec<Value> = claims(&state).iter().map(|c| c["instance"].clone()).collect();
    assert_eq!(left, [Value::from("b")]);
    unsafe { libc::kill(b.id() as i32, libc::SIGTERM) };
    let st = b.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGTERM), "SIGTERM to numafit reaches the child, whose end numafit repeats");
    assert!(claims(&state).is_empty());
}

#[test]
fn exit_codes_and_signals_pass_through_run() {
    let dir = scratch("apply-exit");
    let state = dir.join("state");
    let r = request(&dir, "r", 1, serde_json::json!({}));
    let st = run_cmd(&state, "e", &r, &[], &["sh", "-c", "exit 7"]).status().unwrap();
    assert_eq!(st.code(), Some(7));
    let st = run_cmd(&state, "k", &r, &[], &["sh", "-c", "kill -USR1 $$"]).status().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGUSR1));
    let o = run_cmd(&state, "n", &r, &[], &["/nonexistent/program"]).output().unwrap();
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("ENOENT") && stderr(&o).contains("/nonexistent/program"), "{}", stderr(&o));
    // A signal sent to numafit is the child's to handle: a shell that traps it exits as it says.
    let mut c = run_cmd(&state, "t", &r, &[], &["sh", "-c", "trap 'exit 3' TERM; echo trapped; sleep 60 & wait"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The shell says when its trap is set (however loaded the machine).
    let mut said = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(c.stdout.take().unwrap()), &mut said).unwrap();
    assert_eq!(said, "trapped\n");
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    assert_eq!(c.wait().unwrap().code(), Some(3));
    assert!(claims(&state).is_empty(), "every run released its claim");
}

#[test]
fn gc_releases_the_claim_of_a_run_killed_with_sigkill_once_its_child_is_gone() {
    let dir = scratch("apply-gc");
    let state = dir.join("state");
    let r = request(&dir, "r", 1, serde_json::json!({}));
    let mut run = run_cmd(&state, "orphan", &r, &[], &["sleep", "60"]).spawn().unwrap();
    let claim = wait_claimed(&state, "orphan");
    let child = claim["owner"]["pid"].as_u64().unwrap();
    unsafe { libc::kill(run.id() as i32, libc::SIGKILL) };
    run.wait().unwrap();
    // The child still runs in its placement: gc keeps its claim.
    let o = numafit(&["gc", "--state-dir", s(&state), "--json"]);
    assert_eq!(json_of(&o)["released"], serde_json::json!([]));
    assert_eq!(claims(&state).len(), 1);
    unsafe { libc::kill(child as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = numafit(&["gc", "--state-dir", s(&state), "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        if json_of(&o)["released"].as_array().is_some_and(|r| r.len() == 1) {
            assert_eq!(json_of(&o)["released"][0]["instance"], "orphan");
            break;
        }
        assert!(Instant::now() < deadline, "gc never released the orphaned claim");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(claims(&state).is_empty());
    // Claims no process owns are never gc's.
    let o = numafit(&["claim", "--instance", "kept", "--request", s(&r), "--state-dir", s(&state)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = numafit(&["gc", "--state-dir", s(&state), "--json"]);
    assert_eq!(json_of(&o)["kept"], 1);
}

/// A scratch tree laid out like cgroupfs: the root offers `controllers`.
fn cgroup_tree(dir: &Path, controllers: &str) -> PathBuf {
    let root = dir.join("cgroup");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("cgroup.controllers"), format!("{controllers}\n")).unwrap();
    std::fs::write(root.join("cgroup.subtree_control"), "\n").unwrap();
    root
}

fn apply(state: &Path, root: &Path, group: &str, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "--instance", "vm", "--cgroup", group, "--cgroup-root", s(root), "--state-dir", s(state), "--json"];
    args.extend_from_slice(extra);
    numafit(&args)
}

#[test]
fn apply_writes_the_cpuset_into_a_cgroupfs_shaped_tree_and_undoes_a_failed_write() {
    let dir = scratch("apply-cgroup");
    let state = dir.join("state");
    let r = request(&dir, "r", 1, serde_json::json!({}));
    let o = numafit(&["claim", "--instance", "vm", "--request", s(&r), "--state-dir", s(&state), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cpus = list_text(&pinned_of(&json_of(&o)));
    let root = cgroup_tree(&dir, "cpuset cpu io memory pids");

    let o = apply(&state, &root, "machine.slice/vm-1", &[]);
    assert_eq!(o.status.code(), Some(4), "without --create a missing parent is refused");
    assert!(stderr(&o).contains("give --create"), "{}", stderr(&o));
    assert!(!root.join("machine.slice").exists());

    let o = apply(&state, &root, "machine.slice/vm-1", &["--create"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let group = root.join("machine.slice/vm-1");
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap().trim().to_string();
    assert_eq!(read(group.join("cpuset.cpus")), cpus);
    assert_eq!(read(group.join("cpuset.mems")), "0");
    assert_eq!(read(root.join("cgroup.subtree_control")), "+cpuset");
    assert_eq!(read(root.join("machine.slice/cgroup.subtree_control")), "+cpuset");
    assert_eq!(json_of(&o)["created"].as_array().unwrap().len(), 2);

    // A write the filesystem refuses (cpuset.mems is a directory here): the error names the file
    // and the errno, and cpuset.cpus gets its old value back.
    std::fs::write(group.join("cpuset.cpus"), "7\n").unwrap();
    std::fs::remove_file(group.join("cpuset.mems")).unwrap();
    std::fs::create_dir(group.join("cpuset.mems")).unwrap();
    let o = apply(&state, &root, "machine.slice/vm-1", &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}", group.join("cpuset.mems").display())) && err.contains("EISDIR"), "{err}");
    assert_eq!(read(group.join("cpuset.cpus")), "7", "the failed apply left cpuset.cpus half-written");

    // Paths out of the hierarchy, and a hierarchy without the cpuset controller.
    let o = apply(&state, &root, "../escape", &["--create"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("cgroup \"../escape\""), "{}", stderr(&o));
    let bare = cgroup_tree(&dir.join("bare"), "cpu memory");
    let o = apply(&state, &bare, "vm", &["--create"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("cpuset controller is not available"), "{}", stderr(&o));
}

/// The cgroup v2 mount, when it offers the cpuset controller and takes writes.
fn writable_cgroup2() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| format!("cannot read /proc/mounts: {e}"))?;
    let Some(mount) = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    }) else {
        return Err("no cgroup v2 hierarchy is mounted".into());
    };
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "cpuset") {
        return Err(format!(
            "the cgroup v2 hierarchy at {} has no cpuset controller (controllers: {:?}; cpuset is bound to a v1 hierarchy)",
            mount.display(),
            controllers.trim()
        ));
    }
    let probe = mount.join(format!("numafit-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("{} is not writable: {e}", mount.display()))?;
    let _ = std::fs::remove_dir(&probe);
    Ok(mount)
}

#[test]
fn apply_on_the_real_cgroup_v2_hierarchy_when_there_is_one() {
    let mount = match writable_cgroup2() {
        Ok(m) => m,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let dir = scratch("apply-cgroup-real");
    let state = dir.join("state");
    let r = request(&dir, "r", 1, serde_json::json!({}));
    let o = numafit(&["claim", "--instance", "vm", "--request", s(&r), "--state-dir", s(&state), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cpus = list_text(&pinned_of(&json_of(&o)));
    let group = format!("numafit-test-{}", std::process::id());
    let o = apply(&state, &mount, &group, &["--create"]);
    let effective = std::fs::read_to_string(mount.join(&group).join("cpuset.cpus.effective")).unwrap_or_default();
    let _ = std::fs::remove_dir(mount.join(&group));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(effective.trim(), cpus);
}

fn render(args: &[&str]) -> Output {
    let mut all = vec!["render"];
    all.extend_from_slice(args);
    numafit(&all)
}

/// Every (name, host, request) the render tests place: the bench cases and the render fixtures.
fn render_cases() -> Vec<(String, PathBuf, PathBuf)> {
    let mut cases: Vec<(String, PathBuf, PathBuf)> = bench_cases()
        .into_iter()
        .map(|c| (c.file_name().unwrap().to_string_lossy().into_owned(), c.join("host.json"), c.join("request.json")))
        .collect();
    let dir = fixture("render");
    let mut extra: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| s(p).ends_with(".request.json")).collect();
    extra.sort();
    for r in extra {
        let name = r.file_name().unwrap().to_string_lossy().trim_end_matches(".request.json").to_string();
        cases.push((name, dir.join("split-host.json"), r));
    }
    cases
}

const FORMATS: [&str; 6] = ["libvirt", "libvirt-domain", "oci", "docker", "numactl", "taskset"];

#[test]
fn renders_match_their_golden_files_and_the_domain_schema() {
    let dir = scratch("apply-render");
    let golden = fixture("render/golden");
    let update = std::env::var_os("NUMAFIT_UPDATE_GOLDEN").is_some();
    if update {
        std::fs::create_dir_all(&golden).unwrap();
    }
    let mut rendered = 0;
    let mut validated = Vec::new();
    for (name, host, req) in render_cases() {
        let fit = numafit(&["fit", "--host", s(&host), "--request", s(&req), "--json"]);
        if fit.status.code() != Some(0) {
            continue;
        }
        let placement = dir.join(format!("{name}.json"));
        std::fs::write(&placement, &fit.stdout).unwrap();
        for format in FORMATS {
            let o = render(&["--placement", s(&placement), "--host", s(&host), "--format", format]);
            assert_eq!(o.status.code(), Some(0), "{name} {format}: {}", stderr(&o));
            let file = golden.join(format!("{name}.{format}"));
            if update {
                std::fs::write(&file, &o.stdout).unwrap();
            }
            let want =
                std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e} (NUMAFIT_UPDATE_GOLDEN=1 writes it)", file.display()));
            assert_eq!(stdout(&o), want, "{name} {format} differs from {}", file.display());
            rendered += 1;
            if format == "libvirt-domain" {
                let xml = dir.join(format!("{name}.xml"));
                std::fs::write(&xml, &o.stdout).unwrap();
                let v = Command::new("virt-xml-validate")
                    .arg(&xml)
                    .arg("domain")
                    .output()
                    .expect("virt-xml-validate (libvirt-clients; scripts/setup.sh installs it)");
                assert!(
                    v.status.success(),
                    "{name}: libvirt's schema refuses the domain:\n{}\n{}",
                    String::from_utf8_lossy(&v.stderr),
                    stdout(&o)
                );
                validated.push(name.clone());
            }
            if format == "oci" {
                // The runtime spec's names: linux.resources.cpu.cpus / .mems, kernel list strings.
                let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
                let cpu = doc["linux"]["resources"]["cpu"].as_object().unwrap();
                let keys: Vec<&String> = cpu.keys().collect();
                assert_eq!(keys, ["cpus", "mems"]);
                assert_eq!(doc.as_object().unwrap().len(), 1);
                for v in cpu.values() {
                    numafit_host::discover::parse_list(v.as_str().unwrap()).unwrap();
                }
            }
        }
    }
    assert!(rendered >= 6 * 12, "only {rendered} renders");
    for must in ["single-dedicated", "01-2cell-host-2cell-dedicated", "isolate-2cell-hugepages", "06-8cell-4cell-prefer-emulator-2M"] {
        assert!(validated.iter().any(|v| v == must), "{must} was not validated: {validated:?}");
    }
}

#[test]
fn render_reads_the_ledger_and_refuses_what_it_cannot_say() {
    let dir = scratch("apply-render-ledger");
    let state = dir.join("state");
    let r = request(&dir, "r", 1, serde_json::json!({}));
    let o = numafit(&["claim", "--instance", "vm", "--request", s(&r), "--state-dir", s(&state), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cpus = list_text(&pinned_of(&json_of(&o)));
    let o = render(&["--instance", "vm", "--state-dir", s(&state), "--format", "taskset"]);
    assert_eq!(stdout(&o), format!("taskset -c {cpus}\n"));
    let o = render(&["--instance", "vm", "--state-dir", s(&state), "--format", "docker"]);
    assert_eq!(stdout(&o), format!("--cpuset-cpus={cpus} --cpuset-mems=0\n"));
    let o = render(&["--instance", "nope", "--state-dir", s(&state), "--format", "docker"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--instance \"nope\""), "{}", stderr(&o));
    let o = render(&["--instance", "vm", "--state-dir", s(&state), "--format", "yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("one of libvirt, libvirt-domain, oci, docker, numactl, taskset"), "{}", stderr(&o));
    // A placement pinned to a CPU the host cannot pin is refused, naming the field.
    let case = fixture("bench/01-2cell-host-2cell-dedicated");
    let fit = numafit(&["fit", "--host", s(&case.join("host.json")), "--request", s(&case.join("request.json")), "--json"]);
    let mut p: Value = serde_json::from_slice(&fit.stdout).unwrap();
    p["cells"][0]["cpu_pinning"]["0"] = 4.into();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, p.to_string()).unwrap();
    let o = render(&["--placement", s(&bad), "--host", s(&case.join("host.json")), "--format", "libvirt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cells[0].cpu_pinning") && stderr(&o).contains("CPU 4"), "{}", stderr(&o));
}

#[test]
fn adopt_records_a_placement_made_outside_and_refuses_overlaps() {
    let dir = scratch("apply-adopt");
    let state = dir.join("state");
    let cpus = pinnable();
    let last = cpus[cpus.len() - 1].to_string();
    let adopt = |id: &str, cpus: &str, memory: &str, extra: &[&str]| {
        let mut a = vec!["adopt", "--instance", id, "--cpus", cpus, "--mems", "0", "--memory", memory, "--state-dir", s(&state), "--json"];
        a.extend_from_slice(extra);
        numafit(&a)
    };
    let o = adopt("container-1", &last, "512M", &["--dedicated"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c = json_of(&o);
    assert_eq!(c["placement"]["policy"], "adopted");
    assert_eq!(pinned_of(&c), [cpus[cpus.len() - 1]]);
    assert_eq!(c["placement"]["cells"][0]["memory"], 512);
    // The ledger's accounting now has it: the same CPU again is refused, naming who holds it.
    let o = adopt("container-2", &last, "1G", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("container-1"), "{}", stdout(&o));
    // A fit on the live state does not get that CPU.
    let r = request(&dir, "r", 1, serde_json::json!({}));
    let o = numafit(&["claim", "--instance", "vm", "--request", s(&r), "--state-dir", s(&state), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!pinned_of(&json_of(&o)).contains(&cpus[cpus.len() - 1]));
    // Shared CPUs float: adopting them counts vCPUs, pins nothing.
    let o = adopt("container-3", &last, "256m", &["--shared"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_of(&o)["placement"]["cells"][0]["cpuset"], serde_json::json!([0]));
    // Bad input names the flag and the value.
    for (cpus, memory, flag) in [("4096", "512M", "--cpus"), ("0", "lots", "--memory"), ("x", "512M", "--cpus")] {
        let o = adopt("bad", cpus, memory, &[]);
        assert_eq!(o.status.code(), Some(2), "{cpus} {memory}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
    }
    assert_eq!(claims(&state).len(), 3, "nothing recorded for refused adoptions");
}
