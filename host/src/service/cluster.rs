//! The Kubernetes scheduler extender (`--cluster CLUSTER.json`): `/scheduler/filter`,
//! `/scheduler/prioritize` and `/scheduler/bind` for the node services the file names.
//!
//! Two phases, as the issue asks. The extender decides on a snapshot: each node service's
//! derived host and its ledger generation (`GET /v1/status`), kept in an inventory that a
//! background thread refreshes every `refresh_ms` (a node never fetched is fetched on first
//! use), and judged for all candidates in one fit-many call of the serving policy. It then
//! claims on the node: `POST /v1/claims` with the generation it decided on. A node that moved
//! since (409 `StaleGeneration`) is fetched again and the pod judged again on its new truth; if it
//! still fits the claim is made on the new generation (up to `BIND_ATTEMPTS` times), else the bind
//! fails and the scheduler schedules the pod again. Only after the claim is the pod's `Binding`
//! created at the API server; a Binding that fails releases the claim.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use numafit_plugin::HostTopology;
use serde::Deserialize;
use serde_json::{json, Value};

use super::App;
use crate::contract;
use crate::failure::{Failure, FlagError};
use crate::fleet::{self, Weights};
use crate::formats::{self, HostJson, InputError, RequestJson};
use crate::kube::extender::{self, ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, HostPriority, NodeList};
use crate::kube::{self, pod::Pod};
use crate::runtime::{wit, LoadedHost, Plugin};
use crate::verify;

/// The largest `ExtenderArgs` taken: full Node objects for thousands of nodes.
pub const EXTENDER_BODY: usize = 64 << 20;
/// How many times a bind claims on a node that keeps moving under it.
const BIND_ATTEMPTS: usize = 3;
/// Pods remembered from filter for their bind (which names the pod but does not carry it).
const PODS_REMEMBERED: usize = 4096;

/// CLUSTER.json.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    nodes: Vec<NodeServiceFile>,
    /// The token for every node service that names none of its own.
    #[serde(default)]
    node_token_file: Option<PathBuf>,
    #[serde(default)]
    api_server: Option<ApiServerFile>,
    #[serde(default = "default_refresh_ms")]
    refresh_ms: u64,
    /// As `numafit filter --weigher` (`["pack=2"]`); none: spread.
    #[serde(default)]
    weighers: Vec<String>,
    /// Seconds a node service or the API server has to answer.
    #[serde(default = "default_timeout_s")]
    timeout_s: u64,
    /// How often the claims of pods that are gone are released (0: never).
    #[serde(default = "default_release_ms")]
    release_ms: u64,
    /// A pod's claim younger than this is left alone: its Binding may still be on its way.
    #[serde(default = "default_release_grace_s")]
    release_grace_s: u64,
}

fn default_release_ms() -> u64 {
    30_000
}

fn default_release_grace_s() -> u64 {
    60
}

fn default_refresh_ms() -> u64 {
    1000
}

fn default_timeout_s() -> u64 {
    5
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeServiceFile {
    name: String,
    /// `http://ADDR:PORT` of that node's `numafit serve --listen`.
    url: String,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiServerFile {
    url: String,
    #[serde(default)]
    token_file: Option<PathBuf>,
    /// The CA that signed the API server's certificate (PEM), for `https://`.
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

/// CLUSTER.json read and checked: tokens read, URLs and weighers checked.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    nodes: BTreeMap<String, Endpoint>,
    api: Option<ApiServer>,
    refresh: Duration,
    timeout: Duration,
    weights: Weights,
    /// `None`: claims of gone pods are not released.
    release_every: Option<Duration>,
    release_grace: Duration,
}

#[derive(Clone, Debug)]
struct Endpoint {
    url: String,
    token: Option<String>,
}

#[derive(Clone, Debug)]
struct ApiServer {
    endpoint: Endpoint,
    ca_pem: Option<Vec<u8>>,
}

fn read_token(file: &str, field: &str, path: &Path) -> Result<String, InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError { file: file.into(), message: format!("field {field}: {}: cannot read: {e}", path.display()) })?;
    Ok(text.trim().to_string())
}

fn check_url(file: &str, field: &str, url: &str) -> Result<String, InputError> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) => Ok(url.trim_end_matches('/').to_string()),
        _ => Err(InputError { file: file.into(), message: format!("field {field}: {url:?} is not an http:// or https:// URL") }),
    }
}

