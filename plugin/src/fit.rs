//! Whether one guest cell fits on one host cell, checked in Nova's order (`_numa_fit_instance_cell`):
//! memory or page size; pinnable CPU count; shared CPU count; free pinnable CPUs and packing;
//! allocation ratios for floating vCPUs. A refusal carries the numbers that decided it.

use crate::cores::{CellUsage, FreeCores};
use crate::hugepages;
use crate::pinning::{self, CellPinning, Packing, PinPlan, PinSink};
use crate::refusal::{Refusal, Shortfall};
use crate::request::{GuestCell, GuestTopology, ThreadPolicy};
use crate::topology::HostCell;

/// Limits the scheduler puts on a host (Nova's `NUMATopologyLimits`) and how cells are ordered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    pub cpu_allocation_ratio: Option<f64>,
    pub ram_allocation_ratio: Option<f64>,
    pub network: Option<NetworkNeed>,
    pub strategy: Strategy,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkNeed {
    pub physnets: Vec<String>,
    pub tunneled: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    #[default]
    Spread,
    Pack,
}

/// A guest cell fitted onto a host cell: decided, with its CPUs not chosen yet (`pinning`), as a
/// search decides many pairs and keeps a few.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellFit {
    pub host_cell: u32,
    /// The page size chosen when the guest asked for one.
    pub pagesize_kb: Option<u32>,
    /// How its dedicated vCPUs are pinned; none for a guest that pins nothing.
    pub plan: Option<PinPlan>,
}

impl CellFit {
    /// The CPUs of this fit: `host`, `cores` and `emulator` as `fit_cell_packed` had them, for
    /// the guest cell's dedicated vCPUs `vcpus` (ascending).
    pub fn pinning(&self, host: &HostCell, cores: &FreeCores, vcpus: &[u32], emulator: usize) -> CellPinning {
        match self.plan {
            Some(plan) => pinning::pin(plan, host, cores, vcpus, emulator),
            None => CellPinning::default(),
        }
    }

    /// `pinning`, written into `out`.
    pub fn pin_into(&self, host: &HostCell, cores: &FreeCores, vcpus: &[u32], emulator: usize, out: &mut impl PinSink) {
        if let Some(plan) = self.plan {
            pinning::pin_into(plan, host, cores, vcpus, emulator, out);
        }
    }
}

/// Memory (Nova's `_numa_fit_instance_cell`): the asked page size; else, on a cell that lists
/// page pools, the smallest listed pool (whatever its size) — free pages for pinned guests, the
/// pool's total for floating ones (overcommit is the allocation ratio's business) — and in either
/// case a whole number of pages; else plain memory, free for pinned guests, total for floating.
fn check_memory(host: &HostCell, usage: &CellUsage, guest: &GuestCell, pins: bool) -> Result<Option<u32>, Refusal> {
    if let Some(wish) = guest.pagesize {
        return hugepages::choose_page_size(host, wish, guest.memory).map(Some);
    }
    match &usage.smallest_pages {
        Some(pool) if hugepages::fits_in_pages(pool, guest.memory, pins) => Ok(None),
        // Floating: the cell's memory as its smallest pages count it is too small.
        Some(pool) if !pins && hugepages::pages_needed(pool.size_kb, guest.memory).is_some() => {
            Err(Refusal::new(Shortfall::Memory, guest.memory, pool.total.saturating_mul(u64::from(pool.size_kb)) / 1024))
        }
        Some(pool) => Err(hugepages::pages_refusal(pool, guest.memory, pins)),
        None if pins && usage.avail_memory < guest.memory => Err(Refusal::new(Shortfall::Memory, guest.memory, usage.avail_memory)),
        None if usage.memory < guest.memory => Err(Refusal::new(Shortfall::Memory, guest.memory, usage.memory)),
        None => Ok(None),
    }
}

/// Floating vCPUs and their memory against the allocation ratios, when limits give them.
fn check_ratios(cores: &FreeCores, guest: &GuestCell, limits: &Limits) -> Result<(), Refusal> {
    let host = cores.usage();
    if let Some(ratio) = limits.cpu_allocation_ratio {
        let usage = u64::from(host.cpu_usage) + guest.cpuset.len() as u64;
        let limit = cores.shared() as f64 * ratio;
        if usage as f64 > limit {
            return Err(Refusal::new(Shortfall::CpuRatio, usage, limit.max(0.0) as u64));
        }
    }
    if let Some(ratio) = limits.ram_allocation_ratio {
        let usage = host.memory_usage + guest.memory;
        let limit = host.memory as f64 * ratio;
        if usage as f64 > limit {
            return Err(Refusal::new(Shortfall::Memory, usage, limit.max(0.0) as u64));
        }
    }
    Ok(())
}

/// Fits `guest` (with `emulator` extra pinned CPUs) on `host` and pins it, or says why not.
pub fn fit_cell(
    host: &HostCell,
    guest: &GuestCell,
    topo: &GuestTopology,
    limits: &Limits,
    emulator: usize,
) -> Result<(CellFit, CellPinning), Refusal> {
    let cores = FreeCores::of(host);
    let fit = fit_cell_packed(host, &cores, guest, topo, limits, emulator, Packing::Nova)?;
    Ok((fit, fit.pinning(host, &cores, &guest.pcpuset.to_vec(), emulator)))
}

/// `fit_cell` on the host cell's free cores (`FreeCores::of(host)`, made once per host state),
/// with a choice of how `prefer` packs threads.
pub fn fit_cell_packed(
    host: &HostCell,
    cores: &FreeCores,
    guest: &GuestCell,
    topo: &GuestTopology,
    limits: &Limits,
    emulator: usize,
    packing: Packing,
) -> Result<CellFit, Refusal> {
    let pins = topo.pins();
    let (pinnable, shared) = (cores.pinnable(), cores.shared());
    if shared == 0 && pinnable == 0 && guest.vcpus() > 0 {
        return Err(Refusal::new(Shortfall::NoCpus, guest.vcpus() as u64, 0));
    }
    let pagesize_kb = check_memory(host, cores.usage(), guest, pins)?;
    let dedicated = guest.pcpuset.len() + emulator;
    if pins && dedicated > pinnable {
        return Err(Refusal::new(Shortfall::PinnableCpus, dedicated as u64, pinnable as u64));
    }
    if topo.floats() && guest.cpuset.len() > shared {
        return Err(Refusal::new(Shortfall::SharedCpus, guest.cpuset.len() as u64, shared as u64));
    }
    // A mixed cell without dedicated vCPUs: Nova finds no pinning to isolate, nor one to put
    // isolated emulator threads beside, and refuses the cell.
    if pins && guest.pcpuset.is_empty() && (topo.effective_thread_policy() == ThreadPolicy::Isolate || emulator > 0) {
        return Err(Refusal::new(Shortfall::PinnableCpus, 1, 0));
    }
    let plan = if pins {
        let free = cores.free();
        if dedicated > free {
            return Err(Refusal::new(Shortfall::FreeCpus, dedicated as u64, free as u64));
        }
        Some(pinning::plan(cores, guest.pcpuset.len(), emulator, topo.effective_thread_policy(), packing)?)
    } else {
        None
    };
    if topo.floats() {
        check_ratios(cores, guest, limits)?;
    }
    Ok(CellFit { host_cell: cores.usage().id, pagesize_kb, plan })
}
