//! Claims and releases: what a placement takes from a host and gives back (Nova's
//! `numa_usage_from_instance_numa`), per NUMA cell, all or nothing.
//!
//! Memory is charged to the cell's `memory_usage` and, in pages of the chosen size (or the smallest
//! when none was chosen), to that page pool's `used`; floating vCPUs to `cpu_usage`; pinned vCPUs and
//! emulator CPUs to `pinned_cpus` (whole cores under thread policy isolate). A host that lists no
//! page pools is charged in plain memory. Release is the exact inverse: it refuses to give back
//! more than is in use rather than clamping at zero, so accounting drift surfaces as an error.

use crate::cpuset::CpuSet;
use crate::hugepages::pages_covering;
use crate::placement::{PlacedCell, Placement};
use crate::request::ThreadPolicy;
use crate::topology::{HostCell, HostTopology};

crate::named_enum! {
    /// Why a claim or release was refused, named as Nova's exception where Nova has one.
    pub enum AccountingCode {
        CpuPinningUnknown = "CPUPinningUnknown", CpuPinningInvalid = "CPUPinningInvalid",
        CpuUnpinningUnknown = "CPUUnpinningUnknown", CpuUnpinningInvalid = "CPUUnpinningInvalid",
        UnknownCell = "UnknownHostCell", UnknownPageSize = "MemoryPageSizeNotSupported",
        OverRelease = "OverRelease", InvalidInput = "InvalidInput",
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountingError {
    pub code: AccountingCode,
    pub host_cell: Option<u32>,
    pub cpus: CpuSet,
    pub message: String,
}

impl AccountingError {
    fn new(code: AccountingCode, host_cell: Option<u32>, cpus: CpuSet, message: String) -> Self {
        AccountingError { code, host_cell, cpus, message }
    }
}

impl std::fmt::Display for AccountingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.name_const(), self.message)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Claim,
    Release,
}

/// Pinning under isolate takes each touched core whole (Nova's `pin_cpus_with_siblings`).
fn with_siblings(cell: &HostCell, cpus: &CpuSet) -> CpuSet {
    let mut all = cpus.clone();
    for core in cell.siblings.iter().filter(|core| core.intersects(cpus)) {
        all = all.union(core);
    }
    all
}

fn pin(cell: &mut HostCell, cpus: &CpuSet, dir: Direction) -> Result<(), AccountingError> {
    let unknown = cpus.difference(&cell.pcpuset);
    let id = Some(cell.id);
    match dir {
        Direction::Claim => {
            if !unknown.is_empty() {
                return Err(AccountingError::new(
                    AccountingCode::CpuPinningUnknown,
                    id,
                    unknown.clone(),
                    format!("host cell {}: CPUs {unknown} are not pinnable here (pinnable: {})", cell.id, cell.pcpuset),
                ));
            }
            let taken = cpus.intersection(&cell.pinned_cpus);
            if !taken.is_empty() {
                return Err(AccountingError::new(
                    AccountingCode::CpuPinningInvalid,
                    id,
                    taken.clone(),
                    format!("host cell {}: CPUs {taken} are already pinned (free: {})", cell.id, cell.free_pcpus()),
                ));
            }
            cell.pinned_cpus = cell.pinned_cpus.union(cpus);
        }
        Direction::Release => {
            if !unknown.is_empty() {
                return Err(AccountingError::new(
                    AccountingCode::CpuUnpinningUnknown,
                    id,
                    unknown.clone(),
                    format!("host cell {}: CPUs {unknown} are not pinnable here (pinnable: {})", cell.id, cell.pcpuset),
                ));
            }
            let not_pinned = cpus.difference(&cell.pinned_cpus);
            if !not_pinned.is_empty() {
                return Err(AccountingError::new(
                    AccountingCode::CpuUnpinningInvalid,
                    id,
                    not_pinned.clone(),
                    format!("host cell {}: CPUs {not_pinned} are not pinned (pinned: {})", cell.id, cell.pinned_cpus),
                ));
            }
            cell.pinned_cpus = cell.pinned_cpus.difference(cpus);
        }
    }
    Ok(())
}

fn over_release(cell: u32, what: String) -> AccountingError {
    AccountingError::new(AccountingCode::OverRelease, Some(cell), CpuSet::new(), format!("host cell {cell}: {what}"))
}

fn overflow(cell: u32) -> AccountingError {
    AccountingError::new(AccountingCode::InvalidInput, Some(cell), CpuSet::new(), format!("host cell {cell}: usage would overflow"))
}