impl ClusterConfig {
    pub fn read(path: &Path) -> Result<ClusterConfig, Failure> {
        let file = path.display().to_string();
        let raw: ClusterFile = formats::read_json(path)?;
        let bad = |message: String| Failure::from(InputError { file: file.clone(), message });
        let shared = raw.node_token_file.as_deref().map(|p| read_token(&file, "node_token_file", p)).transpose()?;
        let mut nodes = BTreeMap::new();
        for (i, n) in raw.nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(bad(format!("field nodes[{i}].name: empty")));
            }
            let url = check_url(&file, &format!("nodes[{i}].url"), &n.url)?;
            let token = match &n.token_file {
                Some(p) => Some(read_token(&file, &format!("nodes[{i}].token_file"), p)?),
                None => shared.clone(),
            };
            if nodes.insert(n.name.clone(), Endpoint { url, token }).is_some() {
                return Err(bad(format!("field nodes[{i}].name: {:?} is named twice", n.name)));
            }
        }
        let api = match &raw.api_server {
            None => None,
            Some(a) => {
                let url = check_url(&file, "api_server.url", &a.url)?;
                let token = a.token_file.as_deref().map(|p| read_token(&file, "api_server.token_file", p)).transpose()?;
                let ca_pem = match &a.ca_file {
                    Some(p) => {
                        Some(std::fs::read(p).map_err(|e| bad(format!("field api_server.ca_file: {}: cannot read: {e}", p.display())))?)
                    }
                    None => None,
                };
                Some(ApiServer { endpoint: Endpoint { url, token }, ca_pem })
            }
        };
        if raw.refresh_ms == 0 || raw.timeout_s == 0 {
            return Err(bad("fields refresh_ms and timeout_s: must be at least 1".into()));
        }
        let weights = Weights::parse(&raw.weighers, "field weighers:").map_err(bad)?;
        Ok(ClusterConfig {
            nodes,
            api,
            refresh: Duration::from_millis(raw.refresh_ms),
            timeout: Duration::from_secs(raw.timeout_s),
            weights,
            release_every: (raw.release_ms > 0).then(|| Duration::from_millis(raw.release_ms)),
            release_grace: Duration::from_secs(raw.release_grace_s),
        })
    }
}

/// What a node service said at one generation.
pub struct Snapshot {
    pub generation: i64,
    /// The derived host (its usage is the node's ledger).
    pub host: HostTopology,
    pub shown: wit::Host,
    index: verify::HostIndex,
    /// The node's base topology, empty of claims: a pod it cannot fit even so is unresolvable.
    pub base: Arc<Base>,
    /// `shown` loaded into the serving policy (`host-state`), so a filter sends only the pod.
    loaded: Mutex<Option<Arc<LoadedHost>>>,
}

pub struct Base {
    pub host: HostTopology,
    shown: wit::Host,
    loaded: Mutex<Option<Arc<LoadedHost>>>,
}

/// `shown` as loaded into `worker`'s policy: the one kept in `slot` if that policy made it, else
/// loaded now and kept. A host the policy refuses to load is answered with its reason.
fn loaded_into(
    slot: &Mutex<Option<Arc<LoadedHost>>>,
    shown: &wit::Host,
    worker: &mut Plugin,
) -> Result<Result<Arc<LoadedHost>, String>, String> {
    if let Some(l) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref().filter(|l| worker.made(l)) {
        return Ok(Ok(l.clone()));
    }
    match worker.load(shown.clone()).map_err(|e| e.to_string())? {
        Ok(l) => {
            let l = Arc::new(l);
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(l.clone());
            Ok(Ok(l))
        }
        Err(why) => Ok(Err(why)),
    }
}

/// A pod remembered from filter for its bind.
struct Remembered {
    request: RequestJson,
    key: String,
    /// What the last filter placed, for the prioritize that follows it.
    fitted: Option<Arc<Fitted>>,
}

/// The placements a filter found for a pod, by node: each valid while its node stays at the
/// generation it was found on and the same policy serves.
struct Fitted {
    policy_sha256: String,
    placements: HashMap<String, (i64, wit::Placement)>,
}

pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    agent: ureq::Agent,
    snapshots: Mutex<HashMap<String, Arc<Snapshot>>>,
    /// Nodes whose last fetch failed: when, and why.
    down: Mutex<HashMap<String, (Instant, String)>>,
    pods: Mutex<(HashMap<String, Remembered>, VecDeque<String>)>,
    binds: BindBook,
}

/// This service's binds, by pod UID, for the release pass: a claim whose bind is on its way, or
/// ended after a pod list was asked for, is not judged by that list (its Binding may not show).
/// A scheduler may retry a bind while the first is still on its way: each is counted.
#[derive(Default)]
struct BindBook(Mutex<HashMap<String, BindMark>>);

#[derive(Clone, Copy, Default)]
struct BindMark {
    /// Binds claimed, or about to be, whose Binding may not exist yet.
    in_flight: u32,
    /// When the last one ended (bound, or failed and its claim released).
    ended: Option<Instant>,
}

impl BindMark {
    fn unsettled_for(&self, listed_at: Instant) -> bool {
        self.in_flight > 0 || self.ended.is_some_and(|at| at >= listed_at)
    }
}

