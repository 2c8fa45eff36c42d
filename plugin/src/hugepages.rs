//! Which page size backs a guest cell's memory on a host cell, and whether enough free pages of
//! it remain (Nova's `_numa_cell_supports_pagesize_request` and `can_fit_pagesize`).

use crate::fit::{Refusal, Shortfall};
use crate::request::PageSizeWish;
use crate::topology::{HostCell, PagePool};

/// Page sizes to try for a wish, in Nova's order: largest first; small = only the smallest,
/// large = all but the smallest, any = all, an explicit size = just that one.
pub fn candidates(cell: &HostCell, wish: PageSizeWish) -> Vec<u32> {
    let mut sizes: Vec<u32> = cell.mempages.iter().map(|p| p.size_kb).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    match wish {
        PageSizeWish::Small => sizes.last().copied().into_iter().collect(),
        PageSizeWish::Large => {
            sizes.pop();
            sizes
        }
        PageSizeWish::Any => sizes,
        PageSizeWish::Kib(size) => vec![size],
    }
}

/// Pages of `pool` needed for `memory_mb`, when the memory is a whole number of them.
pub fn pages_needed(pool_size_kb: u32, memory_mb: u64) -> Option<u64> {
    let kb = memory_mb.checked_mul(1024)?;
    let size = u64::from(pool_size_kb);
    (kb % size == 0).then_some(kb / size)
}

/// Hugepages are locked memory, so only free pages count: no overcommit.
pub fn fits_in_free_pages(pool: &PagePool, memory_mb: u64) -> bool {
    pages_needed(pool.size_kb, memory_mb).is_some_and(|n| n <= pool.free())
}

/// The page size chosen for a guest cell that asked for one, or why none works.
pub fn choose_page_size(cell: &HostCell, wish: PageSizeWish, memory_mb: u64) -> Result<u32, Refusal> {
    let sizes = candidates(cell, wish);
    for &size in &sizes {
        match cell.pages_of(size) {
            Some(pool) if fits_in_free_pages(pool, memory_mb) => return Ok(size),
            Some(_) => {}
            // An explicit size the cell has no pool of: the cell does not fit.
            None => return Err(Refusal::new(Shortfall::Pages, u64::from(size), 0).with_page_size(size)),
        }
    }
    // Report against the first candidate: the one Nova would have preferred.
    let first = sizes.first().copied();
    let (needed, available) = first
        .and_then(|s| cell.pages_of(s))
        .map(|p| (pages_needed(p.size_kb, memory_mb).unwrap_or(u64::MAX), p.free()))
        .unwrap_or((memory_mb, 0));
    let mut refusal = Refusal::new(Shortfall::Pages, needed, available);
    refusal.page_size_kb = first;
    Err(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuset::CpuSet;

    fn cell(pools: &[(u32, u64, u64)]) -> HostCell {
        HostCell {
            id: 0,
            cpuset: CpuSet::new(),
            pcpuset: CpuSet::new(),
            memory: 8192,
            cpu_usage: 0,
            memory_usage: 0,
            pinned_cpus: CpuSet::new(),
            siblings: vec![],
            cache_groups: vec![],
            mempages: pools.iter().map(|&(size_kb, total, used)| PagePool { size_kb, total, used, reserved: 0 }).collect(),
            socket: None,
            network_metadata: None,
        }
    }

    #[test]
    fn wishes_pick_sizes_largest_first() {
        let c = cell(&[(4, 1 << 20, 0), (2048, 512, 0), (1048576, 2, 0)]);
        assert_eq!(candidates(&c, PageSizeWish::Small), vec![4]);
        assert_eq!(candidates(&c, PageSizeWish::Large), vec![1048576, 2048]);
        assert_eq!(candidates(&c, PageSizeWish::Any), vec![1048576, 2048, 4]);
        assert_eq!(choose_page_size(&c, PageSizeWish::Large, 2048), Ok(1048576));
        // 1022 MiB is not a whole number of 1 GiB pages: falls to 2 MiB.
        assert_eq!(choose_page_size(&c, PageSizeWish::Large, 1022), Ok(2048));
        // 4 GiB: two 1 GiB pages and 512 2 MiB pages are too few; small pages hold it.
        assert_eq!(choose_page_size(&c, PageSizeWish::Any, 4096), Ok(4));
    }

    #[test]
    fn explicit_size_absent_or_short_refuses() {
        let c = cell(&[(4, 1 << 20, 0), (2048, 512, 500)]);
        let r = choose_page_size(&c, PageSizeWish::Kib(1048576), 1024).unwrap_err();
        assert_eq!((r.shortfall, r.page_size_kb), (Shortfall::Pages, Some(1048576)));
        let r = choose_page_size(&c, PageSizeWish::Kib(2048), 1024).unwrap_err();
        assert_eq!((r.needed, r.available), (512, 12));
    }
}
