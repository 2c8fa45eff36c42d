//! The policy the service runs, and the ones it ran: a new version is compiled (or taken from the
//! artifact cache), its contract checked and its self-test passed off the request path, then
//! swapped in atomically. A request holds the version it started on to its end, so requests in
//! flight finish on the old one while new ones take the new.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use serde::Serialize;

use super::node::View;
use crate::ledger::PolicyVersion;
use crate::runtime::{CacheUse, LoadedHost, Plugin, PluginLimits, PluginPool};
use crate::selftest;

/// How many replaced versions are kept to roll back to.
const HISTORY: usize = 16;

/// One loaded, self-tested policy version.
pub struct Active {
    pub pool: PluginPool,
    pub version: PolicyVersion,
    pub contract: &'static str,
    /// Where it came from: a file, `PUT /v1/policy`, or the embedded policy.
    pub source: String,
    pub loaded_unix_ms: i64,
    pub selftest: selftest::Passed,
    /// Milliseconds from the bytes to a version ready to serve, and whether the cache had it.
    pub load_ms: f64,
    pub cached: bool,
    /// The newest view loaded into this version (`host-state`), so a dry-run fit sends only the
    /// request: the host crosses the boundary once per ledger change, not once per fit.
    shown: Mutex<Option<(Arc<View>, Arc<LoadedHost>)>>,
}

/// `GET /v1/policy`, and what a swap or rollback answers with.
#[derive(Serialize)]
pub struct PolicyJson<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub sha256: &'a str,
    pub contract: &'a str,
    pub source: &'a str,
    pub loaded_unix_ms: i64,
    pub load_ms: f64,
    pub cached_artifact: bool,
    pub selftest: &'a selftest::Passed,
}

impl Active {
    /// `view` loaded into this version: the cached one while the view is the same, else loaded
    /// by `worker`. None when the plugin refuses the host (the fit then sends it and answers
    /// with that refusal).
    pub fn loaded(&self, view: &Arc<View>, worker: &mut Plugin) -> anyhow::Result<Option<Arc<LoadedHost>>> {
        let cached = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, loaded)) = cached.as_ref() {
            if Arc::ptr_eq(v, view) {
                return Ok(Some(loaded.clone()));
            }
        }
        drop(cached);
        let Ok(loaded) = worker.load(view.shown.clone())? else {
            return Ok(None);
        };
        let loaded = Arc::new(loaded);
        *self.shown.lock().unwrap_or_else(|p| p.into_inner()) = Some((view.clone(), loaded.clone()));
        Ok(Some(loaded))
    }

    pub fn json(&self) -> PolicyJson<'_> {
        PolicyJson {
            name: &self.version.name,
            version: &self.version.version,
            sha256: &self.version.sha256,
            contract: self.contract,
            source: &self.source,
            loaded_unix_ms: self.loaded_unix_ms,
            load_ms: self.load_ms,
            cached_artifact: self.cached,
            selftest: &self.selftest,
        }
    }
}

/// A version refused: which plugin, at which stage, stopped by which limit or rule, and why.
#[derive(Debug, Serialize)]
pub struct Refused {
    pub plugin: String,
    /// `compile`, `contract` or `self-test`.
    pub stage: &'static str,
    /// For the self-test: `fuel`, `memory`, `deadline`, `trap` or `rule`.
    pub kind: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "policy {} refused at {} ({}): {}", self.plugin, self.stage, self.kind, self.reason)
    }
}

/// The contract versions this host speaks.
const CONTRACTS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"];

/// Compiles, checks and self-tests a version. Blocking: run it off the request path.
pub fn prepare(source: &str, bytes: &[u8], limits: PluginLimits, cache: Option<&std::path::Path>) -> Result<Active, Refused> {
    let started = Instant::now();
    let refuse = |stage, kind, reason: String| Refused { plugin: source.to_string(), stage, kind, reason };
    let mut plugin = Plugin::from_bytes_cached(source, bytes, limits, cache).map_err(|e| refuse("compile", "compile", format!("{e:#}")))?;
    let cached = matches!(plugin.cache_use(), CacheUse::Hit);
    let info = plugin.info().map_err(|e| refuse("contract", "trap", format!("info(): {e:#}")))?;
    let contract = plugin.contract();
    if info.contract != contract || !CONTRACTS.contains(&contract) {
        return Err(refuse(
            "contract",
            "contract",
            format!("info() says contract {:?}, but the component exports contract {contract}'s interfaces", info.contract),
        ));
    }
    if info.name.is_empty() || info.version.is_empty() {
        return Err(refuse("contract", "contract", "info() gives an empty name or version".into()));
    }
    let passed = selftest::run(&mut plugin).map_err(|f| refuse("self-test", f.kind, f.reason))?;
    let version = PolicyVersion { name: info.name, version: info.version, sha256: plugin.sha256().to_string() };
    Ok(Active {
        pool: PluginPool::new(plugin),
        version,
        contract,
        source: source.to_string(),
        loaded_unix_ms: now_unix_ms(),
        selftest: passed,
        load_ms: started.elapsed().as_secs_f64() * 1e3,
        shown: Mutex::new(None),
        cached,
    })
}

/// The current version and the ones it replaced.
pub struct Policies {
    current: ArcSwap<Active>,
    previous: Mutex<Vec<Arc<Active>>>,
    /// One swap at a time: two racing swaps would each push the other's predecessor.
    swapping: Mutex<()>,
    pub limits: PluginLimits,
    pub cache: Option<PathBuf>,
}

impl Policies {
    pub fn new(first: Active, limits: PluginLimits, cache: Option<PathBuf>) -> Policies {
        Policies { current: ArcSwap::from_pointee(first), previous: Mutex::new(Vec::new()), swapping: Mutex::new(()), limits, cache }
    }

    /// The version a request runs on, held to its end.
    pub fn current(&self) -> Arc<Active> {
        self.current.load_full()
    }

    /// Prepares `bytes` and, if they pass, makes them the current version. Blocking.
    pub fn swap(&self, source: &str, bytes: &[u8]) -> Result<Arc<Active>, Refused> {
        let next = Arc::new(prepare(source, bytes, self.limits, self.cache.as_deref())?);
        let _one = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current.swap(next.clone());
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        previous.push(old);
        if previous.len() > HISTORY {
            previous.remove(0);
        }
        Ok(next)
    }

    /// Makes the version before the current one current again; none when there is none.
    pub fn rollback(&self) -> Option<Arc<Active>> {
        let _one = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
        let back = self.previous.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        self.current.store(back.clone());
        Some(back)
    }
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
