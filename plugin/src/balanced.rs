//! The `balanced` policy: the same per-cell rules as `nova` (memory and pages, CPU counts, thread
//! and emulator policies, allocation ratios, PCI and network affinity) and a different choice among
//! the placements those rules allow. In order of importance:
//!
//! 1. a multi-cell guest goes on host cells close to each other: the smallest sum of NUMA
//!    distances (SLIT) between the cells it uses, so its cells talk over the shortest links;
//! 2. then the placement that breaks the fewest wholly free cores, which later `isolate` and
//!    `require` guests need;
//! 3. then the one that leaves the least stranded capacity: in each cell it uses, the share of
//!    CPUs left free and the share of memory left free stay as close as possible (a cell with free
//!    CPUs and no memory, or the reverse, can hold nobody);
//! 4. then Nova's order.
//!
//! Inside a cell, `prefer` fills whole cores, puts odd vCPUs and the emulator thread on cores
//! already in use, and stays within one L3 cache when one can hold the cell (`pinning::Packing`).
//!
//! Candidate cell sets are grown around each host cell by distance until the guest's cells can be
//! matched to them, then assigned cheapest-first with the same matching bound as the `nova` search;
//! anchors that yield the same set are evaluated once. Polynomial, like the `nova` search.

use crate::cores::{FreeCores, PreparedHost};
use crate::fit::Limits;
use crate::pinning::{CellPinning, Packing};
use crate::placement::{Placement, Rejection};
use crate::request::{GuestTopology, ValidRequest};
use crate::search::{answer_without_search, Assignment, Decision, FitTable, Slots};
use crate::topology::HostCell;

/// Wholly free cores a fit breaks (takes some but not all threads of).
fn broken_cores(cell: &HostCell, cores: &FreeCores, pinning: &CellPinning) -> u64 {
    let used: crate::CpuSet = pinning.pairs.iter().map(|&(_, p)| p).chain(pinning.emulator.iter().copied()).collect();
    let whole = cores.whole().iter().map(|&k| &cell.siblings[k as usize]);
    whole.filter(|core| core.intersects(&used) && !core.is_subset(&used)).count() as u64
}

/// How far apart (per mille) the free CPU share and the free memory share of the cell end up.
fn stranding(cell: &HostCell, guest: &GuestTopology, g: usize, pinning: &CellPinning, limits: &Limits) -> u64 {
    let want = &guest.cells[g];
    let cpu_share = if guest.pins() {
        let total = cell.pcpuset.len().max(1) as f64;
        let free = cell.pcpuset.difference_len(&cell.pinned_cpus) as f64 - (pinning.pairs.len() + pinning.emulator.len()) as f64;
        free / total
    } else {
        let capacity = cell.cpuset.len() as f64 * limits.cpu_allocation_ratio.unwrap_or(1.0);
        (capacity - f64::from(cell.cpu_usage) - want.cpuset.len() as f64) / capacity.max(1.0)
    };
    let mem_share = (cell.avail_memory() as f64 - want.memory as f64) / (cell.memory.max(1) as f64);
    ((cpu_share.clamp(0.0, 1.0) - mem_share.clamp(0.0, 1.0)).abs() * 1000.0) as u64
}

struct Costs {
    /// Per (guest cell, column): (broken cores, stranding); None where the cell does not fit.
    pair: Vec<Option<(u64, u64)>>,
    columns: usize,
}

impl Costs {
    fn of(&self, g: usize, k: usize) -> Option<(u64, u64)> {
        self.pair[g * self.columns + k]
    }
}

/// Guest cells assigned to allowed columns, cheapest first, with the matching bound.
fn assign_cheapest(table: &FitTable, costs: &Costs, g: usize, used: &mut [bool], assign: &mut Vec<usize>) -> bool {
    if g == table.guest.cells.len() {
        return table.whole_placement_ok(assign);
    }
    let mut candidates: Vec<usize> = (0..table.columns()).filter(|&k| !used[k] && costs.of(g, k).is_some()).collect();
    candidates.sort_by_key(|&k| (costs.of(g, k), k));
    for k in candidates {
        used[k] = true;
        assign.push(k);
        if table.matchable(g + 1, used) && assign_cheapest(table, costs, g + 1, used, assign) {
            return true;
        }
        assign.pop();
        used[k] = false;
    }
    false
}