/// One bind in flight for as long as it lives; its end, however it comes, is stamped.
struct BindInFlight<'a> {
    book: &'a BindBook,
    uid: String,
}

impl BindBook {
    fn marks(&self) -> std::sync::MutexGuard<'_, HashMap<String, BindMark>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, uid: &str) -> BindInFlight<'_> {
        self.marks().entry(uid.to_string()).or_default().in_flight += 1;
        BindInFlight { book: self, uid: uid.to_string() }
    }

    /// Whether a pod list asked for at `listed_at` may not show what this pod's binds did.
    fn unsettled(&self, uid: &str, listed_at: Instant) -> bool {
        self.marks().get(uid).is_some_and(|m| m.unsettled_for(listed_at))
    }

    /// Forgets the binds settled for every list asked for from `from` on.
    fn settle_before(&self, from: Instant) {
        self.marks().retain(|_, m| m.unsettled_for(from));
    }
}

impl Drop for BindInFlight<'_> {
    fn drop(&mut self) {
        let mut marks = self.book.marks();
        let mark = marks.entry(std::mem::take(&mut self.uid)).or_default();
        mark.in_flight = mark.in_flight.saturating_sub(1);
        mark.ended = Some(Instant::now());
    }
}

/// What a node service could not do, in words for the scheduler.
#[derive(Debug)]
struct Unreachable(String);

fn agent(config: &ClusterConfig) -> Result<ureq::Agent, Failure> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(pem) = config.api.as_ref().and_then(|a| a.ca_pem.as_deref()) {
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(FlagError(format!("--cluster: api_server.ca_file: not PEM: {e}")).into()),
            }
        }
        if certs.is_empty() {
            return Err(FlagError("--cluster: api_server.ca_file: no certificate in it".into()).into());
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(config.timeout))
        .max_idle_connections_per_host(8)
        .tls_config(tls.build())
        .build()
        .into())
}

impl Cluster {
    pub fn new(config: ClusterConfig) -> Result<Cluster, Failure> {
        let inner = Arc::new(Inner {
            agent: agent(&config)?,
            config,
            snapshots: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            pods: Mutex::new((HashMap::new(), VecDeque::new())),
            binds: BindBook::default(),
        });
        // The inventory refresher: the filter reads snapshots, it does not wait for them.
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("numafit-inventory".into())
            .spawn(move || {
                let mut released_at: Option<Instant> = None;
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    let every = inner.config.refresh;
                    let names: Vec<String> = inner.config.nodes.keys().cloned().collect();
                    for name in names {
                        if let Err(Unreachable(why)) = inner.refresh(&name) {
                            eprintln!("numafit serve: inventory: node {name}: {why}");
                        }
                    }
                    if let Some(period) = inner.config.release_every {
                        if released_at.is_none_or(|at| at.elapsed() >= period) {
                            inner.release_gone_pods();
                            released_at = Some(Instant::now());
                        }
                    }
                    drop(inner);
                    std::thread::sleep(every);
                }
            })
            .map_err(|e| FlagError(format!("cannot start the inventory thread: {e}")))?;
        Ok(Cluster { inner })
    }
}

impl Inner {
    fn get(&self, endpoint: &Endpoint, path: &str) -> Result<Value, Unreachable> {
        let mut r = self.agent.get(&format!("{}{path}", endpoint.url));
        if let Some(t) = &endpoint.token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        let mut answer = r.call().map_err(|e| Unreachable(format!("GET {path}: {e}")))?;
        let status = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().map_err(|e| Unreachable(format!("GET {path}: {e}")))?;
        if status != 200 {
            return Err(Unreachable(format!("GET {path}: {status}: {}", text.trim())));
        }
        serde_json::from_str(&text).map_err(|e| Unreachable(format!("GET {path}: not JSON: {e}")))
    }

