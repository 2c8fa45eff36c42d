//! Loads placement policy components and calls them under limits: every call runs with a fuel
//! budget and a wall-clock deadline (an endless or merely slow loop ends as an error) and a memory
//! cap (a memory bomb ends as an error),
//! and a plugin that traps is reported by name and replaced by a fresh instance for the next call.
//! Compiled components are cached on disk, keyed by their bytes and the engine, so start-up does
//! not recompile.
//!
//! The host speaks contract 0.5 (`wit/0.5.0`) through its `bindgen!` bindings, interface by
//! interface: 0.2's `policy`, 0.3's `requests` (loaded requests), 0.4's `batch` (a batch's
//! answers as columns) and 0.5's `packed` (placements packed, filled in here from the loaded
//! request) when the plugin has them. A 0.4 plugin keeps loading, asked through 0.3's `fit` and
//! 0.4's `fit-batch`; a 0.3 plugin too, its batches answered one record per host; a 0.2 plugin
//! too, its loaded requests kept on this side. A plugin built against 0.1
//! (`wit/0.1.0`: functions at the component's top level, a record per vCPU in requests and
//! placements, no `host-state`) keeps loading too: its functions are looked up by name, requests and
//! placements are converted, and loaded hosts and requests are kept on this side.

use std::borrow::Borrow;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context, Result};
use wasmtime::component::{Linker, ResourceAny};
use wasmtime::{Engine, ResourceLimiter, Store};

pub mod cache;
mod exports;
mod handles;
mod limits;
mod memory;
mod pool;

pub use cache::CacheUse;
pub use handles::{LoadedHost, LoadedRequest};
pub use limits::{PluginError, PluginLimits, EPOCH_TICK};
pub use pool::{PluginPool, PooledPlugin};

/// The runtime's settings from the environment (`NUMAFIT_HUGE_PAGES`), checked: a front end asks
/// before it starts, so a mistyped value is the operator's error, not a plugin's failure.
pub fn check_environment() -> std::result::Result<(), String> {
    memory::wanted().map(drop)
}

use exports::{call_typed, Exports, LegacyIndices, Pre, BATCH_INTERFACE, PACKED_INTERFACE, REQUESTS_INTERFACE};
use handles::{next_id, HandleBook, Handles};
use limits::{engine, State};

use crate::contract::latest::{batch, convert_batch, packed, requests};
use crate::contract::v0_1::{self, placement_from_0_1, placement_to_0_1, request_from_0_1, request_to_0_1};
/// The contract's types as the host sees them (the latest contract's).
pub use crate::contract::wit;
pub use crate::contract::{cell_ids, cpu_rows, placement_from_rows, placement_rows, CpuRow, PlacedCellRows};

/// The default `nova` policy, built from this workspace's `plugin/` crate.
pub static EMBEDDED_NOVA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/nova.wasm"));
/// The `balanced` policy, built from the same crate.
pub static EMBEDDED_BALANCED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/balanced.wasm"));
/// Their SHA-256 (hex), computed when they were built.
static EMBEDDED_NOVA_SHA256: &str = include_str!(concat!(env!("OUT_DIR"), "/nova.wasm.sha256"));
static EMBEDDED_BALANCED_SHA256: &str = include_str!(concat!(env!("OUT_DIR"), "/balanced.wasm.sha256"));

/// A loaded policy component, ready to call.
///
/// A `Plugin` is one worker: it calls the guest in one instance (one `Store`) at a time. For many
/// threads, `Plugin::worker` gives each its own worker of the same compiled policy (or a
/// `PluginPool` lends them out); loaded hosts and requests may be shared between the workers of
/// one plugin, and each worker loads them into its own instance when it first uses them.
pub struct Plugin {
    shared: Arc<Shared>,
    live: Option<Live>,
}

/// What every worker of one loaded policy shares: the compiled component and its identity.
struct Shared {
    /// Unique in this process: handles made by this plugin's workers carry it.
    id: u64,
    name: String,
    /// The component's SHA-256 (hex): which code a recorded placement came from.
    sha256: String,
    engine: Engine,
    pre: Pre,
    limits: PluginLimits,
    cache_use: CacheUse,
    book: Arc<HandleBook>,
    /// The name the policy gives itself (`info`), which its packed placements (0.5) leave out.
    policy_name: OnceLock<Arc<str>>,
}

