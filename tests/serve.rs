//! `numafit serve` end to end: the real binary, real sockets, a real HTTP client (hyper, and curl
//! where it is installed). The API over the Unix socket and TCP (401 without the token, 413 for an
//! oversized body, 400 naming the field); misbehaving policies in service and at swap time; hot
//! swaps under load with every answer labelled; and the daemon SIGKILLed among CLI claimers.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::http::{Addr, Client, Daemon};
use support::*;

fn machine() -> PathBuf {
    fixture("numactl/2node-8cpu.txt")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn request(cpus: u32, memory: u64) -> Value {
    let ids: Vec<u32> = (0..cpus).collect();
    json!({"cells": [{"pcpuset": ids, "memory": memory}], "cpu_policy": "dedicated"})
}

fn claim_body(id: &str, cpus: u32) -> String {
    json!({"instance": id, "request": request(cpus, 1024)}).to_string()
}

fn start(dir: &Path, extra: &[&str]) -> Daemon {
    let state = dir.join("state");
    let machine = machine();
    let mut args = vec!["--numactl-output", s(&machine), "--state-dir", s(&state)];
    args.extend_from_slice(extra);
    Daemon::start(&dir.join("serve.sock"), &args)
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn the_api_answers_over_the_unix_socket_and_tcp_with_the_token() {
    let dir = scratch("serve-api");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "0123456789abcdef-secret\n").unwrap();
    let tcp = free_port();
    let tcp_text = tcp.to_string();
    let d = start(&dir, &["--listen", &tcp_text, "--token-file", s(&token_file), "--max-body-kib", "4"]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777, 0o600);
    let mut c = d.client();

    assert_eq!(c.get("/healthz").status, 200);
    let topo = c.get("/v1/topology").json();
    assert_eq!(topo["cells"].as_array().map(Vec::len), Some(2));
    let policy = c.get("/v1/policy").json();
    assert_eq!((policy["name"].as_str(), policy["contract"].as_str()), (Some("nova"), Some("0.5.0")));
    let sha = policy["sha256"].as_str().unwrap().to_string();

    // A dry run: 200, the fit document and the version that made it; nothing recorded.
    let r = c.post("/v1/fit", &request(2, 1024).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((r.json()["fits"].as_bool(), r.policy_sha().as_deref()), (Some(true), Some(sha.as_str())));
    assert_eq!(r.json()["policy"]["sha256"].as_str(), Some(sha.as_str()));
    let r = c.post("/v1/fit", &request(5, 1024).to_string());
    assert_eq!((r.status, r.json()["fits"].as_bool()), (200, Some(false)), "{}", r.text());
    assert!(r.json()["rejection"]["reasons"].as_array().is_some_and(|v| !v.is_empty()));

    // Claims: 201, then the same again 200, another request for the instance 409.
    let r = c.post("/v1/claims", &claim_body("vm-a", 2));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["claim"]["policy"]["sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(c.post("/v1/claims", &claim_body("vm-a", 2)).status, 200);
    let r = c.post("/v1/claims", &claim_body("vm-a", 3));
    assert_eq!((r.status, r.json()["error"].as_str()), (409, Some("InstanceExists")));
    let r = c.post("/v1/claims", &claim_body("vm-big", 5));
    assert_eq!((r.status, r.json()["error"].as_str()), (409, Some("ComputeResourcesUnavailable")), "{}", r.text());
    assert_eq!(c.get("/v1/claims").json().as_array().map(Vec::len), Some(1));
    assert_eq!(c.get("/v1/claims/vm-a").json()["instance"].as_str(), Some("vm-a"));
    assert_eq!(c.get("/v1/claims/nope").status, 404);
    let status = c.get("/v1/status").json();
    assert_eq!(status["claims"].as_u64(), Some(1));

    // Bad input: 400 naming the field; an oversized body: 413; nothing recorded by either.
    let r = c.post("/v1/claims", r#"{"instance": "vm-b", "request": {"cells": [{"memory": "lots"}]}}"#);
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("request.cells[0].memory"), "{}", r.text());
    let r = c.post("/v1/claims", r#"{"instance": "vm-b", "reqest": {}}"#);
    assert!(r.status == 400 && r.text().contains("reqest"), "{}", r.text());
    let r = c.post("/v1/claims", "{not json");
    assert_eq!(r.status, 400, "{}", r.text());
    let big = json!({"instance": "vm-big", "request": request(1, 1024), "pad": "x".repeat(8 << 10)}).to_string();
    // The service answers 413 from the length alone, without reading the body, and closes the
    // connection: written whole first (it fits the socket's buffer), then the answer read.
    {
        use std::io::{Read, Write};
        let mut raw = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!("POST /v1/claims HTTP/1.1\r\nhost: numafit\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n", big.len());
        raw.write_all(head.as_bytes()).unwrap();
        let _ = raw.write_all(big.as_bytes());
        let mut answer = String::new();
        let _ = raw.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    assert_eq!(c.get("/v1/claims").json().as_array().map(Vec::len), Some(1));

    // TCP: reads need no token; changes without it (or with another) are 401 and change nothing.
    let mut t = Client::connect(&Addr::Tcp(tcp)).unwrap();
    assert_eq!(t.get("/v1/claims").status, 200);
    assert_eq!(t.post("/v1/claims", &claim_body("vm-t", 1)).status, 401);
    let wrong = [("authorization", "Bearer 0123456789abcdef-secreT")];
    assert_eq!(t.send("POST", "/v1/claims", &wrong, claim_body("vm-t", 1)).unwrap().status, 401);
    assert_eq!(t.send("DELETE", "/v1/claims/vm-a", &[], Vec::new()).unwrap().status, 401);
    assert_eq!(t.send("PUT", "/v1/policy", &[], EMBEDDED.to_vec()).unwrap().status, 401);
    // Refused before its body was read, the connection is closed: a new one.
    let mut t = Client::connect(&Addr::Tcp(tcp)).unwrap();
    assert_eq!(t.post("/v1/policy/rollback", "").status, 401);
    assert_eq!(c.get("/v1/claims").json().as_array().map(Vec::len), Some(1), "nothing changed without the token");
    let auth = [("authorization", "Bearer 0123456789abcdef-secret")];
    let r = t.send("POST", "/v1/claims", &auth, claim_body("vm-t", 1)).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(t.send("DELETE", "/v1/claims/vm-t", &auth, Vec::new()).unwrap().status, 200);

    // Releases: 200, then 404.
    let r = c.send("DELETE", "/v1/claims/vm-a", &[], Vec::new()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.send("DELETE", "/v1/claims/vm-a", &[], Vec::new()).unwrap().status, 404);

    // A stock HTTP client over the socket, where the machine has one.
    if let Ok(o) = std::process::Command::new("curl").args(["-s", "--unix-socket", s(&d.socket), "http://numafit/metrics"]).output() {
        if o.status.success() {
            let m = String::from_utf8_lossy(&o.stdout);
            for line in ["numafit_claims_total{outcome=\"created\"} 2", "numafit_fits_total{outcome=\"fit\"} 1", "numafit_policy_info{"] {
                assert!(m.contains(line), "{line} missing from\n{m}");
            }
            assert!(m.contains("numafit_claim_duration_seconds_bucket"), "{m}");
        }
    }

    // SIGTERM: exit 0, the socket removed.
    let mut d = d;
    d.signal(libc::SIGTERM);
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
    assert!(!d.socket.exists());
}

/// The embedded policy's bytes, as `export-plugin` writes them.
static EMBEDDED: &[u8] = numafit_host::runtime::EMBEDDED_NOVA;

/// A request that makes the on-request misbehaving policy go wrong (guest cell 0 asks 7001..).
fn trigger(fault: &str) -> Value {
    let mb = 7001 + FAULTS.iter().position(|f| *f == fault).unwrap() as u64;
    request(2, mb)
}

#[test]
fn a_policy_misbehaving_in_service_is_stopped_named_and_records_nothing() {
    let dir = scratch("serve-sandbox");
    let plugin = dir.join("on-request.wasm");
    std::fs::write(&plugin, misbehaving("on-request")).unwrap();
    let d = start(&dir, &["--plugin", s(&plugin), "--memory-limit-mb", "64", "--deadline-ms", "400", "--fuel", "500000000000"]);
    let mut c = d.client();
    let expect: &[(&str, u16, &str)] = &[
        ("endless-loop", 502, "deadline"),
        ("memory-bomb", 502, "memory"),
        ("panic", 502, "trap"),
        ("foreign-cell", 502, "rule"),
        ("double-pin", 502, "rule"),
        ("overcommit", 502, "rule"),
        ("slow", 200, ""),
    ];
    // The host has claims for the double pin to collide with.
    assert_eq!(c.post("/v1/claims", &claim_body("keep", 2)).status, 201);
    for (fault, status, limit) in expect {
        // Overcommit shows only where no cell has the memory free: fill both first.
        let fill = |cpu: u32| {
            json!({"instance": format!("fill-{cpu}"), "request": {"cells": [{"pcpuset": [0], "memory": 10000}], "cpu_policy": "dedicated"}})
                .to_string()
        };
        if *fault == "overcommit" {
            for cpu in 0..2 {
                let body = fill(cpu);
                assert_eq!(c.post("/v1/claims", &body).status, 201);
            }
        }
        if *fault == "slow" {
            for cpu in 0..2 {
                assert_eq!(c.send("DELETE", &format!("/v1/claims/fill-{cpu}"), &[], Vec::new()).unwrap().status, 200);
            }
        }
        for path in ["/v1/fit", "/v1/claims"] {
            let body = if path == "/v1/fit" {
                trigger(fault).to_string()
            } else {
                json!({"instance": format!("bad-{fault}"), "request": trigger(fault)}).to_string()
            };
            let started = Instant::now();
            let r = c.post(path, &body);
            let ms = started.elapsed().as_millis();
            let j = r.json();
            eprintln!("{fault} {path}: {} in {ms} ms: {}", r.status, j["message"].as_str().unwrap_or(""));
            if *status == 200 {
                assert!(r.status == 200 || r.status == 201, "{fault} {path}: {}", r.text());
                continue;
            }
            assert_eq!(r.status, *status, "{fault} {path}: {}", r.text());
            assert_eq!(j["limit"].as_str(), Some(*limit), "{fault} {path}: {}", r.text());
            assert!(
                j["message"].as_str().unwrap().contains("misbehaving-on-request")
                    || j["message"].as_str().unwrap().contains("on-request.wasm"),
                "names the plugin: {}",
                r.text()
            );
            // Still up, still serving the same policy, nothing recorded for the bad answer.
            let ok = c.post("/v1/fit", &request(1, 1024).to_string());
            assert_eq!((ok.status, ok.json()["fits"].as_bool()), (200, Some(true)), "{}", ok.text());
            assert!(c.get(&format!("/v1/claims/bad-{fault}")).status == 404, "{fault}: a claim was recorded");
        }
    }
    let twice: Vec<_> = pins(&dir.join("state")).into_iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(twice.is_empty(), "{twice:?}");
    let m = c.get("/metrics").text();
    for kind in ["deadline", "memory", "trap", "rule"] {
        assert!(m.contains(&format!("numafit_plugin_failures_total{{kind=\"{kind}\"}}")), "{kind}: {m}");
    }
}

#[test]
fn swaps_to_broken_policies_are_refused_by_the_self_test_and_the_current_one_keeps_serving() {
    let dir = scratch("serve-swap-refused");
    let d = start(&dir, &["--fuel", "1000000000", "--memory-limit-mb", "64"]);
    let mut c = d.client();
    let before = c.get("/v1/policy").json()["sha256"].as_str().unwrap().to_string();
    let expect = [
        ("endless-loop", "fuel"),
        ("memory-bomb", "memory"),
        ("panic", "trap"),
        ("foreign-cell", "rule"),
        ("double-pin", "rule"),
        ("overcommit", "rule"),
    ];
    for (fault, kind) in expect {
        let started = Instant::now();
        let r = c.send("PUT", "/v1/policy", &[], misbehaving(fault).to_vec()).unwrap();
        let j = r.json();
        eprintln!("swap to {fault}: {} in {} ms: {}", r.status, started.elapsed().as_millis(), j["message"].as_str().unwrap_or(""));
        assert_eq!(r.status, 422, "{fault}: {}", r.text());
        assert_eq!(
            (j["refused"]["stage"].as_str(), j["refused"]["kind"].as_str()),
            (Some("self-test"), Some(kind)),
            "{fault}: {}",
            r.text()
        );
        assert_eq!(j["serving"]["sha256"].as_str(), Some(before.as_str()));
        assert_eq!(c.get("/v1/policy").json()["sha256"].as_str(), Some(before.as_str()));
        assert_eq!(c.post("/v1/fit", &request(1, 1024).to_string()).status, 200);
    }
    // Not a component at all, and a core module: refused at compile.
    let r = c.send("PUT", "/v1/policy", &[], b"hello".to_vec()).unwrap();
    assert_eq!((r.status, r.json()["refused"]["stage"].as_str()), (422, Some("compile")), "{}", r.text());

    // The slow one passes under the default deadline and says how slow it was ...
    let r = c.send("PUT", "/v1/policy", &[], misbehaving("slow").to_vec()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let slowest = r.json()["selftest"]["slowest_call_ms"].as_f64().unwrap();
    eprintln!("slow accepted: slowest self-test call {slowest:.1} ms");
    assert_eq!(c.get("/v1/policy").json()["name"].as_str(), Some("misbehaving-slow"));
    // ... and rollback returns to the version before it.
    let r = c.post("/v1/policy/rollback", "");
    assert_eq!((r.status, r.json()["sha256"].as_str()), (200, Some(before.as_str())), "{}", r.text());
    assert_eq!(c.post("/v1/policy/rollback", "").status, 409, "nothing left to roll back to");
    drop(c);
    drop(d);

    // Under a deadline shorter than its calls (30 ms: twice a correct policy's slowest call on a
    // loaded machine, a third of the slow one's fastest), the slow one is refused for the deadline.
    let dir = scratch("serve-swap-slow");
    let d = start(&dir, &["--deadline-ms", "30"]);
    let mut c = d.client();
    let r = c.send("PUT", "/v1/policy", &[], misbehaving("slow").to_vec()).unwrap();
    eprintln!("slow under 30 ms: {}", r.text());
    assert_eq!((r.status, r.json()["refused"]["kind"].as_str()), (422, Some("deadline")), "{}", r.text());
}

#[test]
fn hot_swaps_under_load_fail_no_request_and_label_every_answer() {
    let dir = scratch("serve-hot-swap");
    let file = dir.join("policy.wasm");
    std::fs::write(&file, EMBEDDED).unwrap();
    // Limits small enough that a refused endless loop or memory bomb costs a fraction of a second.
    let d = start(&dir, &["--plugin", s(&file), "--watch", "--fuel", "1000000000", "--memory-limit-mb", "64"]);
    let good: Vec<(&str, Vec<u8>)> = vec![
        ("nova", EMBEDDED.to_vec()),
        ("balanced", numafit_host::runtime::EMBEDDED_BALANCED.to_vec()),
        ("on-request", misbehaving("on-request").to_vec()),
        ("nova-0.2", nova_built_against_contract_0_2().to_vec()),
    ];
    let shas: BTreeSet<String> = good.iter().map(|(_, b)| numafit_host::runtime::cache::sha256(b)).collect();
    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let labels = Mutex::new(BTreeSet::<String>::new());
    let mut swap_ms = Vec::new();
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let (d, stop, answered, failures, labels, shas) = (&d, &stop, &answered, &failures, &labels, &shas);
            scope.spawn(move || {
                let mut c = d.client();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let id = format!("w{worker}-{i}");
                    let replies = [
                        (c.post("/v1/fit", &request(1, 1024).to_string()), &[200u16][..]),
                        (c.post("/v1/claims", &claim_body(&id, 1)), &[201, 409][..]),
                        (c.send("DELETE", &format!("/v1/claims/{id}"), &[], Vec::new()).unwrap(), &[200, 404][..]),
                    ];
                    for (r, ok) in replies {
                        answered.fetch_add(1, Ordering::Relaxed);
                        let sha = r.policy_sha();
                        if (!ok.contains(&r.status) || !sha.as_ref().is_some_and(|s| shas.contains(s))) && r.status != 404 {
                            failures.lock().unwrap().push(format!("{} {:?}: {}", r.status, sha, r.text()));
                        }
                        if let Some(sha) = sha {
                            labels.lock().unwrap().insert(sha);
                        }
                    }
                }
            });
        }
        let mut c = d.client();
        let mut swaps = 0;
        for round in 0..3 {
            for (name, bytes) in &good {
                // By PUT, by replacing the watched file, and by SIGHUP after rewriting it.
                let sha = numafit_host::runtime::cache::sha256(bytes);
                match round {
                    0 => assert_eq!(c.send("PUT", "/v1/policy", &[], bytes.clone()).unwrap().status, 200, "{name}"),
                    _ => {
                        let tmp = dir.join("policy.wasm.new");
                        std::fs::write(&tmp, bytes).unwrap();
                        let started = Instant::now();
                        std::fs::rename(&tmp, &file).unwrap();
                        if round == 2 {
                            d.signal(libc::SIGHUP);
                        }
                        loop {
                            let r = c.post("/v1/fit", &request(1, 1024).to_string());
                            if r.policy_sha().as_deref() == Some(sha.as_str()) {
                                break;
                            }
                            assert!(started.elapsed() < Duration::from_secs(30), "{name}: the new version never answered");
                        }
                        swap_ms.push(started.elapsed().as_secs_f64() * 1e3);
                    }
                }
                // A broken one in between (each kind in turn): refused, the good one keeps serving.
                let broken = FAULTS[swaps % (FAULTS.len() - 1)];
                swaps += 1;
                let r = c.send("PUT", "/v1/policy", &[], misbehaving(broken).to_vec()).unwrap();
                assert_eq!(r.status, 422, "{broken}: {}", r.text());
                assert_eq!(r.json()["serving"]["sha256"].as_str(), Some(sha.as_str()), "{name}");
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        answered.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    assert!(answered.load(Ordering::Relaxed) > 100);
    assert!(labels.into_inner().unwrap().len() >= 3, "answers came from several versions");
    swap_ms.sort_by(f64::total_cmp);
    eprintln!(
        "file replaced -> first answer from the new version: median {:.1} ms, max {:.1} ms",
        swap_ms[swap_ms.len() / 2],
        swap_ms[swap_ms.len() - 1]
    );
}

#[test]
fn the_daemon_and_cli_claimers_sigkilled_at_random_lose_nothing_acknowledged() {
    let dir = scratch("serve-storm");
    let state = dir.join("state");
    let socket = dir.join("serve.sock");
    let machine = machine();
    let req_file = dir.join("request.json");
    std::fs::write(&req_file, request(1, 1024).to_string()).unwrap();
    let text = std::fs::read_to_string(&machine).unwrap();
    let base = numafit_host::discover::parse_numactl(&text, &machine).unwrap().host(&Default::default()).unwrap();
    let claimed = Mutex::new(BTreeSet::<String>::new());
    let release_tried = Mutex::new(BTreeSet::<String>::new());
    let released = Mutex::new(BTreeSet::<String>::new());
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut daemon_kills = 0;
    for round in 0..8u64 {
        let d = Daemon::start(&socket, &["--numactl-output", s(&machine), "--state-dir", s(&state)]);
        let kill_after = Duration::from_millis(100 + next() % 400);
        let cli_kill = next();
        std::thread::scope(|scope| {
            let (claimed, release_tried, released) = (&claimed, &release_tried, &released);
            let addr = d.addr();
            scope.spawn(move || {
                let Ok(mut c) = Client::connect(&addr) else { return };
                for i in 0.. {
                    let id = format!("h{round}-{i}");
                    match c.send("POST", "/v1/claims", &[], claim_body(&id, 1)) {
                        Ok(r) if r.status == 201 => {
                            claimed.lock().unwrap().insert(id.clone());
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                    if i % 2 == 0 {
                        release_tried.lock().unwrap().insert(id.clone());
                        match c.send("DELETE", &format!("/v1/claims/{id}"), &[], Vec::new()) {
                            Ok(r) if r.status == 200 => {
                                released.lock().unwrap().insert(id.clone());
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                }
            });
            let (state, machine, req_file) = (&state, &machine, &req_file);
            scope.spawn(move || {
                for i in 0..4u64 {
                    let id = format!("c{round}-{i}");
                    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_numafit"))
                        .args([
                            "claim",
                            "--instance",
                            &id,
                            "--request",
                            s(req_file),
                            "--numactl-output",
                            s(machine),
                            "--state-dir",
                            s(state),
                        ])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .unwrap();
                    if (cli_kill >> i) & 1 == 1 {
                        std::thread::sleep(Duration::from_millis((cli_kill >> (8 + i * 4)) % 40));
                        let _ = child.kill();
                    }
                    if child.wait().unwrap().code() == Some(0) {
                        claimed.lock().unwrap().insert(id);
                    }
                }
            });
            std::thread::sleep(kill_after);
            // SIGKILL the daemon mid-stream.
            d.signal(libc::SIGKILL);
        });
        drop(d);
        daemon_kills += 1;
        let present = assert_storm_survived(
            round,
            &state,
            &base,
            &claimed.lock().unwrap(),
            &release_tried.lock().unwrap(),
            &released.lock().unwrap(),
        );
        // Room for the next round: release what is left (through the daemon, restarted).
        let d = Daemon::start(&socket, &["--numactl-output", s(&machine), "--state-dir", s(&state)]);
        let mut c = d.client();
        for id in &present {
            assert_eq!(c.send("DELETE", &format!("/v1/claims/{id}"), &[], Vec::new()).unwrap().status, 200);
            release_tried.lock().unwrap().insert(id.clone());
            released.lock().unwrap().insert(id.clone());
        }
    }
    let n = claimed.lock().unwrap().len();
    assert!(daemon_kills == 8 && n > 20, "acknowledged too few claims to tell: {n}");
}

/// A scratch tree laid out like cgroupfs, offering the cpuset controller.
fn cgroup_tree(dir: &Path) -> PathBuf {
    let root = dir.join("cgroup");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("cgroup.controllers"), "cpuset cpu memory\n").unwrap();
    std::fs::write(root.join("cgroup.subtree_control"), "\n").unwrap();
    root
}

#[test]
fn a_claim_applies_its_cgroup_in_one_request_and_a_failed_write_releases_it() {
    let dir = scratch("serve-apply");
    let root = cgroup_tree(&dir);
    let d = start(&dir, &["--cgroup-root", s(&root)]);
    let mut c = d.client();
    let body = |id: &str, group: &str| {
        json!({"instance": id, "request": request(2, 1024), "apply": {"cgroup": group, "create": true}}).to_string()
    };
    let r = c.post("/v1/claims", &body("vm-1", "machine.slice/vm-1"));
    assert_eq!(r.status, 201, "{}", r.text());
    let answer = r.json();
    let pins: Vec<u32> =
        answer["claim"]["placement"]["cells"][0]["cpu_pinning"].as_object().unwrap().values().map(|v| v.as_u64().unwrap() as u32).collect();
    let cpus = numafit_host::cpulist::text(&pins);
    let node = answer["claim"]["placement"]["cells"][0]["host_cell"].to_string();
    let group = root.join("machine.slice/vm-1");
    assert_eq!(std::fs::read_to_string(group.join("cpuset.cpus")).unwrap().trim(), cpus);
    assert_eq!(std::fs::read_to_string(group.join("cpuset.mems")).unwrap().trim(), node);
    assert_eq!(answer["applied"]["cpus"], json!(cpus));

    // The write fails (cpuset.mems is a directory): 500 naming the file and the errno, and the
    // claim made for it is released.
    let bad = root.join("machine.slice/vm-2");
    std::fs::create_dir_all(bad.join("cpuset.mems")).unwrap();
    let r = c.post("/v1/claims", &body("vm-2", "machine.slice/vm-2"));
    assert_eq!(r.status, 500, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"], "ApplyFailed");
    assert_eq!(e["released"], true);
    assert!(e["message"].as_str().unwrap().contains("vm-2/cpuset.mems") && e["message"].as_str().unwrap().contains("EISDIR"), "{e}");
    assert_eq!(c.get("/v1/claims/vm-2").status, 404);
    // A group outside the hierarchy is bad input, refused before anything is claimed.
    let r = c.post("/v1/claims", &body("vm-3", "../../etc"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("field apply.cgroup"), "{}", r.text());
    assert_eq!(c.get("/v1/claims/vm-3").status, 404);
    let r = c.post("/v1/claims", &json!({"instance": "vm-4", "request": request(1, 64), "apply": {"group": "x"}}).to_string());
    assert_eq!(r.status, 400);
    assert!(r.text().contains("apply"), "{}", r.text());

    // Renders over the API are the CLI's, in each format's media type.
    let r = c.get("/v1/claims/vm-1/render?format=taskset");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("taskset -c {cpus}\n"));
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(r.policy_sha().is_some());
    let r = c.get("/v1/claims/vm-1/render?format=libvirt");
    assert_eq!(r.headers["content-type"], "application/xml");
    let state = dir.join("state");
    let cli =
        numafit(&["render", "--instance", "vm-1", "--state-dir", s(&state), "--numactl-output", s(&machine()), "--format", "libvirt"]);
    assert_eq!(r.text(), stdout(&cli));
    let r = c.get("/v1/claims/vm-1/render?format=oci");
    assert_eq!(r.json()["linux"]["resources"]["cpu"]["cpus"], json!(cpus));
    let r = c.get("/v1/claims/vm-1/render?format=yaml");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("field format") && r.text().contains("\\\"yaml\\\""), "{}", r.text());
    assert_eq!(c.get("/v1/claims/nope/render?format=oci").status, 404);
}

#[test]
fn filter_answers_an_inventory_as_the_cli_does_and_refuses_bad_bodies_by_field() {
    let dir = scratch("serve-filter");
    let d = start(&dir, &["--max-body-kib", "8192"]);
    let mut c = d.client();
    let hosts: Vec<Value> = bench_cases()
        .iter()
        .map(|case| json!({"name": case.file_name().unwrap().to_string_lossy(), "host": serde_json::from_str::<Value>(&std::fs::read_to_string(case.join("host.json")).unwrap()).unwrap()}))
        .collect();
    let inventory = dir.join("inventory.json");
    std::fs::write(&inventory, Value::Array(hosts.clone()).to_string()).unwrap();
    for case in ["01-2cell-host-2cell-dedicated", "04-8cell-4cell-prefer", "14-16cell-8cell-too-big"] {
        let request_file = fixture("bench").join(case).join("request.json");
        let request: Value = serde_json::from_str(&std::fs::read_to_string(&request_file).unwrap()).unwrap();
        let body = json!({"hosts": hosts, "request": request, "weighers": ["pack=2", "numa-distance"]});
        let r = c.post("/v1/filter", &body.to_string());
        assert_eq!(r.status, 200, "{}", r.text());
        let o = numafit(&[
            "filter",
            "--hosts",
            s(&inventory),
            "--request",
            s(&request_file),
            "--weigher",
            "pack=2",
            "--weigher",
            "numa-distance",
            "--json",
        ]);
        let cli: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
        assert_eq!(r.json()["hosts"], cli["hosts"], "{case}: the service's answer is the CLI's");
        assert!(r.policy_sha().is_some(), "answered with the policy's header");
    }
    let request = request(1, 512);
    for (body, names) in [
        (
            json!({"hosts": [{"name": "a", "host": hosts[0]["host"]}], "request": request, "weighers": ["heavy"]}),
            vec!["weighers", "\"heavy\""],
        ),
        (
            json!({"hosts": [{"name": "a", "host": hosts[0]["host"]}, {"name": "a", "host": hosts[0]["host"]}], "request": request}),
            vec!["hosts", "[1].name"],
        ),
        (json!({"hosts": [{"name": "a"}], "request": request}), vec!["host"]),
        (json!({"hosts": [], "request": request, "zone": "x"}), vec!["zone"]),
    ] {
        let r = c.post("/v1/filter", &body.to_string());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let message = r.json()["message"].as_str().unwrap_or("").to_string();
        for n in names {
            assert!(message.contains(n), "{body}: the error names {n}: {message}");
        }
    }
    // An empty fleet is an empty answer, and nothing was claimed along the way.
    let r = c.post("/v1/filter", &json!({"hosts": [], "request": request}).to_string());
    assert_eq!((r.status, r.json()), (200, json!({"hosts": []})));
    assert_eq!(c.get("/v1/claims").json(), json!([]));
}