    /// Sends `body` and answers the status and the JSON (or text) that came back.
    fn send(&self, method: &str, endpoint: &Endpoint, path: &str, body: Option<&Value>) -> Result<(u16, Value), Unreachable> {
        let url = format!("{}{path}", endpoint.url);
        let auth = endpoint.token.as_ref().map(|t| format!("Bearer {t}"));
        let sent = match (method, body) {
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = self.agent.post(&url).content_type("application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.map(Value::to_string).unwrap_or_default())
            }
        };
        let mut answer = sent.map_err(|e| Unreachable(format!("{method} {path}: {e}")))?;
        let status = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().map_err(|e| Unreachable(format!("{method} {path}: {e}")))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Releases, on every node, the claims of pods the API server no longer lists on that node
    /// holding resources (deleted, ended, or bound elsewhere): the accounting follows the pods
    /// without a watch. Only the extender's own claims (`pod:UID`) older than the grace are
    /// looked at, and a node whose pods cannot be listed keeps every claim. The grace covers
    /// binds by other replicas; this service's own binds are known exactly: a claim whose bind
    /// is on its way, or ended after the pod list was asked for, is not judged by that list.
    fn release_gone_pods(&self) {
        let Some(api) = &self.config.api else { return };
        let pass_started = Instant::now();
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let before_ms = now_ms - self.config.release_grace.as_millis() as i64;
        for (node, endpoint) in &self.config.nodes {
            let claims = match self.get(endpoint, "/v1/claims") {
                Ok(c) => c,
                Err(Unreachable(why)) => {
                    eprintln!("numafit serve: releasing claims of gone pods: node {node}: {why}");
                    continue;
                }
            };
            let held: Vec<(&str, &str)> = claims
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|c| c["created_unix_ms"].as_i64().is_some_and(|t| t <= before_ms))
                .filter_map(|c| c["instance"].as_str())
                .filter_map(|i| Some((i, kube::pod::uid_of_claim(i)?)))
                .collect();
            if held.is_empty() {
                continue;
            }
            let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{}", percent_encoded(node));
            let listed_at = Instant::now();
            let pods: kube::pod::PodList = match self
                .get(&api.endpoint, &path)
                .and_then(|v| serde_json::from_value(v).map_err(|e| Unreachable(format!("GET {path}: not a PodList: {e}"))))
            {
                Ok(p) => p,
                Err(Unreachable(why)) => {
                    eprintln!("numafit serve: releasing claims of gone pods: API server: {why}; node {node} keeps its claims");
                    continue;
                }
            };
            let holding = pods.holding();
            let mut released = false;
            for (instance, uid) in held.into_iter().filter(|(_, uid)| !holding.contains(uid) && !self.binds.unsettled(uid, listed_at)) {
                match self.send("DELETE", endpoint, &format!("/v1/claims/{instance}"), None) {
                    Ok((200, _)) => {
                        eprintln!("numafit serve: node {node}: released claim {instance}: pod {uid} no longer holds it");
                        released = true;
                    }
                    Ok((status, answer)) => eprintln!("numafit serve: node {node}: releasing claim {instance}: {status}: {answer}"),
                    Err(Unreachable(why)) => eprintln!("numafit serve: node {node}: releasing claim {instance}: {why}"),
                }
            }
            if released {
                let _ = self.refresh(node);
            }
        }
        // A bind that ended before this pass began is settled for every later list.
        self.binds.settle_before(pass_started);
    }

    fn endpoint(&self, node: &str) -> Option<&Endpoint> {
        self.config.nodes.get(node)
    }

