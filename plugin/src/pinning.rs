//! Maps a guest cell's dedicated vCPUs onto a host cell's free pinnable CPUs, as a sequence of
//! small named steps (after Nova's `_pack_instance_onto_cores` and the Kubernetes CPU manager's
//! `cpu_assignment.go`):
//!
//! - `prefer` / `require`: fill cores with the most free threads first, the same number of threads
//!   from each (t from the widest free core down; `require` stops at 2 threads); `prefer` then falls
//!   back to single free threads in core order.
//! - `isolate`: one thread from each wholly free core; the claim takes the whole core.
//! - emulator threads `isolate`: one more CPU, after the vCPUs' (a wholly free core of its own
//!   under thread policy `isolate`).
//!
//! Inside a core, threads are taken in ascending CPU order.

use smallvec::SmallVec;

use crate::cpuset::CpuSet;
use crate::fit::{Refusal, Shortfall};
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

/// The free threads of one core, ascending.
pub type Threads = SmallVec<[u32; 8]>;

/// Free pinnable threads of each core, in core order (cores with none left are kept, empty).
pub fn free_threads_by_core(cell: &HostCell) -> Vec<Threads> {
    let free = cell.free_pcpus();
    let free = free.words();
    let mut cores = Vec::with_capacity(cell.siblings.len());
    for core in &cell.siblings {
        // Word by word: this runs for every (guest cell, host cell) pair a search tries.
        let mut threads = Threads::new();
        for (i, (&c, &f)) in core.words().iter().zip(free).enumerate() {
            let mut both = c & f;
            while both != 0 {
                threads.push(i as u32 * 64 + both.trailing_zeros());
                both &= both - 1;
            }
        }
        cores.push(threads);
    }
    cores
}

/// Cores whose every thread is pinnable and free: the only cores `isolate` may use, so its claim
/// (which takes whole cores) cannot collide with anything.
pub fn wholly_free_cores(cell: &HostCell) -> Vec<&CpuSet> {
    let free = cell.free_pcpus();
    cell.siblings.iter().filter(|core| !core.is_empty() && core.is_subset(&free)).collect()
}

/// Step: the first `t` free threads of every core that has at least `t`, zipped with the vCPUs.
fn take_threads_per_core(cores: &[Threads], t: usize, vcpus: &[u32]) -> Option<Vec<(u32, u32)>> {
    if t * cores.iter().filter(|c| c.len() >= t).count() < vcpus.len() {
        return None;
    }
    let pcpus = cores.iter().filter(|c| c.len() >= t).flat_map(|c| c[..t].iter().copied());
    Some(vcpus.iter().copied().zip(pcpus).collect())
}

/// Step: every free thread as if it were a core of its own, in core order.
fn take_single_threads(cores: &[Threads], vcpus: &[u32]) -> Option<Vec<(u32, u32)>> {
    let pcpus: Vec<u32> = cores.iter().flatten().copied().collect();
    (pcpus.len() >= vcpus.len()).then(|| vcpus.iter().copied().zip(pcpus).collect())
}

/// Step: the first `n` free threads left after the vCPUs took theirs, in core order.
fn take_emulator_threads(cores: &[Threads], pairs: &[(u32, u32)], n: usize) -> Option<Vec<u32>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let taken: CpuSet = pairs.iter().map(|&(_, p)| p).collect();
    let rest: Vec<u32> = cores.iter().flatten().copied().filter(|p| !taken.contains(*p)).take(n).collect();
    (rest.len() == n).then_some(rest)
}

/// Step: the lowest thread of each of the first `n` wholly free cores no vCPU uses.
fn take_emulator_cores(free_cores: &[&CpuSet], pairs: &[(u32, u32)], n: usize) -> Option<Vec<u32>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let taken: CpuSet = pairs.iter().map(|&(_, p)| p).collect();
    let rest: Vec<u32> = free_cores.iter().filter(|c| !c.intersects(&taken)).filter_map(|c| c.first()).take(n).collect();
    (rest.len() == n).then_some(rest)
}

fn pin_isolate(cell: &HostCell, vcpus: &[u32], emulator: usize) -> Result<CellPinning, Refusal> {
    let free_cores = wholly_free_cores(cell);
    let needed = (vcpus.len() + emulator) as u64;
    let refuse = || Refusal::new(Shortfall::FreeCores, needed, free_cores.len() as u64);
    if free_cores.len() < vcpus.len() {
        return Err(refuse());
    }
    let pairs: Vec<(u32, u32)> = vcpus.iter().copied().zip(free_cores.iter().filter_map(|c| c.first())).collect();
    let emulator = take_emulator_cores(&free_cores, &pairs, emulator).ok_or_else(refuse)?;
    Ok(CellPinning { pairs, emulator })
}

