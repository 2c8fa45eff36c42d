//! Maps a guest cell's dedicated vCPUs onto a host cell's free pinnable CPUs, as a sequence of
//! small named steps (after Nova's `_pack_instance_onto_cores` and the Kubernetes CPU manager's
//! `cpu_assignment.go`):
//!
//! - `prefer` / `require`: fill cores with the most free threads first, the same number of threads
//!   from each (t from the widest free core down; `require` stops at 2 threads); `prefer` then falls
//!   back to single free threads in core order.
//! - `isolate`: one thread from each wholly free core of the cell's full width; the claim takes
//!   the whole core.
//! - emulator threads `isolate`: one more CPU, after the vCPUs' (a wholly free core of its own
//!   under thread policy `isolate`).
//!
//! Inside a core, threads are taken in ascending CPU order.

use crate::cores::FreeCores;
use crate::cpuset::CpuSet;
use crate::refusal::{Refusal, Shortfall};
use crate::request::ThreadPolicy;
use crate::topology::HostCell;

/// How `prefer` packs threads: Nova's way, or the `balanced` policy's, which keeps whole cores
/// free for later `isolate`/`require` guests and keeps a cell inside one L3 cache when it can.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Packing {
    #[default]
    Nova,
    KeepCoresWhole,
}

/// The CPUs chosen for one guest cell on one host cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CellPinning {
    /// (vCPU, pCPU), vCPUs ascending.
    pub pairs: Vec<(u32, u32)>,
    /// Host CPUs for the emulator threads.
    pub emulator: Vec<u32>,
}

/// How one guest cell's vCPUs are pinned on one host cell, decided from the cell's counts alone
/// (`plan`); `pin` then picks the CPUs. A search decides many (guest cell, host cell) pairs and
/// keeps a few, so only the kept ones read the CPU lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinPlan {
    /// `prefer` / `require`: the first `t` free threads of every core that has at least `t`.
    ThreadsPerCore(usize),
    /// `prefer`'s fallback: every free thread as if it were a core of its own, in core order.
    SingleThreads,
    /// `isolate`: one thread of each wholly free core of the cell's full width.
    Isolate,
    /// The balanced policy's `prefer`: whole cores first, odd vCPUs on cores already in use.
    KeepCoresWhole,
}

/// Where a pinning's CPUs are written: a cell's own lists (`CellPinning`), or a batch's columns.
pub trait PinSink {
    /// Dedicated vCPU `vcpu` runs on host CPU `pcpu` (vCPUs come ascending).
    fn pair(&mut self, vcpu: u32, pcpu: u32);
    /// A host CPU for the emulator threads.
    fn emulator(&mut self, pcpu: u32);

    /// `pair` for each vCPU (ascending) and the host CPU beside it, as many as both give: a sink
    /// of columns takes the two runs whole.
    fn pairs(&mut self, vcpus: &[u32], pcpus: impl Iterator<Item = u32>) {
        for (&vcpu, pcpu) in vcpus.iter().zip(pcpus) {
            self.pair(vcpu, pcpu);
        }
    }

    /// `pairs` of host CPUs that come as one run (no longer than `vcpus`): a sink of columns
    /// copies it whole.
    fn pairs_run(&mut self, vcpus: &[u32], pcpus: &[u32]) {
        self.pairs(vcpus, pcpus.iter().copied());
    }
}

impl PinSink for CellPinning {
    fn pair(&mut self, vcpu: u32, pcpu: u32) {
        self.pairs.push((vcpu, pcpu));
    }

    fn emulator(&mut self, pcpu: u32) {
        self.emulator.push(pcpu);
    }
}

/// Step: the first `t` free threads of every core that has at least `t`, in core order.
fn threads_per_core(cores: &FreeCores, t: usize) -> impl Iterator<Item = u32> + '_ {
    cores.iter().filter(move |c| c.len() >= t).flat_map(move |c| c[..t].iter().copied())
}