/// (sum of distances between used cells, broken cores, stranding, columns in Nova's order).
type Score = (u64, u64, u64, Vec<usize>);

fn score(table: &FitTable, costs: &Costs, assign: &[usize]) -> Score {
    let host = table.host;
    let mut distance = 0u64;
    for (i, &a) in assign.iter().enumerate() {
        for &b in &assign[i + 1..] {
            distance += u64::from(host.distance(table.order[a], table.order[b]).unwrap_or(0));
        }
    }
    let (mut broken, mut stranded) = (0, 0);
    for (g, &k) in assign.iter().enumerate() {
        let (b, s) = costs.of(g, k).unwrap_or((0, 0));
        broken += b;
        stranded += s;
    }
    (distance, broken, stranded, assign.to_vec())
}

/// Places `guest` on `host` with the balanced policy, or explains why it cannot.
pub fn fit(prepared: &PreparedHost, guest: &ValidRequest, limits: &Limits, policy: &str) -> Result<Placement, Rejection> {
    decide(prepared, guest, limits, policy, &mut Slots::new()).answer(policy)
}

/// The balanced policy's assignment of `guest` on `host`, or the table that shows there is none.
pub(crate) fn decide<'a>(
    prepared: &'a PreparedHost,
    guest: &'a ValidRequest,
    limits: &'a Limits,
    policy: &str,
    slots: &'a mut Slots,
) -> Decision<'a> {
    let request = guest;
    let guest = guest.get();
    let host = prepared.host();
    if let Some(answer) = answer_without_search(prepared, guest, policy) {
        return Decision::Answered(answer);
    }
    let mut table = FitTable::new(prepared, request, limits, Packing::KeepCoresWhole, slots);
    table.fill();
    let n = table.columns();
    if !table.all_matchable() {
        return Decision::Refused(table);
    }
    let k = guest.cells.len();
    let mut pair = vec![None; k * n];
    for g in 0..k {
        for col in 0..n {
            if let Some(Ok(fit)) = table.result(g, col) {
                let (cell, cores) = (&host.cells[table.order[col]], &prepared.cores()[table.order[col]]);
                let pinning = table.pinning(g, col, fit);
                pair[g * n + col] = Some((broken_cores(cell, cores, &pinning), stranding(cell, guest, g, &pinning, limits)));
            }
        }
    }
    let costs = Costs { pair, columns: n };
    let usable: Vec<bool> = (0..n).map(|col| (0..k).any(|g| costs.of(g, col).is_some())).collect();
    let distance = |a: usize, b: usize| host.distance(table.order[a], table.order[b]).unwrap_or(0);

    let mut best: Option<Score> = None;
    let mut tried: Vec<Vec<usize>> = Vec::new();
    for anchor in (0..n).filter(|&a| usable[a]) {
        // Usable cells nearest the anchor first (Nova's order among equals), until the guest fits.
        let mut near: Vec<usize> = (0..n).filter(|&c| usable[c]).collect();
        near.sort_by_key(|&c| (distance(anchor, c), c != anchor, c));
        let mut blocked = vec![true; n];
        let mut set = Vec::new();
        for &c in &near {
            blocked[c] = false;
            set.push(c);
            if set.len() >= k && table.matchable(0, &blocked) {
                break;
            }
        }
        set.sort_unstable();
        if tried.contains(&set) {
            continue;
        }
        tried.push(set);
        let mut assign = Vec::with_capacity(k);
        if assign_cheapest(&table, &costs, 0, &mut blocked, &mut assign) {
            let s = score(&table, &costs, &assign);
            if best.as_ref().is_none_or(|b| s < *b) {
                best = Some(s);
            }
        }
    }
    // PCI or network needs can rule out every compact set: then any assignment that meets them.
    if best.is_none() {
        let mut used = vec![false; n];
        let mut assign = Vec::with_capacity(k);
        if assign_cheapest(&table, &costs, 0, &mut used, &mut assign) {
            best = Some(score(&table, &costs, &assign));
        }
    }
    match best {
        Some((_, _, _, assign)) => Decision::Placed(table, Assignment::from_vec(assign)),
        None => Decision::Refused(table),
    }
}
