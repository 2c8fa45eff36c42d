//! Load generator for `numafit serve` (the release binary, over its Unix socket): dry-run fits of
//! bench case 04, claims and releases, and hot swaps, each reported as a rate and latency
//! percentiles against the issue's targets. `cargo bench --bench serve [-- SECONDS]`.

#[path = "../../tests/support/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::Daemon;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn shared_case(name: &str) -> PathBuf {
    let shared = root().join("../shared/bench").join(name);
    if shared.exists() {
        shared
    } else {
        root().join("tests/fixtures/bench").join(name)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The load generator's own client for the rate runs: a blocking Unix socket writing a prepared
/// HTTP/1.1 request and reading the answer with `httparse` (hyper's parser), like `wrk`. It takes a
/// fraction of the CPU the hyper client's runtime does, and on 2 cores every cycle it saves is the
/// service's.
struct Lean {
    stream: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
}

impl Lean {
    fn connect(d: &Daemon) -> Lean {
        Lean { stream: std::os::unix::net::UnixStream::connect(&d.socket).expect("connects"), buf: Vec::with_capacity(8192) }
    }

    /// `METHOD PATH` with `body`: the status, the answer read whole.
    fn send(&mut self, method: &str, path: &str, body: &str) -> u16 {
        use std::io::{Read, Write};
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: numafit\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body.as_bytes());
        self.stream.write_all(&out).expect("request written");
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.stream.read(&mut chunk).expect("answer read");
            assert!(n > 0, "the service closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = resp.parse(&self.buf).expect("an HTTP answer") {
                let length = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .expect("content-length");
                if self.buf.len() >= head_len + length {
                    return resp.code.expect("status");
                }
            }
        }
    }
}

/// CPU seconds (user + system) a process has used: `/proc/PID/stat` fields 14 and 15.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<f64> = after.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // After the name: state is field 3 (not a number, skipped), so utime/stime are f[10], f[11].
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)) / hz
}

/// One load run's result.
struct Run {
    rate: f64,
    p50: f64,
    p99: f64,
    /// The service's CPU time (user + system, all its threads) per request, µs.
    service_us: f64,
    /// The load generator's CPU time per request, µs.
    client_us: f64,
}