/// Steps: the vCPUs (ascending) zipped with `pcpus`, then `emulator` more CPUs: the first free
/// threads left after the vCPUs took theirs, in core order.
fn pair_then_emulator(cores: &FreeCores, vcpus: &[u32], pcpus: impl Iterator<Item = u32>, emulator: usize, out: &mut impl PinSink) {
    if emulator == 0 {
        // This runs for every guest cell of every placement a search keeps.
        out.pairs(vcpus, pcpus);
        return;
    }
    let mut taken = CpuSet::new();
    for (&vcpu, pcpu) in vcpus.iter().zip(pcpus) {
        out.pair(vcpu, pcpu);
        taken.insert(pcpu);
    }
    for &pcpu in cores.threads().iter().filter(|p| !taken.contains(**p)).take(emulator) {
        out.emulator(pcpu);
    }
}

/// vCPUs (ascending) zipped with host CPUs, into a vector sized once.
fn pair_up(vcpus: &[u32], pcpus: impl Iterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut pairs = Vec::with_capacity(vcpus.len());
    pairs.extend(vcpus.iter().copied().zip(pcpus));
    pairs
}

/// Nova's `isolate`: the vCPUs take one thread each of the wholly free cores as wide as the
/// cell's widest (`sibling_sets[threads_per_core]`), in core order; the emulator threads then take
/// the first wholly free cores (of any width) that hold no vCPU, in core order (Nova takes the
/// next free thread there, which its own claim refuses on a half-used core).
fn plan_isolate(cores: &FreeCores, vcpus: usize, emulator: usize) -> Result<PinPlan, Refusal> {
    let needed = (vcpus + emulator) as u64;
    if cores.wide_whole() < vcpus {
        return Err(Refusal::new(Shortfall::FreeCores, needed, cores.wide_whole() as u64));
    }
    // The vCPUs' cores are wholly free ones, so the emulator threads have the rest of those.
    if cores.whole().len() - vcpus < emulator {
        return Err(Refusal::new(Shortfall::FreeCores, needed, cores.whole().len() as u64));
    }
    Ok(PinPlan::Isolate)
}

fn pin_isolate(cores: &FreeCores, vcpus: &[u32], emulator: usize) -> CellPinning {
    let width = cores.threads_per_core();
    let whole = cores.whole();
    let wide: Vec<u32> = whole.iter().copied().filter(|&k| cores.core(k as usize).len() >= width).take(vcpus.len()).collect();
    let lowest = |k: u32| cores.core(k as usize).first().copied();
    let pairs = pair_up(vcpus, wide.iter().filter_map(|&k| lowest(k)));
    let emulator: Vec<u32> = whole.iter().filter(|k| !wide.contains(k)).filter_map(|&k| lowest(k)).take(emulator).collect();
    CellPinning { pairs, emulator }
}

/// `prefer` / `require`: the most threads per core that hold all the vCPUs (`require` stops at
/// 2), then (`prefer`) single threads. The emulator threads take free threads the vCPUs left,
/// so whether they fit does not depend on how the vCPUs were taken.
fn plan_packed(cores: &FreeCores, vcpus: usize, emulator: usize, policy: ThreadPolicy) -> Result<PinPlan, Refusal> {
    let require = policy == ThreadPolicy::Require;
    if require && cores.threads_per_core() < 2 {
        return Err(Refusal::new(Shortfall::SiblingThreads, 2, 1));
    }
    let lowest = if require { 2 } else { 1 };
    let (free, needed) = (cores.free(), vcpus + emulator);
    if free >= needed {
        if let Some(t) = (lowest..=cores.widest()).rev().find(|&t| t * cores.with_at_least(t) >= vcpus) {
            return Ok(PinPlan::ThreadsPerCore(t));
        }
        if !require {
            return Ok(PinPlan::SingleThreads);
        }
    }
    if !require {
        let short = if free >= vcpus { Shortfall::EmulatorCpu } else { Shortfall::FreeCpus };
        return Err(Refusal::new(short, needed as u64, free as u64));
    }
    let paired: usize = cores.iter().filter(|c| c.len() >= 2).map(|c| c.len()).sum();
    Err(Refusal::new(Shortfall::SiblingThreads, needed as u64, paired as u64))
}

