//! The service load generators' shared parts: a lean HTTP/1.1 client, CPU time per request, and
//! a timed run of client threads with its rate and latency percentiles.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::http::Daemon;

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The load generator's own client for the rate runs: a blocking Unix socket writing a prepared
/// HTTP/1.1 request and reading the answer with `httparse` (hyper's parser), like `wrk`. It takes a
/// fraction of the CPU the hyper client's runtime does, and on 2 cores every cycle it saves is the
/// service's.
pub struct Lean {
    stream: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
}

impl Lean {
    pub fn connect(d: &Daemon) -> Lean {
        Lean { stream: std::os::unix::net::UnixStream::connect(&d.socket).expect("connects"), buf: Vec::with_capacity(8192) }
    }

    /// `METHOD PATH` with `body`: the status, the answer read whole.
    pub fn send(&mut self, method: &str, path: &str, body: &str) -> u16 {
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
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<f64> = after.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // After the name: state is field 3 (not a number, skipped), so utime/stime are f[10], f[11].
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)) / hz
}

/// One load run's result.
pub struct Run {
    pub rate: f64,
    pub p50: f64,
    pub p99: f64,
    /// The service's CPU time (user + system, all its threads) per request, µs.
    pub service_us: f64,
    /// The load generator's CPU time per request, µs.
    pub client_us: f64,
}

/// `threads` clients, each on its own connection made by `connect`, sending `send(i)` for `secs`.
pub fn load<C>(
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
