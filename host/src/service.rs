//! `numafit serve`: the node API a host scheduler calls. One service per machine owns the truth
//! about what is claimed (the ledger), answers fits and claims on the policy serving now, and
//! swaps policies while it runs: a new version is compiled, checked and self-tested off the
//! request path, then swapped in atomically; a version that fails any step is refused and the
//! current one keeps serving.
//!
//! It listens on a Unix socket (mode 0600) and, with `--listen`, on TCP, where every request that
//! changes anything needs the bearer token. SIGTERM (or SIGINT) stops accepting, lets requests in
//! flight finish, and exits 0; SIGHUP re-reads `--plugin FILE`; with `--watch` a replaced file is
//! swapped in on its own.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use numafit_plugin::HostTopology;
use tokio::sync::watch;

pub mod api;
pub mod cluster;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod workers;

use crate::failure::{Failure, FlagError};
use crate::runtime::{wit, PluginLimits, EMBEDDED_BALANCED, EMBEDDED_NOVA};

/// Where the first policy comes from.
pub enum PolicySource {
    Embedded(&'static str),
    File(PathBuf),
}

pub struct ServeConfig {
    pub base: HostTopology,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
    pub token: Option<String>,
    pub policy: PolicySource,
    pub watch: bool,
    pub limits: PluginLimits,
    /// The limits fits run under, and claims are admitted under (`--limits`).
    pub fit_limits: wit::Limits,
    pub admit_limits: Option<wit::Limits>,
    /// The largest JSON body accepted; a component for `PUT /v1/policy` may be `policy_body` bytes.
    pub json_body: usize,
    pub policy_body: usize,
    /// The cgroup v2 hierarchy `POST /v1/claims` with `apply.cgroup` writes under (`--cgroup-root`).
    pub cgroup_root: PathBuf,
    pub node: NodeIdentity,
    /// The cluster whose scheduler this service also serves as an extender (`--cluster`).
    pub cluster: Option<cluster::ClusterConfig>,
    /// A loopback address serving the extender's verbs alone, without a token (`--extender-listen`).
    pub extender_listen: Option<SocketAddr>,
}

/// How this node names itself to Kubernetes (`GET /v1/noderesourcetopology`).
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub name: String,
    pub topology_manager_policy: String,
    pub topology_manager_scope: String,
}

/// The machine's hostname, the node name the kubelet registers by default.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// What every handler shares.
pub struct App {
    pub node: node::Node,
    pub policies: policy::Policies,
    pub metrics: metrics::Metrics,
    pub fit_limits: wit::Limits,
    /// The file behind the policy, re-read on SIGHUP and (with `--watch`) when replaced.
    pub policy_file: Option<PathBuf>,
    /// Where claims' cgroups are written: a request names a group under it, never a path outside.
    pub cgroup_root: PathBuf,
    pub identity: NodeIdentity,
    /// The scheduler-extender side, with `--cluster`.
    pub cluster: Option<cluster::Cluster>,
}

fn first_policy(source: &PolicySource) -> Result<(String, Vec<u8>), Failure> {
    match source {
        PolicySource::Embedded("balanced") => Ok(("balanced (embedded)".into(), EMBEDDED_BALANCED.to_vec())),
        PolicySource::Embedded(_) => Ok(("nova (embedded)".into(), EMBEDDED_NOVA.to_vec())),
        PolicySource::File(path) => std::fs::read(path)
            .map(|b| (path.display().to_string(), b))
            .map_err(|e| FlagError(format!("--plugin {}: cannot read: {e}", path.display())).into()),
    }
}