/// One live instance of a worker.
struct Live {
    id: u64,
    store: Store<State>,
    exports: Exports,
    book: Arc<HandleBook>,
}

impl Live {
    /// The resources of handles dropped since this instance's last call, to free before the next
    /// one (nothing to allocate or move when there are none: the common case of every fit).
    fn take_dropped(&self) -> Vec<ResourceAny> {
        if !self.book.may_have_dropped() {
            return Vec::new();
        }
        let mut book = self.book.lock();
        let mut mine = Vec::new();
        book.dropped.retain(|&(i, r)| {
            let is_mine = i == self.id;
            if is_mine {
                mine.push(r);
            }
            !is_mine
        });
        self.book.note_pending(&book);
        mine
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // The instance's resources go with its store: nothing of it is left to free.
        let mut book = self.book.lock();
        book.alive.remove(&self.id);
        let id = self.id;
        book.dropped.retain(|(i, _)| *i != id);
        self.book.note_pending(&book);
    }
}

impl Plugin {
    /// The embedded default policy.
    pub fn embedded(limits: PluginLimits) -> Result<Plugin> {
        Plugin::from_bytes_digest("nova (embedded)", EMBEDDED_NOVA, Some(EMBEDDED_NOVA_SHA256), limits, cache::default_dir().as_deref())
    }

    /// An embedded policy by name: `nova` or `balanced`.
    pub fn embedded_named(name: &str, limits: PluginLimits) -> Result<Plugin> {
        match name {
            "nova" => Plugin::embedded(limits),
            "balanced" => Plugin::from_bytes_digest(
                "balanced (embedded)",
                EMBEDDED_BALANCED,
                Some(EMBEDDED_BALANCED_SHA256),
                limits,
                cache::default_dir().as_deref(),
            ),
            other => Err(anyhow!("no embedded policy {other:?}: nova or balanced")),
        }
    }