/// Step (balanced): whole free cores, ordered so that the cell stays inside one L3 cache when one
/// can hold it: the cache group with the fewest whole free cores that still has `cores` of them
/// first, then the others by descending size; core order inside a group.
fn whole_cores_by_cache(cell: &HostCell, cores: &FreeCores, wanted: usize) -> Vec<usize> {
    let whole = cores.whole().iter().map(|&k| k as usize);
    if cell.cache_groups.is_empty() {
        return whole.collect();
    }
    let group_of =
        |k: usize| cores.core(k).first().and_then(|&t| cell.cache_groups.iter().position(|g| g.contains(t))).unwrap_or(usize::MAX);
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for k in whole {
        let g = group_of(k);
        match groups.iter_mut().find(|(id, _)| *id == g) {
            Some((_, v)) => v.push(k),
            None => groups.push((g, vec![k])),
        }
    }
    let best = groups.iter().enumerate().filter(|(_, (_, v))| v.len() >= wanted).min_by_key(|(_, (_, v))| v.len()).map(|(i, _)| i);
    let mut ordered = Vec::new();
    if let Some(i) = best {
        ordered.extend(groups.remove(i).1);
    }
    groups.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    ordered.extend(groups.into_iter().flat_map(|(_, v)| v));
    ordered
}

/// `prefer` for the balanced policy: whole cores for as many vCPUs as fill them; the odd
/// remainder (and the emulator thread) on free threads of cores already in use, so no whole core
/// is broken for a thread or two; whole cores again only when those run out. Every free thread
/// is a candidate, so it fits when the cell has enough free threads.
fn pin_keep_cores_whole(cell: &HostCell, cores: &FreeCores, vcpus: &[u32], emulator: usize) -> CellPinning {
    let partial: Vec<usize> = (0..cores.len()).filter(|&k| !cores.core(k).is_empty() && !cores.is_whole(k)).collect();
    let width = cores.whole().iter().map(|&k| cores.core(k as usize).len()).max().unwrap_or(1);
    let full_cores = vcpus.len() / width;
    let ordered = whole_cores_by_cache(cell, cores, full_cores.max(1));
    let mut threads: Vec<u32> = Vec::with_capacity(cores.free());
    threads.extend(ordered.iter().take(full_cores).flat_map(|&k| cores.core(k).iter().copied()));
    threads.extend(partial.iter().flat_map(|&k| cores.core(k).iter().copied()));
    threads.extend(ordered.iter().skip(full_cores).flat_map(|&k| cores.core(k).iter().copied()));
    let pairs = pair_up(vcpus, threads.iter().copied());
    // `plan` saw enough free threads for both.
    let emulator = threads.get(vcpus.len()..vcpus.len() + emulator).map(<[u32]>::to_vec).unwrap_or_default();
    CellPinning { pairs, emulator }
}

/// Whether `vcpus` dedicated vCPUs plus `emulator` extra CPUs can be pinned on the cell whose
/// free cores these are, and how; the refusal says why not.
pub fn plan(cores: &FreeCores, vcpus: usize, emulator: usize, policy: ThreadPolicy, packing: Packing) -> Result<PinPlan, Refusal> {
    match (policy, packing) {
        (ThreadPolicy::Isolate, _) => plan_isolate(cores, vcpus, emulator),
        (ThreadPolicy::Prefer, Packing::KeepCoresWhole) => {
            let (needed, free) = (vcpus + emulator, cores.free());
            if needed > free {
                return Err(Refusal::new(Shortfall::FreeCpus, needed as u64, free as u64));
            }
            Ok(PinPlan::KeepCoresWhole)
        }
        (ThreadPolicy::Prefer | ThreadPolicy::Require, _) => plan_packed(cores, vcpus, emulator, policy),
    }
}

/// The CPUs of a plan `plan` accepted for these `vcpus` (ascending) and `emulator` on this cell.
pub fn pin(plan: PinPlan, cell: &HostCell, cores: &FreeCores, vcpus: &[u32], emulator: usize) -> CellPinning {
    match plan {
        PinPlan::Isolate => pin_isolate(cores, vcpus, emulator),
        PinPlan::KeepCoresWhole => pin_keep_cores_whole(cell, cores, vcpus, emulator),
        PinPlan::ThreadsPerCore(_) | PinPlan::SingleThreads => {
            let mut pinning = CellPinning { pairs: Vec::with_capacity(vcpus.len()), emulator: Vec::new() };
            pin_into(plan, cell, cores, vcpus, emulator, &mut pinning);
            pinning
        }
    }
}