    /// Fetches a node's truth now and keeps it. A node that does not answer is dropped from the
    /// inventory (its pods go unresolvable, not onto a stale view) and not asked again by a filter
    /// until `refresh_ms` has passed: one dead node does not stall every pod by the timeout.
    fn refresh(&self, node: &str) -> Result<Arc<Snapshot>, Unreachable> {
        let fetched = self.fetch(node);
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match &fetched {
            Ok(_) => {
                down.remove(node);
            }
            Err(Unreachable(why)) => {
                self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).remove(node);
                down.insert(node.to_string(), (Instant::now(), why.clone()));
            }
        }
        fetched
    }

    fn fetch(&self, node: &str) -> Result<Arc<Snapshot>, Unreachable> {
        let endpoint = self.endpoint(node).ok_or_else(|| Unreachable("no node service is configured for it".into()))?;
        let known = self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).get(node).cloned();
        let base = match &known {
            Some(s) => s.base.clone(),
            None => {
                let host = host_of(&self.get(endpoint, "/v1/topology")?, node)?;
                Arc::new(Base { shown: contract::host_view(&host), host, loaded: Mutex::new(None) })
            }
        };
        let status = self.get(endpoint, "/v1/status")?;
        let generation = status["generation"].as_i64().ok_or_else(|| Unreachable("GET /v1/status: no generation".into()))?;
        let host = host_of(&status["host"], node)?;
        // Unchanged since: keep the snapshot, and the host the policy has loaded with it.
        if let Some(s) = known.filter(|s| s.generation == generation && s.host == host) {
            return Ok(s);
        }
        let shown = contract::host_view(&host);
        let index = verify::HostIndex::of(&shown);
        let snapshot = Arc::new(Snapshot { generation, host, shown, index, base, loaded: Mutex::new(None) });
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).insert(node.to_string(), snapshot.clone());
        Ok(snapshot)
    }

    /// The node's snapshot: the one kept, else fetched now (unless it failed within `refresh_ms`).
    fn snapshot(&self, node: &str) -> Result<Arc<Snapshot>, Unreachable> {
        if let Some(s) = self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).get(node) {
            return Ok(s.clone());
        }
        if let Some((at, why)) = self.down.lock().unwrap_or_else(|p| p.into_inner()).get(node) {
            if at.elapsed() < self.config.refresh {
                return Err(Unreachable(why.clone()));
            }
        }
        self.refresh(node)
    }

    /// What the last filter placed for this pod under this policy.
    fn fitted(&self, uid: &str, policy_sha256: &str) -> Option<Arc<Fitted>> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.0.get(uid)?.fitted.clone().filter(|f| f.policy_sha256 == policy_sha256)
    }

    fn keep_fitted(&self, uid: &str, fitted: Fitted) {
        if let Some(r) = self.pods.lock().unwrap_or_else(|p| p.into_inner()).0.get_mut(uid) {
            r.fitted = Some(Arc::new(fitted));
        }
    }

    fn remember(&self, uid: &str, pod: &Pod, request: &RequestJson) {
        if uid.is_empty() {
            return;
        }
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *pods;
        let key = pod.key();
        if map.get(uid).is_some_and(|r| r.key == key && &r.request == request) {
            return;
        }
        if map.insert(uid.to_string(), Remembered { request: request.clone(), key, fitted: None }).is_none() {
            order.push_back(uid.to_string());
        }
        while order.len() > PODS_REMEMBERED {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

/// `s` for a URL query value: RFC 3986's unreserved characters as they are, every other byte
/// percent-encoded.
fn percent_encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn host_of(v: &Value, node: &str) -> Result<HostTopology, Unreachable> {
    let what = format!("node {node}'s host");
    let json: HostJson = serde_json::from_value(v.clone()).map_err(|e| Unreachable(format!("{what}: {e}")))?;
    json.to_record(&what).map_err(|e| Unreachable(e.to_string()))
}

/// One candidate's verdict.
enum Verdict {
    /// Fits, with its score (0 unless scored).
    Fits(f64),
    /// Does not fit now; `resolvable` when it fits the node empty (preemption could help).
    Rejected { why: String, resolvable: bool },
}

/// The pod's request as the serving policy states it.
fn pod_request(pod_json: &Value, worker: &mut Plugin) -> Result<(Pod, RequestJson, wit::Request), String> {
    let pod: Pod = serde_json::from_value(pod_json.clone()).map_err(|e| format!("field Pod: {e}"))?;
    let what = format!("pod {}", pod.key());
    let json = pod.request().map_err(|e| format!("{what}: {e}"))?;
    let request =
        crate::placing::request_of(&json, &what, |f| worker.request_from_flavor(f).map_err(Failure::Plugin)).map_err(|e| e.to_string())?;
    Ok((pod, json, request))
}

/// Judges the pod on every candidate, in the order given, in one fit-many call (and one more over
/// the empty bases of those rejected, to tell which are unresolvable).
fn judge(app: &App, names: &[String], pod_json: &Value, scored: bool) -> Result<(Pod, Vec<(String, Verdict)>), String> {
    let cluster = app.cluster.as_ref().ok_or("this service has no --cluster")?;
    let inner = &cluster.inner;
    let active = app.policies.current();
    let mut worker = active.pool.take();
    let (pod, json, request) = pod_request(pod_json, &mut worker)?;
    inner.remember(&pod.metadata.uid, &pod, &json);
    let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(names.len());
    let mut known = Vec::new();
    for name in names {
        match inner.snapshot(name) {
            Ok(s) => {
                known.push((verdicts.len(), s));
                verdicts.push(None);
            }
            Err(Unreachable(why)) => verdicts.push(Some(Verdict::Rejected { why: format!("numafit: {why}"), resolvable: false })),
        }
    }
    let limits = &app.fit_limits;
    // Only prioritize scores: a filter asks which fit.
    let weights = scored.then_some(&inner.config.weights);
    // Each snapshot as the serving policy has it loaded; one it refuses to load is unresolvable.
    let mut loaded = Vec::with_capacity(known.len());
    let mut judged_known = Vec::with_capacity(known.len());
    for (i, s) in &known {
        match loaded_into(&s.loaded, &s.shown, &mut worker)? {
            Ok(l) => {
                loaded.push(l);
                judged_known.push((*i, s));
            }
            Err(why) => {
                verdicts[*i] = Some(Verdict::Rejected { why: format!("numafit: the policy refuses the host: {why}"), resolvable: false })
            }
        }
    }
    // Prioritize follows the filter of the same pod: the placements it found on nodes that have
    // not moved since are judged again (checked and scored), not fitted again.
    let uid = &pod.metadata.uid;
    let fitted = if scored { inner.fitted(uid, &active.version.sha256) } else { None };
    let mut answers: Vec<Option<Result<wit::Placement, wit::Rejection>>> = judged_known
        .iter()
        .map(|(i, s)| {
            let (generation, p) = fitted.as_ref()?.placements.get(&names[*i])?;
            (*generation == s.generation).then(|| Ok(p.clone()))
        })
        .collect();
    let ask: Vec<Arc<LoadedHost>> = loaded.into_iter().zip(&answers).filter(|(_, a)| a.is_none()).map(|(l, _)| l).collect();
    if !ask.is_empty() {
        let asked = worker.fit_loaded_many(&ask, &request, limits).map_err(|e| e.to_string())?;
        if asked.len() != ask.len() {
            return Err(format!("plugin {}: fit-many answered {} hosts, asked {}", worker.name(), asked.len(), ask.len()));
        }
        for (a, answer) in answers.iter_mut().filter(|a| a.is_none()).zip(asked) {
            *a = Some(answer);
        }
    }
    // Every position is answered now: reused, or asked.
    let answers: Vec<Result<wit::Placement, wit::Rejection>> = answers.into_iter().flatten().collect();
    let candidates: Vec<fleet::Candidate> = judged_known
        .iter()
        .map(|(i, s)| fleet::Candidate { name: &names[*i], host: &s.host, shown: &s.shown, index: Some(&s.index) })
        .collect();
    let scores = fleet::check(worker.name(), &candidates, &request, limits, weights, &answers).map_err(|e| e.to_string())?;
    // `check` scores every placement it accepts (and refuses the call otherwise).
    let judged: Vec<Result<f64, String>> = scores
        .iter()
        .zip(&answers)
        .map(|(score, answer)| match answer {
            Ok(_) => Ok(score.unwrap_or(0.0)),
            Err(r) => Err(format!("numafit: {}", r.summary)),
        })
        .collect();
    if !scored {
        // Checked placements, kept (moved, not copied) for the prioritize of the same pod.
        let placements =
            judged_known.iter().zip(answers).filter_map(|((i, s), a)| Some((names[*i].clone(), (s.generation, a.ok()?)))).collect();
        inner.keep_fitted(uid, Fitted { policy_sha256: active.version.sha256.clone(), placements });
    }
    // Those rejected, on their node empty: a pod that fits none of them so is unresolvable there.
    let rejected: Vec<usize> = judged.iter().enumerate().filter(|(_, h)| h.is_err()).map(|(k, _)| k).collect();
    let mut empty = Vec::with_capacity(rejected.len());
    for &k in &rejected {
        let base = &judged_known[k].1.base;
        empty.push(loaded_into(&base.loaded, &base.shown, &mut worker)?);
    }
    let on_empty: Vec<Arc<LoadedHost>> = empty.iter().filter_map(|l| l.as_ref().ok().cloned()).collect();
    let mut fits_empty =
        if on_empty.is_empty() { Vec::new() } else { worker.fit_loaded_many(&on_empty, &request, limits).map_err(|e| e.to_string())? }
            .into_iter();
    let mut resolvable = vec![false; judged.len()];
    for (&k, l) in rejected.iter().zip(&empty) {
        resolvable[k] = l.is_ok() && fits_empty.next().is_some_and(|a| a.is_ok());
    }
    for (k, ((i, _), h)) in judged_known.iter().zip(judged).enumerate() {
        verdicts[*i] = Some(match h {
            Ok(score) => Verdict::Fits(score),
            Err(why) => Verdict::Rejected { why, resolvable: resolvable[k] },
        });
    }
    let verdicts = names
        .iter()
        .cloned()
        .zip(verdicts.into_iter().map(|v| v.unwrap_or(Verdict::Rejected { why: "not judged".into(), resolvable: false })));
    Ok((pod, verdicts.collect()))
}

fn json_answer(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], answer_text(body)).into_response()
}