    pub fn from_file(path: &Path, limits: PluginLimits) -> Result<Plugin> {
        let bytes = std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))?;
        Plugin::from_bytes(&path.display().to_string(), &bytes, limits)
    }

    /// Loads a component, with the artifact cache in `$NUMAFIT_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/numafit`, else `~/.cache/numafit`.
    pub fn from_bytes(name: &str, bytes: &[u8], limits: PluginLimits) -> Result<Plugin> {
        Plugin::from_bytes_cached(name, bytes, limits, cache::default_dir().as_deref())
    }

    /// Loads a component, caching its compiled artifact in `cache` (none: compile every time).
    pub fn from_bytes_cached(name: &str, bytes: &[u8], limits: PluginLimits, cache: Option<&Path>) -> Result<Plugin> {
        Plugin::from_bytes_digest(name, bytes, None, limits, cache)
    }

    /// `from_bytes_cached`, with the bytes' SHA-256 when it is known already.
    fn from_bytes_digest(name: &str, bytes: &[u8], sha256: Option<&str>, limits: PluginLimits, cache: Option<&Path>) -> Result<Plugin> {
        // Say what the file is in the user's terms before the parser does in its own.
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(anyhow!(
                    "plugin {name} is a core WebAssembly module, not a component: turn it into one with \
                     `wasm-tools component new` (or the wit-component crate) against the numafit:policy world"
                ))
            }
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            _ => return Err(anyhow!("plugin {name} is not a WebAssembly component (it does not start with the \\0asm header)")),
        }
        let engine = engine()?;
        let sha256 = sha256.map_or_else(|| cache::sha256(bytes), str::to_string);
        let (component, cache_use) =
            cache::load(&engine, bytes, &sha256, cache).with_context(|| format!("loading plugin {name}: not a valid component"))?;
        let linker = Linker::<State>::new(&engine);
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {name} needs imports numafit does not provide: a policy must import nothing"))?;
        let pre = match wit::GuestIndices::new(&pre) {
            Ok(policy) => {
                // No `requests` export: a 0.2 plugin. One that is there must be 0.3's.
                let requests = match component.get_export_index(None, REQUESTS_INTERFACE) {
                    None => None,
                    Some(_) => Some(
                        requests::GuestIndices::new(&pre)
                            .map_err(anyhow::Error::from)
                            .with_context(|| format!("plugin {name} exports {REQUESTS_INTERFACE}, but not as contract 0.3 defines it"))?,
                    ),
                };
                // `batch` takes a loaded request: only a plugin with `requests` can have it.
                let batch = match component.get_export_index(None, BATCH_INTERFACE) {
                    Some(_) if requests.is_some() => Some(
                        batch::GuestIndices::new(&pre)
                            .map_err(anyhow::Error::from)
                            .with_context(|| format!("plugin {name} exports {BATCH_INTERFACE}, but not as contract 0.4 defines it"))?,
                    ),
                    Some(_) => return Err(anyhow!("plugin {name} exports {BATCH_INTERFACE} without {REQUESTS_INTERFACE}, which it needs")),
                    None => None,
                };
                // `packed` takes a loaded request too.
                let packed = match component.get_export_index(None, PACKED_INTERFACE) {
                    Some(_) if requests.is_some() => Some(
                        packed::GuestIndices::new(&pre)
                            .map_err(anyhow::Error::from)
                            .with_context(|| format!("plugin {name} exports {PACKED_INTERFACE}, but not as contract 0.5 defines it"))?,
                    ),
                    Some(_) => {
                        return Err(anyhow!("plugin {name} exports {PACKED_INTERFACE} without {REQUESTS_INTERFACE}, which it needs"))
                    }
                    None => None,
                };
                Pre::Current { pre, policy, requests, batch, packed }
            }
            Err(current_err) => match LegacyIndices::find(&component) {
                Some(funcs) => Pre::V0_1 { pre, funcs },
                None => {
                    return Err(anyhow::Error::from(current_err)).with_context(|| {
                        format!("plugin {name} exports neither the numafit:policy@0.2.0 nor the @0.1.0 placement-policy world")
                    })
                }
            },
        };
        let shared = Shared {
            id: next_id(),
            name: name.to_string(),
            sha256,
            engine,
            pre,
            limits,
            cache_use,
            book: Arc::default(),
            policy_name: OnceLock::new(),
        };
        Ok(Plugin { shared: Arc::new(shared), live: None })
    }

    /// Another worker of the same compiled policy, with an instance of its own (made on first
    /// use): for another thread. It accepts the handles this plugin's workers made.
    pub fn worker(&self) -> Plugin {
        Plugin { shared: self.shared.clone(), live: None }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether `loaded` was made by this plugin (or another worker of it), so its fits may use it.
    pub fn made(&self, loaded: &LoadedHost) -> bool {
        loaded.handles.plugin == self.shared.id
    }

    /// The SHA-256 (hex) of the component's bytes.
    pub fn sha256(&self) -> &str {
        &self.shared.sha256
    }

    /// What loading did with the compile cache (a refused directory or a discarded artifact is
    /// worth a warning).
    pub fn cache_use(&self) -> &CacheUse {
        &self.shared.cache_use
    }

    /// The contract version the plugin's exports follow: "0.5.0", "0.4.0", "0.3.0", "0.2.0" or "0.1.0".
    pub fn contract(&self) -> &'static str {
        match self.shared.pre {
            Pre::Current { packed: Some(_), .. } => "0.5.0",
            Pre::Current { batch: Some(_), .. } => "0.4.0",
            Pre::Current { requests: Some(_), .. } => "0.3.0",
            Pre::Current { requests: None, .. } => "0.2.0",
            Pre::V0_1 { .. } => "0.1.0",
        }
    }

    fn fresh_instance(&self) -> Result<Live> {
        let shared = &self.shared;
        let mut store = Store::new(&shared.engine, State { memory_cap: shared.limits.memory_bytes, cap_hit: false, memory_bytes: 0 });
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.set_fuel(shared.limits.fuel)?;
        store.set_epoch_deadline(shared.limits.deadline_ticks());
        let started = limits::now();
        let exports = match &shared.pre {
            Pre::Current { pre, policy, requests, batch, packed } => pre.instantiate(&mut store).and_then(|instance| {
                let policy = policy.load(&mut store, &instance)?;
                let requests = requests.as_ref().map(|r| r.load(&mut store, &instance)).transpose()?;
                let batch = batch.as_ref().map(|b| b.load(&mut store, &instance)).transpose()?;
                let packed = packed.as_ref().map(|p| p.load(&mut store, &instance)).transpose()?;
                Ok(Exports::Current { policy, requests, batch, packed })
            }),
            Pre::V0_1 { pre, funcs } => {
                pre.instantiate(&mut store).and_then(|instance| funcs.funcs(&mut store, &instance)).map(Exports::V0_1)
            }
        };
        let exports = exports.map_err(|e| self.classify(e, store.data().cap_hit, started))?;
        let id = next_id();
        shared.book.lock().alive.insert(id);
        Ok(Live { id, store, exports, book: shared.book.clone() })
    }

    fn classify(&self, e: wasmtime::Error, cap_hit: bool, started: u64) -> anyhow::Error {
        let plugin = self.shared.name.clone();
        let limits = self.shared.limits;
        let err = match e.downcast_ref::<wasmtime::Trap>() {
            _ if cap_hit => PluginError::MemoryCap { plugin, mib: limits.memory_bytes >> 20 },
            Some(wasmtime::Trap::OutOfFuel) => PluginError::OutOfFuel { plugin, fuel: limits.fuel },
            Some(wasmtime::Trap::Interrupt) => {
                PluginError::Deadline { plugin, deadline_ms: limits.deadline.as_millis(), elapsed_ms: limits::elapsed_ms(started) }
            }
            Some(trap) => PluginError::Trap { plugin, trap: trap.to_string() },
            None => PluginError::Trap { plugin, trap: format!("{e:#}") },
        };
        anyhow!(err)
    }

    /// Runs one export on the live instance (made on first use), with a full fuel budget, after
    /// freeing the resources of handles dropped since its last call. After a trap the instance is
    /// dropped: a trapped instance may not be entered again.
    fn call<T>(&mut self, f: impl FnOnce(&Exports, &mut Store<State>) -> wasmtime::Result<T>) -> Result<T> {
        let fuel = self.shared.limits.fuel;
        let ticks = self.shared.limits.deadline_ticks();
        let live = self.live()?;
        let dropped = live.take_dropped();
        // The instance stays in place (no move per call); it is dropped only after a failure.
        let store = &mut live.store;
        let started = limits::now();
        store.set_epoch_deadline(ticks);
        let outcome = store
            .set_fuel(fuel)
            .and_then(|()| dropped.into_iter().try_for_each(|r| r.resource_drop(&mut *store)))
            .and_then(|()| f(&live.exports, store))
            .map_err(|e| (e, store.data().cap_hit));
        outcome.map_err(|(e, cap_hit)| {
            self.live = None;
            self.classify(e, cap_hit, started)
        })
    }

    /// The live instance, made when there is none.
    fn live(&mut self) -> Result<&mut Live> {
        if self.live.is_none() {
            self.live = Some(self.fresh_instance()?);
        }
        self.live.as_mut().ok_or_else(|| anyhow!("plugin {}: no instance", self.shared.name))
    }

    /// The live instance's id, making the instance when there is none.
    fn live_id(&mut self) -> Result<u64> {
        self.live().map(|l| l.id)
    }

    /// Refuses a handle another plugin made: its resources index another store, and after a hot
    /// swap another policy's view of the host.
    fn check_owner(&self, handles: &Handles, what: &str) -> Result<()> {
        if handles.plugin == self.shared.id {
            return Ok(());
        }
        Err(anyhow!(
            "a loaded {what} made by plugin {} (#{}) was offered to plugin {} (#{}): load it into this plugin",
            handles.plugin_name,
            handles.plugin,
            self.shared.name,
            self.shared.id
        ))
    }

    /// Fuel the last call burned (about one unit per wasm instruction).
    pub fn fuel_used(&self) -> Option<u64> {
        self.live.as_ref().and_then(|l| l.store.get_fuel().ok()).map(|left| self.shared.limits.fuel - left)
    }

    /// Linear memory of the live instance, in bytes (none before the first call or after a trap).
    pub fn memory_bytes(&self) -> Option<usize> {
        self.live.as_ref().map(|l| l.store.data().memory_bytes)
    }

    pub fn info(&mut self) -> Result<wit::PluginInfo> {
        self.call(|e, s| match e {
            Exports::Current { policy: p, .. } => p.call_info(s),
            Exports::V0_1(f) => call_typed(f.info, s, ()).map(|(r,)| r),
        })
    }

    pub fn request_from_flavor(&mut self, flavor: &wit::Flavor) -> Result<Result<wit::Request, wit::RequestError>> {
        self.call(|e, s| match e {
            Exports::Current { policy: p, .. } => p.call_request_from_flavor(s, flavor),
            Exports::V0_1(f) => call_typed::<_, (Result<v0_1::Request, wit::RequestError>,)>(f.request_from_flavor, s, (flavor,))
                .map(|(r,)| r.map(request_from_0_1)),
        })
    }

    pub fn fit(
        &mut self,
        host: &wit::Host,
        request: &wit::Request,
        limits: &wit::Limits,
    ) -> Result<Result<wit::Placement, wit::Rejection>> {
        self.call(|e, s| match e {
            Exports::Current { policy: p, .. } => p.call_fit(s, host, request, limits),
            Exports::V0_1(f) => {
                call_typed::<_, (Result<v0_1::Placement, wit::Rejection>,)>(f.fit, s, (host, &request_to_0_1(request), limits))
                    .map(|(r,)| r.map(placement_from_0_1))
            }
        })
    }

    pub fn fit_many(
        &mut self,
        hosts: &[wit::Host],
        request: &wit::Request,
        limits: &wit::Limits,
    ) -> Result<Vec<Result<wit::Placement, wit::Rejection>>> {
        self.call(|e, s| match e {
            Exports::Current { policy: p, .. } => p.call_fit_many(s, hosts, request, limits),
            Exports::V0_1(f) => {
                call_typed::<_, (Vec<Result<v0_1::Placement, wit::Rejection>>,)>(f.fit_many, s, (hosts, &request_to_0_1(request), limits))
                    .map(|(r,)| r.into_iter().map(|a| a.map(placement_from_0_1)).collect())
            }
        })
    }

    pub fn claim(&mut self, host: &wit::Host, placement: &wit::Placement) -> Result<Result<wit::Host, wit::AccountingError>> {
        self.call(|e, s| match e {
            Exports::Current { policy: p, .. } => p.call_claim(s, host, placement),
            Exports::V0_1(f) => call_typed(f.claim, s, (host, &placement_to_0_1(placement))).map(|(r,)| r),
        })
    }

    pub fn release(&mut self, host: &wit::Host, placement: &wit::Placement) -> Result<Result<wit::Host, wit::AccountingError>> {
        self.call(|e, s| match e {
            Exports::Current { policy: p, .. } => p.call_release(s, host, placement),
            Exports::V0_1(f) => call_typed(f.release, s, (host, &placement_to_0_1(placement))).map(|(r,)| r),
        })
    }

    /// Loads a host into the plugin (`host-state`). Fails (inner error) when the plugin finds the
    /// host inconsistent; a 0.1 plugin keeps nothing and checks the host on each fit instead.
    pub fn load(&mut self, host: wit::Host) -> Result<Result<LoadedHost, String>> {
        let loaded = LoadedHost { host, handles: Handles::new(self.shared.id, &self.shared.name, self.shared.book.clone()) };
        Ok(self.ensure_loaded(&loaded)?.map(|_| loaded))
    }

    /// `loaded`'s resource in the live instance, loading it there first if this instance has not
    /// (a new worker, or the instance was replaced after a trap). None for 0.1 plugins.
    fn ensure_loaded(&mut self, loaded: &LoadedHost) -> Result<Result<Option<ResourceAny>, String>> {
        self.check_owner(&loaded.handles, "host")?;
        if matches!(self.shared.pre, Pre::V0_1 { .. }) {
            return Ok(Ok(None));
        }
        if let Some(r) = loaded.handles.get(self.live_id()?) {
            return Ok(Ok(Some(r)));
        }
        let host = &loaded.host;
        let answer = self.call(|e, s| match e {
            Exports::Current { policy: p, .. } => p.host_state().call_load(s, host),
            Exports::V0_1(_) => Err(wasmtime::format_err!("a 0.1 plugin has no host-state")),
        })?;
        // A refused host keeps no handle in this instance.
        if let Ok(r) = answer {
            loaded.handles.put(self.live_id()?, r);
        }
        Ok(answer.map(Some))
    }

    /// `fit` against a loaded host: only the request crosses the boundary.
    pub fn fit_loaded(
        &mut self,
        loaded: &LoadedHost,
        request: &wit::Request,
        limits: &wit::Limits,
    ) -> Result<Result<wit::Placement, wit::Rejection>> {
        match self.ensure_loaded(loaded)? {
            Err(e) => Ok(Err(invalid_host(e))),
            Ok(Some(handle)) => self.call(|e, s| match e {
                Exports::Current { policy: p, .. } => p.host_state().call_fit(s, handle, request, limits),
                Exports::V0_1(_) => Err(wasmtime::format_err!("a 0.1 plugin has no host-state")),
            }),
            Ok(None) => self.fit(&loaded.host, request, limits),
        }
    }

    /// `fit` against each of many loaded hosts in one call: one answer per host, in order.
    pub fn fit_loaded_many<H: std::borrow::Borrow<LoadedHost>>(
        &mut self,
        hosts: &[H],
        request: &wit::Request,
        limits: &wit::Limits,
    ) -> Result<Vec<Result<wit::Placement, wit::Rejection>>> {
        let hosts: Vec<&LoadedHost> = hosts.iter().map(Borrow::borrow).collect();
        let hosts = hosts.as_slice();
        for h in hosts {
            self.check_owner(&h.handles, "host")?;
        }
        if matches!(self.shared.pre, Pre::V0_1 { .. }) {
            let tables: Vec<wit::Host> = hosts.iter().map(|h| h.host.clone()).collect();
            return self.fit_many(&tables, request, limits);
        }
        // Hosts the plugin refuses to load get their rejection; the rest are asked in one call.
        let mut answers: Vec<Option<Result<wit::Placement, wit::Rejection>>> = Vec::with_capacity(hosts.len());
        for h in hosts {
            answers.push(self.ensure_loaded(h)?.err().map(|e| Err(invalid_host(e))));
        }
        let live = self.live_id()?;
        let handles: Vec<ResourceAny> =
            hosts.iter().zip(&answers).filter(|(_, a)| a.is_none()).filter_map(|(h, _)| h.handles.get(live)).collect();
        let mut fitted = self
            .call(|e, s| match e {
                Exports::Current { policy: p, .. } => p.call_fit_loaded(s, &handles, request, limits),
                Exports::V0_1(_) => Err(wasmtime::format_err!("a 0.1 plugin has no host-state")),
            })?
            .into_iter();
        Ok(answers.into_iter().map(|a| a.or_else(|| fitted.next()).unwrap_or_else(|| Err(invalid_host("no answer".into())))).collect())
    }

    /// A loaded request on each of many loaded hosts in one call: contract 0.5's packed
    /// `fit-batch` or 0.4's, the answers crossing as one batch's columns, in host order. A plugin
    /// without either (0.3 and older), or a batch with a host the plugin refuses to load, is
    /// answered through `fit_loaded_many`, one record per host.
    pub fn fit_batch<H: Borrow<LoadedHost>>(&mut self, hosts: &[H], request: &LoadedRequest, limits: &wit::Limits) -> Result<FitBatch> {
        if let Pre::Current { batch, packed, .. } = &self.shared.pre {
            let (has_batch, has_packed) = (batch.is_some(), packed.is_some());
            let packed = match &request.model {
                Some(model) if has_packed => Some((model.clone(), self.policy_name()?)),
                _ => None,
            };
            if packed.is_some() || has_batch {
                if let Some((r, handles)) = self.loaded_handles(hosts, request)? {
                    return match packed {
                        Some((guest, policy)) => {
                            let answers = self.call(|e, s| match e {
                                Exports::Current { packed: Some(p), .. } => p.call_fit_batch_packed(s, &handles, r, limits),
                                _ => Err(wasmtime::format_err!("the plugin has no packed fit-batch")),
                            })?;
                            let batch = numafit_plugin::Batch {
                                fits: answers.fits,
                                placed: numafit_plugin::PackedPlacements::from_words(answers.placed),
                                rejected: convert_batch::rejected_from_wit(answers.rejected),
                            };
                            Ok(FitBatch::Packed { batch: Box::new(batch), guest, policy })
                        }
                        None => {
                            let answers = self.call(|e, s| match e {
                                Exports::Current { batch: Some(b), .. } => b.call_fit_batch(s, &handles, r, limits),
                                _ => Err(wasmtime::format_err!("the plugin has no fit-batch")),
                            })?;
                            Ok(FitBatch::Columns(Box::new(convert_batch::batch_from_wit(answers))))
                        }
                    };
                }
            }
        }
        self.fit_loaded_many(hosts, &request.request, limits).map(FitBatch::Rows)
    }

    /// The request's and every host's resource, all in the live instance; none when the plugin
    /// refuses one of them (its answer is then asked host by host).
    fn loaded_handles<H: Borrow<LoadedHost>>(
        &mut self,
        hosts: &[H],
        request: &LoadedRequest,
    ) -> Result<Option<(ResourceAny, Vec<ResourceAny>)>> {
        let Ok(Some(r)) = self.ensure_request_loaded(request)? else { return Ok(None) };
        let live = self.live_id()?;
        let mut handles = Vec::with_capacity(hosts.len());
        for h in hosts {
            match self.ensure_loaded(h.borrow())? {
                Ok(Some(handle)) => handles.push(handle),
                _ => return Ok(None),
            }
        }
        // A trap while loading a host would have replaced the instance the request is in.
        Ok((self.live_id()? == live).then_some((r, handles)))
    }

    /// The name the policy gives itself in `info`, asked once per plugin.
    fn policy_name(&mut self) -> Result<Arc<str>> {
        if let Some(name) = self.shared.policy_name.get() {
            return Ok(name.clone());
        }
        let name: Arc<str> = self.info()?.name.into();
        Ok(self.shared.policy_name.get_or_init(|| name).clone())
    }

    /// Loads a request into the plugin (contract 0.3 `request-state`). Fails (inner error) when the
    /// plugin finds the request invalid. A plugin without loaded requests (0.1, 0.2) keeps
    /// nothing: the request is sent, and checked, with each fit.
    pub fn load_request(&mut self, request: wit::Request) -> Result<Result<LoadedRequest, String>> {
        // The core's model of it, to read packed placements by (0.5): they leave out its part.
        let model = crate::contract::RequestModel::of(request.clone()).ok().map(Arc::new);
        let loaded = LoadedRequest { request, model, handles: Handles::new(self.shared.id, &self.shared.name, self.shared.book.clone()) };
        Ok(self.ensure_request_loaded(&loaded)?.map(|_| loaded))
    }

    fn has_requests(&self) -> bool {
        matches!(self.shared.pre, Pre::Current { requests: Some(_), .. })
    }

    fn ensure_request_loaded(&mut self, loaded: &LoadedRequest) -> Result<Result<Option<ResourceAny>, String>> {
        self.check_owner(&loaded.handles, "request")?;
        if !self.has_requests() {
            return Ok(Ok(None));
        }
        if let Some(r) = loaded.handles.get(self.live_id()?) {
            return Ok(Ok(Some(r)));
        }
        let request = &loaded.request;
        let answer = self.call(|e, s| match e {
            Exports::Current { requests: Some(r), .. } => r.request_state().call_load(s, request),
            _ => Err(wasmtime::format_err!("the plugin has no loaded requests")),
        })?;
        if let Ok(r) = answer {
            loaded.handles.put(self.live_id()?, r);
        }
        Ok(answer.map(Some))
    }

    /// `fit` of a loaded request on a loaded host: two handles and the limits cross the boundary.
    pub fn fit_loaded_request(
        &mut self,
        host: &LoadedHost,
        request: &LoadedRequest,
        limits: &wit::Limits,
    ) -> Result<Result<wit::Placement, wit::Rejection>> {
        let r = match self.ensure_request_loaded(request)? {
            Err(e) => return Ok(Err(invalid_request(e))),
            Ok(r) => r,
        };
        let request_instance = self.live_id()?;
        let h = match self.ensure_loaded(host)? {
            Err(e) => return Ok(Err(invalid_host(e))),
            Ok(h) => h,
        };
        // Both resources must be of the live instance: a call that trapped meanwhile would have
        // replaced it (and ended this one with its error), so an id compare settles it, no lock.
        let r = if self.live_id()? == request_instance {
            r
        } else {
            match self.ensure_request_loaded(request)? {
                Err(e) => return Ok(Err(invalid_request(e))),
                Ok(r) => r,
            }
        };
        match (h, r, &request.model) {
            (Some(h), Some(r), Some(guest)) if matches!(self.shared.pre, Pre::Current { packed: Some(_), .. }) => {
                let policy = self.policy_name()?;
                let answer = self.call(|e, s| match e {
                    Exports::Current { packed: Some(p), .. } => p.call_fit_packed(s, h, r, limits),
                    _ => Err(wasmtime::format_err!("the plugin has no packed fit")),
                })?;
                let words = match answer {
                    Ok(words) => words,
                    Err(rejection) => return Ok(Err(rejection)),
                };
                match crate::contract::placement_from_packed(&words, guest, &policy) {
                    Ok((placement, [])) => Ok(Ok(placement)),
                    Ok((_, rest)) => {
                        Err(anyhow!("plugin {}: its packed placement has {} words past its end", self.shared.name, rest.len()))
                    }
                    Err(e) => Err(anyhow!("plugin {}: {e}", self.shared.name)),
                }
            }
            (Some(h), Some(r), _) => self.call(|e, s| match e {
                Exports::Current { requests: Some(f), .. } => f.request_state().call_fit(s, r, h, limits),
                _ => Err(wasmtime::format_err!("the plugin has no loaded requests")),
            }),
            _ => self.fit_loaded(host, &request.request, limits),
        }
    }

    /// Frees a loaded request inside the plugin now (dropping it does the same at the next call).
    pub fn unload_request(&mut self, loaded: LoadedRequest) -> Result<()> {
        self.check_owner(&loaded.handles, "request")?;
        drop(loaded);
        self.free_dropped()
    }

    /// Frees a loaded host inside the plugin now (dropping it does the same at the next call).
    pub fn unload(&mut self, loaded: LoadedHost) -> Result<()> {
        self.check_owner(&loaded.handles, "host")?;
        drop(loaded);
        self.free_dropped()
    }

    /// Frees, in the live instance, the resources of handles dropped since its last call.
    fn free_dropped(&mut self) -> Result<()> {
        if self.live.is_some() {
            self.call(|_, _| Ok(()))?;
        }
        Ok(())
    }
}