/// `pin`, written into `out`.
pub fn pin_into(plan: PinPlan, cell: &HostCell, cores: &FreeCores, vcpus: &[u32], emulator: usize, out: &mut impl PinSink) {
    let written = match plan {
        PinPlan::ThreadsPerCore(t) => {
            return match cores.threads_when_every_core_has(t) {
                Some(threads) if emulator == 0 => out.pairs_run(vcpus, &threads[..vcpus.len().min(threads.len())]),
                Some(threads) => pair_then_emulator(cores, vcpus, threads.iter().copied(), emulator, out),
                None => pair_then_emulator(cores, vcpus, threads_per_core(cores, t), emulator, out),
            }
        }
        PinPlan::SingleThreads => return pair_then_emulator(cores, vcpus, cores.threads().iter().copied(), emulator, out),
        PinPlan::Isolate => pin_isolate(cores, vcpus, emulator),
        PinPlan::KeepCoresWhole => pin_keep_cores_whole(cell, cores, vcpus, emulator),
    };
    for (vcpu, pcpu) in written.pairs {
        out.pair(vcpu, pcpu);
    }
    for pcpu in written.emulator {
        out.emulator(pcpu);
    }
}

/// Pins the dedicated `vcpus` of one guest cell, plus `emulator` extra CPUs, on `cell`.
pub fn pin_cell(cell: &HostCell, vcpus: &CpuSet, emulator: usize, policy: ThreadPolicy) -> Result<CellPinning, Refusal> {
    pin_cell_packed(cell, &FreeCores::of(cell), vcpus, emulator, policy, Packing::Nova)
}

/// `pin_cell` on the cell's free cores (`FreeCores::of(cell)`, made once), with a choice of
/// packing for `prefer`.
pub fn pin_cell_packed(
    cell: &HostCell,
    cores: &FreeCores,
    vcpus: &CpuSet,
    emulator: usize,
    policy: ThreadPolicy,
    packing: Packing,
) -> Result<CellPinning, Refusal> {
    plan(cores, vcpus.len(), emulator, policy, packing).map(|p| pin(p, cell, cores, &vcpus.to_vec(), emulator))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell of four cores: two of two threads, one of one, one of three (CPUs 0-7), with the
    /// CPUs of `pinned` (a bitmask) taken.
    fn cell(pinned: u32) -> HostCell {
        let siblings: Vec<CpuSet> = [&[0, 4][..], &[1, 5], &[2], &[3, 6, 7]].iter().map(|c| c.iter().copied().collect()).collect();
        HostCell {
            id: 0,
            cpuset: CpuSet::new(),
            pcpuset: (0..8).collect(),
            memory: 1024,
            cpu_usage: 0,
            memory_usage: 0,
            pinned_cpus: (0..8).filter(|c| pinned & (1 << c) != 0).collect(),
            host_cpus: CpuSet::new(),
            siblings,
            cache_groups: Vec::new(),
            mempages: Vec::new(),
            socket: None,
            network_metadata: None,
        }
    }

    #[test]
    fn every_free_thread_at_once_is_the_walk_over_cores_whenever_it_is_offered() {
        let mut offered = 0;
        for pinned in 0..256 {
            let cores = FreeCores::of(&cell(pinned));
            for t in 0..=4 {
                let walked: Vec<u32> = if t == 0 { Vec::new() } else { threads_per_core(&cores, t).collect() };
                if let Some(threads) = cores.threads_when_every_core_has(t) {
                    offered += 1;
                    assert_eq!(threads, &walked[..], "pinned {pinned:#b}, {t} threads a core");
                }
            }
        }
        // Offered where it applies (cores pinned so that each left has the same width), not never.
        assert!(offered > 10, "offered {offered} times");
    }
}