fn pin_packed(cell: &HostCell, vcpus: &[u32], emulator: usize, policy: ThreadPolicy) -> Result<CellPinning, Refusal> {
    let require = policy == ThreadPolicy::Require;
    if require && cell.threads_per_core() < 2 {
        return Err(Refusal::new(Shortfall::SiblingThreads, 2, 1));
    }
    let cores = free_threads_by_core(cell);
    let widest = cores.iter().map(|c| c.len()).max().unwrap_or(0);
    let lowest = if require { 2 } else { 1 };
    for t in (lowest..=widest).rev() {
        let Some(pairs) = take_threads_per_core(&cores, t, vcpus) else {
            continue;
        };
        if let Some(emulator) = take_emulator_threads(&cores, &pairs, emulator) {
            return Ok(CellPinning { pairs, emulator });
        }
    }
    if !require {
        if let Some(pairs) = take_single_threads(&cores, vcpus) {
            if let Some(emulator) = take_emulator_threads(&cores, &pairs, emulator) {
                return Ok(CellPinning { pairs, emulator });
            }
        }
        let free: usize = cores.iter().map(|c| c.len()).sum();
        let short = if free >= vcpus.len() { Shortfall::EmulatorCpu } else { Shortfall::FreeCpus };
        return Err(Refusal::new(short, (vcpus.len() + emulator) as u64, free as u64));
    }
    let paired: usize = cores.iter().filter(|c| c.len() >= 2).map(|c| c.len()).sum();
    Err(Refusal::new(Shortfall::SiblingThreads, (vcpus.len() + emulator) as u64, paired as u64))
}

/// Step (balanced): whole free cores, ordered so that the cell stays inside one L3 cache when one
/// can hold it: the cache group with the fewest whole free cores that still has `cores` of them
/// first, then the others by descending size; core order inside a group.
fn whole_cores_by_cache(cell: &HostCell, cores: &[Threads], whole: &[usize], wanted: usize) -> Vec<usize> {
    if cell.cache_groups.is_empty() {
        return whole.to_vec();
    }
    let group_of = |k: usize| cores[k].first().and_then(|&t| cell.cache_groups.iter().position(|g| g.contains(t))).unwrap_or(usize::MAX);
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for &k in whole {
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
/// is broken for a thread or two; whole cores again only when those run out.
fn pin_keep_cores_whole(cell: &HostCell, vcpus: &[u32], emulator: usize) -> Result<CellPinning, Refusal> {
    let cores = free_threads_by_core(cell);
    let is_whole = |k: usize| !cores[k].is_empty() && cores[k].len() == cell.siblings[k].len();
    let whole: Vec<usize> = (0..cores.len()).filter(|&k| is_whole(k)).collect();
    let partial: Vec<usize> = (0..cores.len()).filter(|&k| !cores[k].is_empty() && !is_whole(k)).collect();
    let width = whole.iter().map(|&k| cores[k].len()).max().unwrap_or(1);
    let full_cores = vcpus.len() / width;
    let ordered = whole_cores_by_cache(cell, &cores, &whole, full_cores.max(1));
    let mut threads: Vec<u32> = Vec::new();
    threads.extend(ordered.iter().take(full_cores).flat_map(|&k| cores[k].iter().copied()));
    threads.extend(partial.iter().flat_map(|&k| cores[k].iter().copied()));
    threads.extend(ordered.iter().skip(full_cores).flat_map(|&k| cores[k].iter().copied()));
    let needed = vcpus.len() + emulator;
    if threads.len() < needed {
        return Err(Refusal::new(Shortfall::FreeCpus, needed as u64, threads.len() as u64));
    }
    let pairs = vcpus.iter().copied().zip(threads.iter().copied()).collect();
    Ok(CellPinning { pairs, emulator: threads[vcpus.len()..needed].to_vec() })
}

/// Pins `vcpus` (ascending) of one guest cell, plus `emulator` extra CPUs, on `cell`.
pub fn pin_cell(cell: &HostCell, vcpus: &[u32], emulator: usize, policy: ThreadPolicy) -> Result<CellPinning, Refusal> {
    pin_cell_packed(cell, vcpus, emulator, policy, Packing::Nova)
}

/// `pin_cell` with a choice of packing for `prefer`.
pub fn pin_cell_packed(
    cell: &HostCell,
    vcpus: &[u32],
    emulator: usize,
    policy: ThreadPolicy,
    packing: Packing,
) -> Result<CellPinning, Refusal> {
    match (policy, packing) {
        (ThreadPolicy::Isolate, _) => pin_isolate(cell, vcpus, emulator),
        (ThreadPolicy::Prefer, Packing::KeepCoresWhole) => pin_keep_cores_whole(cell, vcpus, emulator),
        (ThreadPolicy::Prefer | ThreadPolicy::Require, _) => pin_packed(cell, vcpus, emulator, policy),
    }
}