fn apply(cell: &mut HostCell, placed: &PlacedCell, placement: &Placement, dir: Direction) -> Result<(), AccountingError> {
    let id = cell.id;
    // CPUs first: a double claim or a stray release is reported as the pinning conflict it is.
    if placement.pins() {
        let mut cpus = placed.pinned_pcpus();
        if placement.thread_policy == Some(ThreadPolicy::Isolate) {
            cpus = with_siblings(cell, &cpus);
        }
        pin(cell, &cpus, dir)?;
    }
    // Memory in pages of the chosen size, or of the smallest when none was chosen.
    let size = placed.pagesize_kb.or_else(|| cell.smallest_pages().map(|p| p.size_kb));
    if let Some(size) = size {
        let Some(pool) = cell.mempages.iter_mut().find(|p| p.size_kb == size) else {
            return Err(AccountingError::new(
                AccountingCode::UnknownPageSize,
                Some(id),
                CpuSet::new(),
                format!("host cell {id} has no {size} KiB page pool"),
            ));
        };
        // Memory that is not a whole number of pages takes the last page whole.
        let pages = pages_covering(size, placed.memory);
        // Hugepages asked for by size are locked memory: a claim never takes more than are free
        // (what a fit checked). The smallest pages may be overcommitted, as Nova records it.
        if dir == Direction::Claim && placed.pagesize_kb.is_some() && pages > pool.free() {
            return Err(AccountingError::new(
                AccountingCode::InvalidInput,
                Some(id),
                CpuSet::new(),
                format!("host cell {id}: {pages} {size} KiB pages asked, {} free", pool.free()),
            ));
        }
        pool.used = match dir {
            Direction::Claim => pool.used.checked_add(pages).ok_or_else(|| overflow(id))?,
            Direction::Release => pool
                .used
                .checked_sub(pages)
                .ok_or_else(|| over_release(id, format!("releasing {pages} {size} KiB pages but only {} are used", pool.used)))?,
        };
    }
    cell.memory_usage = match dir {
        Direction::Claim => cell.memory_usage.checked_add(placed.memory).ok_or_else(|| overflow(id))?,
        Direction::Release => cell
            .memory_usage
            .checked_sub(placed.memory)
            .ok_or_else(|| over_release(id, format!("releasing {} MiB but only {} MiB are in use", placed.memory, cell.memory_usage)))?,
    };
    let floating = placed.cpuset.len() as u32;
    cell.cpu_usage = match dir {
        Direction::Claim => cell.cpu_usage.checked_add(floating).ok_or_else(|| overflow(id))?,
        Direction::Release => cell
            .cpu_usage
            .checked_sub(floating)
            .ok_or_else(|| over_release(id, format!("releasing {floating} shared vCPUs but only {} are placed", cell.cpu_usage)))?,
    };
    Ok(())
}

fn account(host: &HostTopology, placement: &Placement, dir: Direction) -> Result<HostTopology, AccountingError> {
    host.validate().map_err(|e| AccountingError::new(AccountingCode::InvalidInput, None, CpuSet::new(), format!("invalid host: {e}")))?;
    // Work on a copy: an error anywhere leaves the caller's host untouched.
    let mut next = host.clone();
    for cell in placed_cells(host, placement, dir)? {
        if let Some(c) = next.cell_mut(cell.id) {
            *c = cell;
        }
    }
    Ok(next)
}

/// The cells `placement` uses, each as the placement leaves it (copies; the host is untouched).
fn placed_cells(host: &HostTopology, placement: &Placement, dir: Direction) -> Result<Vec<HostCell>, AccountingError> {
    let mut seen = Vec::new();
    for placed in &placement.cells {
        if seen.contains(&placed.host_cell) {
            return Err(AccountingError::new(
                AccountingCode::InvalidInput,
                Some(placed.host_cell),
                CpuSet::new(),
                format!("placement puts two guest cells on host cell {}", placed.host_cell),
            ));
        }
        seen.push(placed.host_cell);
    }
    let mut cells: Vec<HostCell> = Vec::with_capacity(placement.cells.len());
    for placed in &placement.cells {
        let mut cell = host.cell(placed.host_cell).cloned().ok_or_else(|| {
            AccountingError::new(
                AccountingCode::UnknownCell,
                Some(placed.host_cell),
                CpuSet::new(),
                format!("guest cell {} is placed on host cell {}, which the host does not have", placed.guest_cell, placed.host_cell),
            )
        })?;
        apply(&mut cell, placed, placement, dir)?;
        cells.push(cell);
    }
    Ok(cells)
}

/// The cells a claim of `placement` uses, as the claim leaves them, by the same accounting as
/// `claim` but without validating or copying the rest of the host: for a caller that holds a host
/// validated already and needs only what changes (a fleet scoring thousands of hosts).
pub fn claimed_cells(host: &HostTopology, placement: &Placement) -> Result<Vec<HostCell>, AccountingError> {
    placed_cells(host, placement, Direction::Claim)
}

/// The host after `placement` takes its resources.
pub fn claim(host: &HostTopology, placement: &Placement) -> Result<HostTopology, AccountingError> {
    account(host, placement, Direction::Claim)
}

/// The host after `placement` gives its resources back.
pub fn release(host: &HostTopology, placement: &Placement) -> Result<HostTopology, AccountingError> {
    account(host, placement, Direction::Release)
}
