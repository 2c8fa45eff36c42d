//! What a plugin call may use (fuel, wall-clock time, memory) and how a call that used too much is
//! named; the one engine every plugin's compiled code runs in, and the clock that bounds its calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, Result};
use wasmtime::{Config, Engine, ResourceLimiter};

/// Per-call resource limits for a plugin.
#[derive(Clone, Copy, Debug)]
pub struct PluginLimits {
    /// Fuel units (roughly wasm instructions) one call may burn.
    pub fuel: u64,
    /// Bytes of linear memory the instance may grow to.
    pub memory_bytes: usize,
    /// Wall-clock time one call may take: bounds what fuel does not (a loop cheap in fuel, a
    /// machine so loaded that the budget takes minutes). Checked every `EPOCH_TICK`.
    pub deadline: Duration,
}

impl Default for PluginLimits {
    fn default() -> Self {
        // Generous for real work: the largest benchmark host (64 cells) fits in under a
        // millisecond and a few million units; these stop only a plugin that has gone wrong.
        PluginLimits { fuel: 5_000_000_000, memory_bytes: 256 << 20, deadline: Duration::from_secs(10) }
    }
}

impl PluginLimits {
    /// The epoch deadline a call gets: enough ticks that it is never cut short of `deadline`
    /// (one more, as the first tick may come at once).
    pub(super) fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_micros().max(1);
        (self.deadline.as_micros().div_ceil(tick) as u64).saturating_add(1)
    }
}

/// How often the engine's epoch advances: the granularity of every call's deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Why a plugin call failed: the plugin is named so an operator knows which policy misbehaved.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "plugin {plugin} ran out of fuel: one call burned its whole budget of {fuel} units. It may loop forever, or the input is \
         larger than the budget allows (a host of thousands of cells); raise the budget with --fuel N"
    )]
    OutOfFuel { plugin: String, fuel: u64 },
    #[error("plugin {plugin} hit its memory cap of {mib} MiB")]
    MemoryCap { plugin: String, mib: usize },
    #[error(
        "plugin {plugin} passed its deadline: one call ran {elapsed_ms} ms, over its limit of {deadline_ms} ms; raise it with --deadline-ms N"
    )]
    Deadline { plugin: String, deadline_ms: u128, elapsed_ms: u128 },
    #[error("plugin {plugin} trapped: {trap}")]
    Trap { plugin: String, trap: String },
}

/// Per-store data: the memory cap, and whether a call hit it (so the failure can be named).
pub(super) struct State {
    pub(super) memory_cap: usize,
    pub(super) cap_hit: bool,
    /// Linear memory size after the last growth.
    pub(super) memory_bytes: usize,
}

impl ResourceLimiter for State {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.cap_hit = true;
            // An error (not `Ok(false)`) traps at once instead of letting the guest see a failed
            // grow and abort somewhere less obvious.
            wasmtime::bail!("memory cap of {} bytes reached (wanted {desired})", self.memory_cap);
        }
        self.memory_bytes = desired;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }

    /// One component instance is a few core instances (the policy module, plus the shims
    /// `wit-component` adds, e.g. for a resource's destructor); a store never holds more than one component.
    fn instances(&self) -> usize {
        8
    }
}

impl PluginError {
    /// The limit or failure, in one word: metrics and API answers are labelled with it.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::OutOfFuel { .. } => "fuel",
            PluginError::MemoryCap { .. } => "memory",
            PluginError::Deadline { .. } => "deadline",
            PluginError::Trap { .. } => "trap",
        }
    }
}

/// The process's one engine, made on first use, with the thread that advances its epoch. Every
/// plugin (and every version a service swaps in) shares it: compiled code, the cache key and the
/// clock are the same for all.
pub(super) fn engine() -> Result<Engine> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE.get_or_init(|| new_engine().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!("cannot make the wasm engine: {e}"))
}

fn new_engine() -> Result<Engine> {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    if super::memory::wanted().map_err(|e| anyhow!(e))? {
        config.with_host_memory(std::sync::Arc::new(super::memory::HugePageMemories));
        // Copy-on-write images need wasmtime's own mapping (wasmtime 48 panics on a host memory
        // with one): the data segments are copied in at instantiation instead.
        config.memory_init_cow(false);
    }
    // `NUMAFIT_PERFMAP=1`: name the plugin's compiled functions for `perf` (/tmp/perf-PID.map), to
    // profile a policy as it runs in the host.
    if std::env::var_os("NUMAFIT_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config)?;
    let weak = engine.weak();
    // The clock: it ends with the engine (never, for the process-wide one).
    std::thread::Builder::new().name("numafit-epoch".into()).spawn(move || loop {
        std::thread::sleep(EPOCH_TICK);
        match weak.upgrade() {
            Some(engine) => {
                TICKS.fetch_add(1, Ordering::Relaxed);
                engine.increment_epoch()
            }
            None => return,
        }
    })?;
    Ok(engine)
}

/// Epoch ticks since the engine started, counted beside the engine's own epoch: when a call began,
/// read for the price of a load (a clock read is a few percent of the smallest fit).
static TICKS: AtomicU64 = AtomicU64::new(0);

/// When a call begins, in epoch ticks.
pub(super) fn now() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Milliseconds since `started` (`now()`), to the epoch's granularity.
pub(super) fn elapsed_ms(started: u64) -> u128 {
    u128::from(now().saturating_sub(started)) * EPOCH_TICK.as_millis()
}