/// A batch's answers as they crossed: packed (contract 0.5's `fit-batch`, read as `guest`'s
/// placements by `policy`), columns (0.4's) or one record per host.
#[derive(Clone, Debug)]
pub enum FitBatch {
    Packed {
        batch: Box<numafit_plugin::Batch<numafit_plugin::PackedPlacements>>,
        guest: Arc<crate::contract::RequestModel>,
        policy: Arc<str>,
    },
    Columns(Box<numafit_plugin::Batch>),
    Rows(Vec<Result<wit::Placement, wit::Rejection>>),
}

impl FitBatch {
    /// Number of hosts answered.
    pub fn len(&self) -> usize {
        match self {
            FitBatch::Packed { batch, .. } => batch.len(),
            FitBatch::Columns(b) => b.len(),
            FitBatch::Rows(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One record per host, in order; the error names the first column of the batch that does not
    /// hold together.
    pub fn into_rows(self) -> Result<Vec<Result<wit::Placement, wit::Rejection>>, String> {
        use crate::contract::latest::convert::{placement_to_wit, rejection_to_wit};
        let rows = |answers: Vec<Result<numafit_plugin::Placement, numafit_plugin::Rejection>>| {
            answers.into_iter().map(|a| a.map(placement_to_wit).map_err(rejection_to_wit)).collect()
        };
        match self {
            FitBatch::Packed { batch, guest, policy } => Ok(rows(batch.answers(&guest.guest, &policy)?)),
            FitBatch::Columns(b) => Ok(rows(b.answers()?)),
            FitBatch::Rows(r) => Ok(r),
        }
    }
}

fn invalid_request(reason: String) -> wit::Rejection {
    // The shape the plugin's own `fit` gives an invalid request.
    wit::Rejection { summary: format!("invalid request: {reason}"), refusals: Vec::new(), reasons: Vec::new() }
}

fn invalid_host(reason: String) -> wit::Rejection {
    // The shape the plugin's own stateless `fit` gives an invalid host.
    wit::Rejection { summary: format!("invalid host: {reason}"), refusals: Vec::new(), reasons: Vec::new() }
}