fn answer_text(body: &impl serde::Serialize) -> String {
    serde_json::to_string(body).unwrap_or_else(|e| json!({ "Error": format!("the answer did not serialize: {e}") }).to_string())
}

async fn off_workers<T: Send + 'static>(app: Arc<App>, f: impl FnOnce(&App) -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(move || f(&app)).await.map_err(|e| format!("the request's worker failed: {e}"))
}

fn parse_args(body: &[u8]) -> Result<(ExtenderArgs<'_>, Vec<String>), String> {
    let args: ExtenderArgs = serde_json::from_slice(body).map_err(|e| format!("ExtenderArgs: {e}"))?;
    let names = args.names().map_err(|e| format!("ExtenderArgs: {e}"))?;
    Ok((args, names))
}

/// `POST /scheduler/filter`: `ExtenderArgs` -> `ExtenderFilterResult`.
pub async fn filter(State(app): State<Arc<App>>, body: Bytes) -> Response {
    // The answer is serialized here: its Node objects are borrowed from the body.
    let run = move |app: &App| -> (StatusCode, String) {
        let answer = |status: StatusCode, result: &ExtenderFilterResult| (status, answer_text(result));
        let (args, names) = match parse_args(&body) {
            Ok(a) => a,
            Err(e) => return answer(StatusCode::BAD_REQUEST, &ExtenderFilterResult { error: e, ..Default::default() }),
        };
        let (_, verdicts) = match judge(app, &names, &args.pod, false) {
            Ok(v) => v,
            Err(e) => return answer(StatusCode::OK, &ExtenderFilterResult { error: e, ..Default::default() }),
        };
        let mut result = ExtenderFilterResult::default();
        let mut fits = Vec::new();
        for (name, v) in verdicts {
            match v {
                Verdict::Fits(_) => fits.push(name),
                Verdict::Rejected { why, resolvable: true } => {
                    result.failed_nodes.insert(name, why);
                }
                Verdict::Rejected { why, resolvable: false } => {
                    result.failed_and_unresolvable_nodes.insert(name, why);
                }
            }
        }
        match args.nodes {
            // Answered in the form asked: the Node objects as sent, or their names.
            Some(list) => {
                // In the order sent: `names` is that order, the i-th name the i-th item's.
                let fitting: std::collections::HashSet<&str> = fits.iter().map(String::as_str).collect();
                let items =
                    list.items.into_iter().zip(&names).filter(|(_, n)| fitting.contains(n.as_str())).map(|(item, _)| item).collect();
                result.nodes = Some(NodeList { metadata: list.metadata, items });
            }
            None => result.node_names = Some(fits),
        }
        answer(StatusCode::OK, &result)
    };
    match off_workers(app, run).await {
        Ok((status, text)) => (status, [(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => json_answer(StatusCode::INTERNAL_SERVER_ERROR, &ExtenderFilterResult { error: e, ..Default::default() }),
    }
}

/// `POST /scheduler/prioritize`: `ExtenderArgs` -> `HostPriorityList`, the weighers' score in
/// [0, 1] as 0..=10; a node the pod does not fit scores 0.
pub async fn prioritize(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let run = move |app: &App| -> Result<Vec<HostPriority>, (StatusCode, String)> {
        let (args, names) = parse_args(&body).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let (_, verdicts) = judge(app, &names, &args.pod, true).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
        Ok(verdicts
            .into_iter()
            .map(|(host, v)| {
                let score = match v {
                    Verdict::Fits(score) => (score.clamp(0.0, 1.0) * extender::MAX_PRIORITY as f64).round() as i64,
                    Verdict::Rejected { .. } => 0,
                };
                HostPriority { host, score }
            })
            .collect())
    };
    match off_workers(app, run).await {
        Ok(Ok(list)) => json_answer(StatusCode::OK, &list),
        Ok(Err((status, e))) => json_answer(status, &json!({ "Error": e })),
        Err(e) => json_answer(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "Error": e })),
    }
}

/// `POST /scheduler/bind`: claims on the node's service, then creates the Binding.
pub async fn bind(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let run = move |app: &App| -> (StatusCode, String) {
        let args: ExtenderBindingArgs = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("ExtenderBindingArgs: {e}")),
        };
        match bind_pod(app, &args) {
            Ok(()) => (StatusCode::OK, String::new()),
            Err(e) => (StatusCode::OK, e),
        }
    };
    match off_workers(app, run).await {
        Ok((status, error)) => json_answer(status, &ExtenderBindingResult { error }),
        Err(e) => json_answer(StatusCode::INTERNAL_SERVER_ERROR, &ExtenderBindingResult { error: e }),
    }
}