/// `threads` clients, each on its own connection made by `connect`, sending `send(i)` for `secs`.
fn load<C>(
    d: &Daemon,
    threads: usize,
    secs: f64,
    what: &str,
    connect: impl Fn() -> C + Sync,
    send: impl Fn(&mut C, usize) -> u16 + Sync,
) -> Run {
    let stop = AtomicBool::new(false);
    let pid = d.child.id().to_string();
    let (service0, client0) = (cpu_seconds(&pid), cpu_seconds("self"));
    let started = Instant::now();
    let mut all: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, send, connect) = (&stop, &send, &connect);
                scope.spawn(move || {
                    let mut c = connect();
                    let mut lat = Vec::new();
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let s = Instant::now();
                        let status = send(&mut c, i);
                        lat.push(s.elapsed().as_secs_f64() * 1e3);
                        assert!(status < 300, "{what}: status {status}");
                        i += threads;
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().flat_map(|h| h.join().expect("client")).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (service, client) = (cpu_seconds(&pid) - service0, cpu_seconds("self") - client0);
    all.sort_by(f64::total_cmp);
    let n = all.len() as f64;
    Run {
        rate: n / elapsed,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        service_us: service / n * 1e6,
        client_us: client / n * 1e6,
    }
}

fn main() {
    let secs: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5.0);
    let dir = std::env::temp_dir().join(format!("numafit-bench-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("cache");
    std::env::set_var("NUMAFIT_CACHE_DIR", &cache);
    let case = shared_case("04-8cell-4cell-prefer");
    let request = std::fs::read_to_string(case.join("request.json")).unwrap();
    let policy_file = dir.join("policy.wasm");
    std::fs::write(&policy_file, numafit_host::runtime::EMBEDDED_NOVA).unwrap();
    let host = case.join("host.json");
    let state = dir.join("state");
    let d = Daemon::start(
        &dir.join("serve.sock"),
        &["--host", host.to_str().unwrap(), "--state-dir", state.to_str().unwrap(), "--plugin", policy_file.to_str().unwrap(), "--watch"],
    );
    println!("numafit serve load generator: {secs} s per run, clients over the Unix socket, one keep-alive connection each");
    if let Some(other) = std::env::var_os("NUMAFIT_BENCH_AGAINST") {
        // Side by side: this build's daemon and another's, alternating, the same load.
        drop(d);
        let other = PathBuf::from(other);
        let this = PathBuf::from(env!("CARGO_BIN_EXE_numafit"));
        println!(
            "| POST /v1/fit, case 04, 4 clients | this build (/s) | {} (/s) | ratio | service CPU/request, this (µs) | other (µs) | ratio |",
            other.display()
        );
        println!("|---|---|---|---|---|---|---|");
        for round in 0..5 {
            let mut rates = Vec::new();
            let mut cpu = Vec::new();
            for bin in [&this, &other] {
                let socket = dir.join(format!("ab-{round}-{}.sock", rates.len()));
                let d = Daemon::start_with(bin, &socket, &["--host", host.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
                let run = load(&d, 4, secs, "fit", || Lean::connect(&d), |c, _| c.send("POST", "/v1/fit", &request));
                rates.push(run.rate);
                cpu.push(run.service_us);
            }
            println!(
                "| round {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {:.2} |",
                round + 1,
                rates[0],
                rates[1],
                rates[0] / rates[1],
                cpu[0],
                cpu[1],
                cpu[0] / cpu[1]
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    println!("| load | client | clients | rate (/s) | p50 (ms) | p99 (ms) | service CPU/request (µs) | client CPU/request (µs) | target |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let row = |what: &str, client: &str, threads: usize, r: &Run, target: &str| {
        println!(
            "| {what} | {client} | {threads} | {:.0} | {:.3} | {:.3} | {:.1} | {:.1} | {target} |",
            r.rate, r.p50, r.p99, r.service_us, r.client_us
        )
    };
    let fit_target = ">= 20000/s, p99 <= 1 ms";
    for threads in [1, 2, 4, 8] {
        let r = load(&d, threads, secs, "fit", || Lean::connect(&d), |c, _| c.send("POST", "/v1/fit", &request));
        row("POST /v1/fit, case 04", "lean", threads, &r, fit_target);
    }
    // The same load from hyper's client, for how much of the machine a heavier client takes.
    for threads in [2, 4] {
        let r = load(&d, threads, secs, "fit", || d.client(), |c, _| c.post("/v1/fit", &request).status);
        row("POST /v1/fit, case 04", "hyper", threads, &r, fit_target);
    }
    let small = r#"{"cells": [{"pcpuset": [0, 1], "memory": 1024}], "cpu_policy": "dedicated"}"#;
    for threads in [1, 2, 4] {
        let r = load(
            &d,
            threads,
            secs,
            "claim",
            || Lean::connect(&d),
            |c, i| {
                let id = format!("bench-{threads}-{i}");
                let status = c.send("POST", "/v1/claims", &format!(r#"{{"instance": "{id}", "request": {small}}}"#));
                // Released at once, so the host never fills; the rate counts claims only.
                let _ = c.send("DELETE", &format!("/v1/claims/{id}"), "");
                status
            },
        );
        // Each iteration was a claim and a release: claims per second is the iteration rate.
        row("POST /v1/claims (+ DELETE)", "lean", threads, &r, ">= 1000 claims/s, p99 <= 10 ms");
    }
    // Swaps: file replaced -> first answer from the new version.
    let mut c = d.client();
    let versions = [("balanced", numafit_host::runtime::EMBEDDED_BALANCED), ("nova", numafit_host::runtime::EMBEDDED_NOVA)];
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for round in 0..6 {
        let (name, bytes) = versions[round % 2];
        let sha = numafit_host::runtime::cache::sha256(bytes);
        let tmp = dir.join("policy.wasm.new");
        std::fs::write(&tmp, bytes).unwrap();
        let started = Instant::now();
        std::fs::rename(&tmp, &policy_file).unwrap();
        while c.post("/v1/fit", &request).policy_sha().as_deref() != Some(sha.as_str()) {
            assert!(started.elapsed() < Duration::from_secs(60), "{name} never answered");
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        // Only the first swap to balanced compiles it; nova was compiled at start.
        if round == 0 {
            cold.push(ms)
        } else {
            cached.push(ms)
        }
    }
    cached.sort_by(f64::total_cmp);
    println!("| swap, file replaced -> first answer | cold compile | {:.1} ms | | | <= 1 s |", cold[0]);
    println!(
        "| swap, file replaced -> first answer | cached artifact, median of {} | {:.1} ms (max {:.1}) | | | <= 100 ms |",
        cached.len(),
        cached[cached.len() / 2],
        cached[cached.len() - 1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
