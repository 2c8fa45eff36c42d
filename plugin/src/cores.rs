//! The free pinnable threads of a host cell, core by core, and its CPU counts: what every
//! per-cell check and pinning step reads.
//!
//! Derived from the cell once (once per loaded host state, or once per call for a one-shot fit)
//! rather than once for every (guest cell, host cell) pair a search tries: a scheduler asks many
//! requests of one host state, and the pinning steps then only read slices.

use std::borrow::Cow;

use std::sync::OnceLock;

use smallvec::SmallVec;

use crate::scoring::{CellOrder, OrderKey};
use crate::topology::{HostCell, HostTopology, PagePool};

/// The numbers of a host cell the per-cell checks read, copied next to its free cores. A fleet
/// call is bound by memory latency, not arithmetic: with these beside the counts, deciding a
/// (guest cell, host cell) pair reads one small record instead of a dozen scattered lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CellUsage {
    pub id: u32,
    /// MiB (`HostCell::memory`).
    pub memory: u64,
    pub memory_usage: u64,
    /// `HostCell::avail_memory`.
    pub avail_memory: u64,
    pub cpu_usage: u32,
    /// `HostCell::smallest_pages`.
    pub smallest_pages: Option<PagePool>,
}

impl CellUsage {
    pub fn of(cell: &HostCell) -> CellUsage {
        CellUsage {
            id: cell.id,
            memory: cell.memory,
            memory_usage: cell.memory_usage,
            avail_memory: cell.avail_memory(),
            cpu_usage: cell.cpu_usage,
            smallest_pages: cell.smallest_pages().cloned(),
        }
    }
}

/// Free pinnable threads of one host cell, grouped by physical core (sibling group), cores in
/// packing order, threads ascending inside a core. Cores with no free thread are kept, empty, so
/// core `k` here is `cell.siblings[k]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeCores {
    /// Every core's free threads, one core after another.
    threads: Vec<u32>,
    /// Where each core's threads end in `threads`.
    ends: Vec<u32>,
    /// Cores whose every thread is pinnable and free (the only cores `isolate` may use), in core order.
    whole: Vec<u32>,
    /// Cores with at least t free threads, at index t (index 0: every core); inline up to SMT8.
    with_at_least: SmallVec<[u32; 9]>,
    /// Wholly free cores as wide as the cell's widest (`threads_per_core`): `isolate`'s cores.
    wide_whole: usize,
    /// Most free threads on one core.
    widest: usize,
    /// Most threads of one core usable by guests (shared or pinnable); 1 without SMT.
    threads_per_core: usize,
    /// Sizes of the cell's pinnable and shared sets (`pcpuset`, `cpuset`).
    pinnable: usize,
    shared: usize,
    /// The cell's own numbers the checks read.
    usage: CellUsage,
}

impl FreeCores {
    pub fn of(cell: &HostCell) -> FreeCores {
        let free = cell.free_pcpus();
        let free = free.words();
        let mut out = FreeCores {
            threads: Vec::with_capacity(free.iter().map(|w| w.count_ones() as usize).sum()),
            ends: Vec::with_capacity(cell.siblings.len()),
            whole: Vec::new(),
            with_at_least: SmallVec::new(),
            wide_whole: 0,
            widest: 0,
            threads_per_core: cell.threads_per_core(),
            pinnable: cell.pcpuset.len(),
            shared: cell.cpuset.len(),
            usage: CellUsage::of(cell),
        };
        for (k, core) in cell.siblings.iter().enumerate() {
            let start = out.threads.len();
            // Word by word: a core's threads are the set bits of (core ∩ free).
            for (i, (&c, &f)) in core.words().iter().zip(free).enumerate() {
                let mut both = c & f;
                while both != 0 {
                    out.threads.push(i as u32 * 64 + both.trailing_zeros());
                    both &= both - 1;
                }
            }
            let n = out.threads.len() - start;
            if n > 0 && n == core.len() {
                out.whole.push(k as u32);
                out.wide_whole += usize::from(n >= out.threads_per_core);
            }
            out.widest = out.widest.max(n);
            out.ends.push(out.threads.len() as u32);
        }
        out.with_at_least = (0..=out.widest).map(|t| (0..out.len()).filter(|&k| out.core(k).len() >= t).count() as u32).collect();
        out
    }