/// Runs the service until SIGTERM or SIGINT.
pub fn run(config: ServeConfig) -> Result<(), Failure> {
    let (source, bytes) = first_policy(&config.policy)?;
    let cache = crate::runtime::cache::default_dir();
    // The first version passes the self-test like every later one: a service never starts on a
    // policy it would refuse to swap to.
    let first =
        policy::prepare(&source, &bytes, config.limits, cache.as_deref()).map_err(|r| Failure::PluginLoad(anyhow::anyhow!("{r}")))?;
    let node = node::Node::open(config.base.clone(), &config.state_dir, config.admit_limits.clone())?;
    let metrics = metrics::Metrics::new();
    metrics.serving(&first.version);
    eprintln!(
        "numafit serve: policy {} {} ({}) from {source}; self-test {} calls, slowest {:.1} ms",
        first.version.name, first.version.version, first.version.sha256, first.selftest.calls, first.selftest.slowest_call_ms
    );
    let app = Arc::new(App {
        node,
        policies: policy::Policies::new(first, config.limits, cache),
        metrics,
        fit_limits: config.fit_limits.clone(),
        policy_file: match &config.policy {
            PolicySource::File(p) => Some(p.clone()),
            PolicySource::Embedded(_) => None,
        },
        cgroup_root: config.cgroup_root.clone(),
        identity: config.node.clone(),
        cluster: config.cluster.clone().map(cluster::Cluster::new).transpose()?,
    });
    // The listeners, signals and the policy watch; requests are served by `workers`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FlagError(format!("cannot start the service's runtime: {e}")))?;
    runtime.block_on(serve(app, &config))
}

/// The scheduler-extender verbs. Without nodeCacheCapable the scheduler sends every candidate
/// Node object with each pod, so their bodies may be larger than the node API's.
fn scheduler_routes(config: &ServeConfig) -> Router<Arc<App>> {
    let nodes = DefaultBodyLimit::max(config.json_body.max(cluster::EXTENDER_BODY));
    Router::new()
        .route("/scheduler/filter", post(cluster::filter).layer(nodes))
        .route("/scheduler/prioritize", post(cluster::prioritize).layer(nodes))
        .route("/scheduler/bind", post(cluster::bind).layer(DefaultBodyLimit::max(config.json_body)))
}

fn routes(app: Arc<App>, config: &ServeConfig) -> Router {
    // The extender's verbs exist only where a cluster is configured (elsewhere: 404).
    let router = if app.cluster.is_some() { scheduler_routes(config) } else { Router::new() };
    router
        .route("/healthz", get(api::healthz))
        .route("/v1/topology", get(api::topology))
        .route("/v1/status", get(api::status))
        .route("/v1/fit", post(api::fit))
        .route("/v1/filter", post(api::filter))
        .route("/v1/noderesourcetopology", get(api::node_resource_topology))
        .route("/v1/claims", post(api::claim).get(api::claims))
        .route("/v1/claims/{id}", get(api::claim_of).delete(api::release))
        .route("/v1/claims/{id}/render", get(api::render))
        .route("/v1/policy", get(api::policy).put(api::put_policy).layer(DefaultBodyLimit::max(config.policy_body)))
        .route("/v1/policy/rollback", post(api::rollback))
        .route("/metrics", get(api::metrics))
        .layer(DefaultBodyLimit::max(config.json_body))
        .with_state(app)
}

async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    if api::authorized(&token, request.method(), request.headers()) {
        next.run(request).await
    } else {
        api::unauthorized()
    }
}

/// Binds the Unix socket: a stale file from a dead service is replaced, a live service's is not.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, Failure> {
    let bad = |why: String| Failure::from(FlagError(format!("--socket {}: {why}", path.display())));
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(bad("another service is listening on it".into()));
        }
        std::fs::remove_file(path).map_err(|e| bad(format!("cannot remove the stale socket: {e}")))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot make its directory: {e}")))?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| bad(format!("cannot listen: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| bad(format!("cannot make it 0600: {e}")))?;
    Ok(listener)
}

