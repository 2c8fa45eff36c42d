//! A real HTTP/1.1 client (hyper) for the service's tests: one keep-alive connection over the
//! Unix socket or TCP, used blocking; and the `numafit serve` process under test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

#[derive(Clone, Debug)]
pub enum Addr {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

pub struct Client {
    rt: tokio::runtime::Runtime,
    sender: SendRequest<Full<Bytes>>,
    addr: Addr,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `Numafit-Policy` header's sha256.
    pub fn policy_sha(&self) -> Option<String> {
        let v = self.headers.get("numafit-policy")?.to_str().ok()?;
        v.split("sha256=").nth(1).map(str::to_string)
    }
}

impl Client {
    pub fn connect(addr: &Addr) -> std::io::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let sender = rt.block_on(async {
            let sender = match addr {
                Addr::Unix(p) => {
                    let (s, conn) =
                        http1::handshake(TokioIo::new(tokio::net::UnixStream::connect(p).await?)).await.map_err(std::io::Error::other)?;
                    tokio::spawn(conn);
                    s
                }
                Addr::Tcp(a) => {
                    let (s, conn) =
                        http1::handshake(TokioIo::new(tokio::net::TcpStream::connect(a).await?)).await.map_err(std::io::Error::other)?;
                    tokio::spawn(conn);
                    s
                }
            };
            Ok::<_, std::io::Error>(sender)
        })?;
        Ok(Client { rt, sender, addr: addr.clone() })
    }

    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Result<Reply, String> {
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", "numafit");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.into()))).map_err(|e| e.to_string())?;
        let sender = &mut self.sender;
        self.rt.block_on(async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
            Ok(Reply { status, headers, body })
        })
    }

    #[track_caller]
    pub fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path, &[], Vec::new()).expect("GET answered")
    }

    #[track_caller]
    pub fn post(&mut self, path: &str, body: &str) -> Reply {
        self.send("POST", path, &[], body.as_bytes().to_vec()).expect("POST answered")
    }
}

/// A `numafit serve` process; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `numafit serve ARGS --socket SOCKET` and waits until it answers /healthz.
    pub fn start(socket: &Path, args: &[&str]) -> Daemon {
        Daemon::start_with(Path::new(env!("CARGO_BIN_EXE_numafit")), socket, args)
    }

    /// `start`, with another numafit binary (the benchmark's side-by-side builds).
    pub fn start_with(bin: &Path, socket: &Path, args: &[&str]) -> Daemon {
        let log = socket.with_extension("log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let cache = std::env::temp_dir().join(format!("numafit-test-cache-{}", std::process::id()));
        let child = Command::new(bin)
            .arg("serve")
            .args(args)
            .arg("--socket")
            .arg(socket)
            .env("NUMAFIT_CACHE_DIR", cache)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("numafit serve starts");
        let mut d = Daemon { child, socket: socket.to_path_buf(), log };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("numafit serve exited with {status}: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            if let Ok(mut c) = Client::connect(&self.addr()) {
                if c.send("GET", "/healthz", &[], Vec::new()).is_ok_and(|r| r.status == 200) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("numafit serve did not answer within 120 s: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    pub fn addr(&self) -> Addr {
        Addr::Unix(self.socket.clone())
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr()).expect("connects")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