    /// Number of cores (free threads or not).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Free threads of core `k`, ascending.
    pub fn core(&self, k: usize) -> &[u32] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        &self.threads[start..self.ends[k] as usize]
    }

    /// Each core's free threads, in core order.
    pub fn iter(&self) -> impl Iterator<Item = &[u32]> + '_ {
        self.ends.iter().scan(0usize, |start, &end| {
            let core = &self.threads[*start..end as usize];
            *start = end as usize;
            Some(core)
        })
    }

    /// Every free thread, in core order.
    pub fn threads(&self) -> &[u32] {
        &self.threads
    }

    /// Number of free pinnable CPUs.
    pub fn free(&self) -> usize {
        self.threads.len()
    }

    /// Every free thread, in core order, when that is what taking the first `t` of every core with
    /// at least `t` gives: every core with a free thread has exactly `t`, as on a cell pinned by
    /// whole cores. Pinning then copies one run instead of walking the cores.
    pub fn threads_when_every_core_has(&self, t: usize) -> Option<&[u32]> {
        (t > 0 && self.with_at_least(1) == self.with_at_least(t) && self.with_at_least(t + 1) == 0).then_some(&self.threads[..])
    }

    /// Number of cores with at least `t` free threads.
    pub fn with_at_least(&self, t: usize) -> usize {
        self.with_at_least.get(t).map_or(0, |&n| n as usize)
    }

    /// Most free threads on one core.
    pub fn widest(&self) -> usize {
        self.widest
    }

    /// Indices of the wholly free cores, in core order.
    pub fn whole(&self) -> &[u32] {
        &self.whole
    }

    /// Number of wholly free cores as wide as the cell's widest.
    pub fn wide_whole(&self) -> usize {
        self.wide_whole
    }

    /// The cell's own numbers (memory, usage, smallest pages).
    pub fn usage(&self) -> &CellUsage {
        &self.usage
    }

    pub fn is_whole(&self, k: usize) -> bool {
        self.whole.binary_search(&(k as u32)).is_ok()
    }

    /// Number of pinnable CPUs of the cell, free or not.
    pub fn pinnable(&self) -> usize {
        self.pinnable
    }

    /// Number of shared CPUs of the cell.
    pub fn shared(&self) -> usize {
        self.shared
    }

    /// Most threads of one core usable by guests (shared or pinnable); 1 on a host without SMT.
    pub fn threads_per_core(&self) -> usize {
        self.threads_per_core
    }
}

/// A host ready for many fits: the model plus what every fit would otherwise derive from it
/// again (each cell's free cores). A loaded `host-state` keeps one; a one-shot fit makes one
/// around a borrowed host.
#[derive(Clone, Debug)]
pub struct PreparedHost<'a> {
    host: Cow<'a, HostTopology>,
    cores: Vec<FreeCores>,
    /// Every cell in place: the trial order when the guest needs every cell.
    in_place: CellOrder,
    /// The trial orders asked for so far, by `OrderKey::slot` (the host never changes under them).
    orders: [OnceLock<CellOrder>; OrderKey::SLOTS],
}

impl PreparedHost<'static> {
    /// Prepares a host the caller hands over (normalized and valid: `HostTopology::normalized`,
    /// `validate`; entry points that take a host from outside check it once there).
    pub fn owned(host: HostTopology) -> Self {
        let cores = host.cells.iter().map(FreeCores::of).collect();
        let in_place = (0..host.cells.len()).collect();
        PreparedHost { host: Cow::Owned(host), cores, in_place, orders: Default::default() }
    }
}

impl<'a> PreparedHost<'a> {
    /// Prepares a host for the duration of a borrow (normalized and valid, as for `owned`).
    pub fn borrowed(host: &'a HostTopology) -> Self {
        let cores = host.cells.iter().map(FreeCores::of).collect();
        PreparedHost { host: Cow::Borrowed(host), cores, in_place: (0..host.cells.len()).collect(), orders: Default::default() }
    }

    pub fn host(&self) -> &HostTopology {
        &self.host
    }

    /// Free cores of each cell, by position in `host().cells`.
    pub fn cores(&self) -> &[FreeCores] {
        &self.cores
    }

    /// Every cell in place, in `host().cells` order.
    pub fn in_place_order(&self) -> &[usize] {
        &self.in_place
    }

    /// The trial order for `key`, made by `make` the first time it is asked for.
    pub fn cell_order(&self, key: OrderKey, make: impl FnOnce() -> CellOrder) -> &CellOrder {
        self.orders[key.slot()].get_or_init(make)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuset::CpuSet;

    fn cell(pcpus: &[u32], pinned: &[u32], siblings: &[&[u32]]) -> HostCell {
        HostCell {
            id: 0,
            cpuset: CpuSet::new(),
            pcpuset: pcpus.iter().copied().collect(),
            memory: 1024,
            cpu_usage: 0,
            memory_usage: 0,
            pinned_cpus: pinned.iter().copied().collect(),
            host_cpus: CpuSet::new(),
            siblings: siblings.iter().map(|s| s.iter().copied().collect()).collect(),
            cache_groups: Vec::new(),
            mempages: Vec::new(),
            socket: None,
            network_metadata: None,
        }
    }

    #[test]
    fn threads_by_core_and_whole_cores() {
        // Core {2,6} holds an unpinnable thread (6), core {1,5} a pinned one (5).
        let c = cell(&[0, 1, 2, 3, 4, 5, 7], &[5], &[&[0, 4], &[1, 5], &[2, 6], &[3, 7]]);
        let f = FreeCores::of(&c);
        assert_eq!(f.iter().collect::<Vec<_>>(), vec![&[0, 4][..], &[1][..], &[2][..], &[3, 7][..]]);
        assert_eq!(f.threads(), &[0, 4, 1, 2, 3, 7]);
        assert_eq!(f.whole(), &[0, 3]);
        assert!(f.is_whole(3) && !f.is_whole(1));
        assert_eq!((f.free(), f.widest(), f.threads_per_core()), (6, 2, 2));
        assert_eq!((f.with_at_least(1), f.with_at_least(2), f.with_at_least(3)), (4, 2, 0));
        assert_eq!((f.pinnable(), f.shared()), (7, 0));
    }

    #[test]
    fn a_fully_pinned_core_stays_in_place_empty() {
        let c = cell(&[0, 1, 2, 3], &[0, 2], &[&[0, 2], &[1, 3]]);
        let f = FreeCores::of(&c);
        assert_eq!(f.len(), 2);
        assert!(f.core(0).is_empty());
        assert_eq!(f.core(1), &[1, 3]);
        assert_eq!(f.whole(), &[1]);
    }
}