/// A namespace or pod name as the API server accepts them (a DNS-1123 subdomain): what a bind
/// puts in an API path, so nothing else (`..`, `/`, `?`) reaches the API server's URL.
fn check_name(field: &str, v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("numafit: field {field}: {v:?} is not a Kubernetes name (lowercase letters, digits, '-' and '.', at most 253)"))
    }
}

fn bind_pod(app: &App, args: &ExtenderBindingArgs) -> Result<(), String> {
    check_name("PodNamespace", &args.pod_namespace)?;
    check_name("PodName", &args.pod_name)?;
    kube::pod::check_uid("PodUID", &args.pod_uid)?;
    let instance = kube::pod::claim_instance(&args.pod_uid);
    let cluster = app.cluster.as_ref().ok_or("this service has no --cluster")?;
    let inner = &cluster.inner;
    let pod_key = format!("{}/{}", args.pod_namespace, args.pod_name);
    let endpoint = inner.endpoint(&args.node).ok_or_else(|| format!("numafit: no node service is configured for node {:?}", args.node))?;
    let remembered = inner.pods.lock().unwrap_or_else(|p| p.into_inner()).0.get(&args.pod_uid).map(|r| (r.key.clone(), r.request.clone()));
    let request = match remembered {
        Some((key, _)) if key != pod_key => {
            return Err(format!("numafit: pod UID {} was filtered as {key}, not {pod_key}", args.pod_uid));
        }
        Some((_, request)) => request,
        None => {
            // Not filtered by this service (another replica, or a restart): read it.
            let api = inner
                .config
                .api
                .as_ref()
                .ok_or_else(|| format!("numafit: pod {pod_key} was not filtered here and no api_server is configured"))?;
            let path = format!("/api/v1/namespaces/{}/pods/{}", args.pod_namespace, args.pod_name);
            let pod: Pod =
                serde_json::from_value(inner.get(&api.endpoint, &path).map_err(|Unreachable(e)| format!("numafit: API server: {e}"))?)
                    .map_err(|e| format!("numafit: API server: pod {pod_key}: {e}"))?;
            pod.request().map_err(|e| format!("numafit: pod {pod_key}: {e}"))?
        }
    };
    let mut snapshot = inner.snapshot(&args.node).map_err(|Unreachable(e)| format!("numafit: node {}: {e}", args.node))?;
    let _in_flight = inner.binds.start(&args.pod_uid);
    let mut claimed = false;
    for attempt in 1..=BIND_ATTEMPTS {
        let body = json!({ "instance": instance, "request": request, "generation": snapshot.generation });
        let (status, answer) = inner
            .send("POST", endpoint, "/v1/claims", Some(&body))
            .map_err(|Unreachable(e)| format!("numafit: node {}: {e}", args.node))?;
        match status {
            200 | 201 => {
                claimed = true;
                break;
            }
            409 if answer["error"] == "StaleGeneration" && attempt < BIND_ATTEMPTS => {
                // Decide again on the node's new truth: claim only if the pod still fits it.
                snapshot = inner.refresh(&args.node).map_err(|Unreachable(e)| format!("numafit: node {}: {e}", args.node))?;
                if let Some(why) = judge_one(app, &snapshot, &request)? {
                    return Err(format!("numafit: node {} changed and no longer fits pod {pod_key}: {why}", args.node));
                }
            }
            _ => {
                let message = answer["message"].as_str().map_or_else(|| answer.to_string(), str::to_string);
                return Err(format!("numafit: node {} refused the claim of pod {pod_key} ({status}): {message}", args.node));
            }
        }
    }
    if !claimed {
        return Err(format!("numafit: node {} kept changing under {BIND_ATTEMPTS} claims of pod {pod_key}; schedule it again", args.node));
    }
    let bound = create_binding(inner, args);
    if let Err(e) = bound {
        let released = inner.send("DELETE", endpoint, &format!("/v1/claims/{instance}"), None);
        let released = matches!(released, Ok((200, _)));
        let _ = inner.refresh(&args.node);
        return Err(format!(
            "numafit: binding pod {pod_key} to node {} failed: {e}; its claim {}",
            args.node,
            if released { "was released" } else { "could not be released" }
        ));
    }
    // The node moved: the next decision sees it.
    let _ = inner.refresh(&args.node);
    Ok(())
}

