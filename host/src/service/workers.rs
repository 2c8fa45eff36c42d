//! The connection workers: one thread per CPU the service may run on, each a single-threaded
//! runtime serving the connections handed to it. A request is read, answered and written on one
//! thread; with tokio's work-stealing runtime every request also woke the other worker, and on
//! this 2-core VM those wake-ups were a third of the service's CPU (`cargo bench --bench serve`:
//! 51-62 µs of service CPU per fit with four clients, against 40 µs on one worker).
//!
//! The listeners accept on the front end's runtime and hand each connection to the next worker
//! in turn, so a few long-lived scheduler connections spread over the cores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::mpsc;

/// An accepted connection and the routes it is served by (TCP's include the token check).
pub enum Connection {
    Unix(std::os::unix::net::UnixStream, Router),
    Tcp(std::net::TcpStream, Router),
}

pub struct Workers {
    queues: Vec<mpsc::UnboundedSender<Connection>>,
    threads: Vec<JoinHandle<()>>,
    next: AtomicUsize,
}

impl Workers {
    /// `count` worker threads (at least one).
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (tx, rx) = mpsc::unbounded_channel();
            let thread = std::thread::Builder::new().name(format!("numafit-serve-{i}")).spawn(move || runtime.block_on(serve(rx)))?;
            queues.push(tx);
            threads.push(thread);
        }
        Ok(Workers { queues, threads, next: AtomicUsize::new(0) })
    }

    /// Hands a connection to the next worker.
    pub fn hand(&self, connection: Connection) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        // A worker stops only once its queue is closed, by `finish`.
        let _ = self.queues[i].send(connection);
    }

    /// Stops taking connections and waits until every worker has finished the requests in flight
    /// on its connections (idle keep-alive connections are closed).
    pub fn finish(self) {
        drop(self.queues);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

async fn serve(mut queue: mpsc::UnboundedReceiver<Connection>) {
    let graceful = GracefulShutdown::new();
    while let Some(connection) = queue.recv().await {
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // A connection the client dropped mid-request is its own end, not the service's.
            let _ = match connection {
                Connection::Unix(s, router) => match tokio::net::UnixStream::from_std(s) {
                    Ok(s) => watcher.watch(http1::Builder::new().serve_connection(TokioIo::new(s), TowerToHyperService::new(router))).await,
                    Err(_) => Ok(()),
                },
                Connection::Tcp(s, router) => match tokio::net::TcpStream::from_std(s) {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        watcher.watch(http1::Builder::new().serve_connection(TokioIo::new(s), TowerToHyperService::new(router))).await
                    }
                    Err(_) => Ok(()),
                },
            };
        });
    }
    graceful.shutdown().await;
}
