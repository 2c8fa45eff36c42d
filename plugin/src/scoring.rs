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
/// The order depends on the host state and three facts of the guest only, so a prepared host
/// keeps each order it was asked for (`OrderKey`).
pub fn cell_order<'p>(prepared: &'p PreparedHost, guest: &GuestTopology, strategy: Strategy) -> &'p [usize] {
    let host = prepared.host();
    if host.cells.len() <= guest.cells.len() {
        return prepared.in_place_order();
    }
    let key = OrderKey { pins: guest.pins(), pack: strategy == Strategy::Pack, devices_first: !guest.pci_requests.is_empty() };
    prepared.cell_order(key, || sorted_cells(prepared, key))
}

/// What a trial order depends on besides the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderKey {
    pub pins: bool,
    pub pack: bool,
    pub devices_first: bool,
}

impl OrderKey {
    /// A slot per key, for `PreparedHost`'s orders.
    pub const SLOTS: usize = 8;

    pub fn slot(self) -> usize {
        usize::from(self.pins) | usize::from(self.pack) << 1 | usize::from(self.devices_first) << 2
    }
}

/// Nova's three stable sorts as one sort on (devices, CPUs, memory, position), each key flipped
/// where its sort is descending (Python's `sorted(reverse=True)` keeps equal keys in their
/// original order, as the position does here).
fn sorted_cells(prepared: &PreparedHost, key: OrderKey) -> CellOrder {
    let host = prepared.host();
    let flip = |descending: bool, v: u64| if descending { u64::MAX - v } else { v };
    // Pinned guests: most free pinnable CPUs first; floating guests: least used first.
    let cpus_descending = if key.pins { !key.pack } else { key.pack };
    let mut keyed: SmallVec<[(u64, u64, u64, usize); 16]> = host
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cpus = if key.pins { prepared.cores()[i].free() as u64 } else { u64::from(c.cpu_usage) };
            let devices: u64 = host.pci_pools.iter().filter(|p| p.numa_node == Some(c.id)).map(|p| u64::from(p.count)).sum();
            (flip(key.devices_first, devices), flip(cpus_descending, cpus), flip(!key.pack, c.avail_memory()), i)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(.., i)| i).collect()
}