/// Accepts until `stop`, handing each connection to a worker.
async fn accept<L: Accepting>(listener: L, router: Router, workers: Arc<workers::Workers>, mut stop: watch::Receiver<bool>) {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            accepted = listener.accept_std() => match accepted {
                Ok(c) => workers.hand(L::connection(c, router.clone())),
                // Out of file descriptors (or a connection reset before it was taken): keep
                // serving the open ones, try again shortly.
                Err(e) => {
                    eprintln!("numafit serve: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = &mut stopped => return,
        }
    }
}

/// A listener whose connections go to the workers as std streams (each worker registers its own
/// with its own runtime).
trait Accepting {
    type Stream;
    fn accept_std(&self) -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send;
    fn connection(s: Self::Stream, router: Router) -> workers::Connection;
}

impl Accepting for tokio::net::UnixListener {
    type Stream = std::os::unix::net::UnixStream;
    async fn accept_std(&self) -> std::io::Result<Self::Stream> {
        self.accept().await?.0.into_std()
    }
    fn connection(s: Self::Stream, router: Router) -> workers::Connection {
        workers::Connection::Unix(s, router)
    }
}

impl Accepting for tokio::net::TcpListener {
    type Stream = std::net::TcpStream;
    async fn accept_std(&self) -> std::io::Result<Self::Stream> {
        self.accept().await?.0.into_std()
    }
    fn connection(s: Self::Stream, router: Router) -> workers::Connection {
        workers::Connection::Tcp(s, router)
    }
}

async fn serve(app: Arc<App>, config: &ServeConfig) -> Result<(), Failure> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let router = routes(app.clone(), config);
    let unix = bind_socket(&config.socket)?;
    let count = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = Arc::new(workers::Workers::start(count).map_err(|e| FlagError(format!("cannot start the service's workers: {e}")))?);
    let mut listeners = tokio::task::JoinSet::new();
    listeners.spawn(accept(unix, router.clone(), workers.clone(), stop_rx.clone()));
    if let Some(addr) = config.listen {
        let token = config.token.clone().ok_or_else(|| FlagError("--listen needs --token-file: TCP is served only with a token".into()))?;
        let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| FlagError(format!("--listen {addr}: cannot listen: {e}")))?;
        let tcp_router = router.layer(middleware::from_fn_with_state(Arc::new(token), require_token));
        listeners.spawn(accept(tcp, tcp_router, workers.clone(), stop_rx.clone()));
        eprintln!("numafit serve: listening on tcp {addr} (token required for changes)");
    }
    if let Some(addr) = config.extender_listen {
        // kube-scheduler's HTTP extender sends no credentials: the verbs alone, on loopback only,
        // next to the scheduler (checked when the flags were read).
        let tcp =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| FlagError(format!("--extender-listen {addr}: cannot listen: {e}")))?;
        listeners.spawn(accept(tcp, scheduler_routes(config).with_state(app.clone()), workers.clone(), stop_rx.clone()));
        eprintln!("numafit serve: scheduler extender on tcp {addr} (/scheduler/filter, /prioritize, /bind)");
    }
    eprintln!("numafit serve: listening on {} ({count} workers)", config.socket.display());
    tokio::spawn(signals(app.clone(), stop_tx));
    if config.watch {
        if let Some(path) = app.policy_file.clone() {
            tokio::spawn(watch_file(app.clone(), path, stop_rx.clone()));
        }
    }
    while listeners.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&config.socket);
    // Every listener has stopped, so the workers are this function's alone.
    if let Ok(workers) = Arc::try_unwrap(workers) {
        let _ = tokio::task::spawn_blocking(move || workers.finish()).await;
    }
    eprintln!("numafit serve: stopped");
    Ok(())
}

/// SIGTERM / SIGINT: stop; SIGHUP: re-read the policy file.
async fn signals(app: Arc<App>, stop: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        eprintln!("numafit serve: cannot watch signals; stopping");
        let _ = stop.send(true);
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match app.policy_file.clone() {
                Some(path) => reload(&app, path).await,
                None => eprintln!("numafit serve: SIGHUP: the policy is embedded, nothing to re-read"),
            },
        }
    }
    eprintln!("numafit serve: stopping: finishing requests in flight");
    let _ = stop.send(true);
}

async fn reload(app: &Arc<App>, path: PathBuf) {
    let app = app.clone();
    let _ = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
        Ok(bytes) => {
            api::swap(&app, &path.display().to_string(), &bytes);
        }
        Err(e) => eprintln!("numafit serve: cannot read {}: {e}; the current policy keeps serving", path.display()),
    })
    .await;
}

/// How often `--watch` looks at the policy file (a stat: cheap).
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// Swaps in the policy file whenever it is replaced or rewritten (its inode, size or mtime change).
async fn watch_file(app: Arc<App>, path: PathBuf, mut stop: watch::Receiver<bool>) {
    use std::os::unix::fs::MetadataExt;
    let stamp = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
    let mut seen = stamp(&path);
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = stamp(&path);
        if now.is_some() && now != seen {
            seen = now;
            reload(&app, path.clone()).await;
        }
    }
}