/// The pod on one snapshot: `None` when it fits, else why not.
fn judge_one(app: &App, snapshot: &Snapshot, request: &RequestJson) -> Result<Option<String>, String> {
    let active = app.policies.current();
    let mut worker = active.pool.take();
    let r = crate::placing::request_of(request, "the pod's request", |f| worker.request_from_flavor(f).map_err(Failure::Plugin))
        .map_err(|e| e.to_string())?;
    let answer = worker.fit(&snapshot.shown, &r, &app.fit_limits).map_err(|e| e.to_string())?;
    Ok(answer.err().map(|r| r.summary))
}

fn create_binding(inner: &Inner, args: &ExtenderBindingArgs) -> Result<(), String> {
    let api = inner.config.api.as_ref().ok_or("no api_server is configured")?;
    let path = format!("/api/v1/namespaces/{}/pods/{}/binding", args.pod_namespace, args.pod_name);
    let (status, answer) = inner.send("POST", &api.endpoint, &path, Some(&extender::binding(args))).map_err(|Unreachable(e)| e)?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        let message = answer["message"].as_str().map_or_else(|| answer.to_string(), str::to_string);
        Err(format!("the API server answered {status}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_claim_is_unsettled_while_any_of_its_binds_is_on_its_way_and_for_lists_asked_before_the_last_ended() {
        let book = BindBook::default();
        let before = Instant::now();
        assert!(!book.unsettled("uid-a", before), "no bind: a list decides");
        // A scheduler's retry overlaps the first bind: the first ending settles nothing.
        let first = book.start("uid-a");
        let retry = book.start("uid-a");
        drop(first);
        assert!(book.unsettled("uid-a", Instant::now()));
        assert!(!book.unsettled("uid-b", before), "another pod's bind is not this one's");
        drop(retry);
        assert!(book.unsettled("uid-a", before), "a list asked for before the Binding may not show it");
        std::thread::sleep(Duration::from_millis(2));
        let after = Instant::now();
        assert!(!book.unsettled("uid-a", after), "a list asked for after it does");
        book.settle_before(after);
        assert!(book.marks().is_empty(), "a settled bind is forgotten");
    }
}
