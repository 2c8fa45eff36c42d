//! What a plugin call may use (fuel, memory) and how a call that used too much is named; the
//! engine every plugin's compiled code runs in.

use anyhow::Result;
use wasmtime::{Config, Engine, ResourceLimiter};

/// Per-call resource limits for a plugin.
#[derive(Clone, Copy, Debug)]
pub struct PluginLimits {
    /// Fuel units (roughly wasm instructions) one call may burn.
    pub fuel: u64,
    /// Bytes of linear memory the instance may grow to.
    pub memory_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits { fuel: 5_000_000_000, memory_bytes: 256 << 20 }
    }
}

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

pub(super) fn engine() -> Result<Engine> {
    let mut config = Config::new();
    config.consume_fuel(true);
    // `NUMAFIT_PERFMAP=1`: name the plugin's compiled functions for `perf` (/tmp/perf-PID.map), to
    // profile a policy as it runs in the host.
    if std::env::var_os("NUMAFIT_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Ok(Engine::new(&config)?)
}
