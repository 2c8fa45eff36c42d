//! The order in which host cells are tried (Nova's three stable sorts), which decides where a
//! guest lands when several cells would do.

use smallvec::SmallVec;

use crate::cores::PreparedHost;
use crate::fit::Strategy;
use crate::request::GuestTopology;

/// Host cell positions (in `host.cells`), in trial order; inline for hosts of up to 16 cells.
pub type CellOrder = SmallVec<[usize; 16]>;

/// Host cell positions in trial order. Cells are reordered only when the host has more cells
/// than the guest needs; each sort is stable, so the last one is the primary key:
/// available memory, then shared-vCPU usage (floating guests) or free pinnable CPUs (pinned
/// guests), then PCI devices per cell (with devices first when the guest asks for some).
pub fn cell_order(prepared: &PreparedHost, guest: &GuestTopology, strategy: Strategy) -> CellOrder {
    let host = prepared.host();
    let mut order: CellOrder = (0..host.cells.len()).collect();
    if host.cells.len() <= guest.cells.len() {
        return order;
    }
    let pack = strategy == Strategy::Pack;
    let cells = &host.cells;
    // Keys computed once per cell, not once per comparison.
    let memory: Vec<u64> = cells.iter().map(|c| c.avail_memory()).collect();
    let cpus: Vec<u64> = if guest.pins() {
        prepared.cores().iter().map(|c| c.free() as u64).collect()
    } else {
        cells.iter().map(|c| u64::from(c.cpu_usage)).collect()
    };
    // Python's `sorted(reverse=True)` keeps equal keys in their original order, as does a stable
    // sort on the flipped comparison.
    let sort_by_key = |order: &mut CellOrder, descending: bool, key: &[u64]| {
        order.sort_by(|&a, &b| if descending { key[b].cmp(&key[a]) } else { key[a].cmp(&key[b]) });
    };
    sort_by_key(&mut order, !pack, &memory);
    // Pinned guests: most free pinnable CPUs first; floating guests: least used first.
    sort_by_key(&mut order, if guest.pins() { !pack } else { pack }, &cpus);
    if !host.pci_pools.is_empty() {
        let devices: Vec<u64> =
            cells.iter().map(|c| host.pci_pools.iter().filter(|p| p.numa_node == Some(c.id)).map(|p| u64::from(p.count)).sum()).collect();
        sort_by_key(&mut order, !guest.pci_requests.is_empty(), &devices);
    }
    order
}
