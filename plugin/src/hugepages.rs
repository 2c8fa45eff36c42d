//! Which page size backs a guest cell's memory on a host cell, and whether enough free pages of
//! it remain (Nova's `_numa_cell_supports_pagesize_request` and `can_fit_pagesize`).

use crate::refusal::{Refusal, Shortfall};
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

/// Pages of `pool_size_kb` that `memory_mb` occupies, the last one whole: what a refusal reports
/// as `needed` (always a page count), and what accounting charges.
pub fn pages_covering(pool_size_kb: u32, memory_mb: u64) -> u64 {
    let size = u64::from(pool_size_kb.max(1));
    // In u64 whenever the KiB fit (a u128 division is a library call in wasm, and every refusal
    // of a cell's memory counts its pages).
    match memory_mb.checked_mul(1024) {
        Some(kb) => kb.div_ceil(size),
        None => (u128::from(memory_mb) * 1024).div_ceil(u128::from(size)).min(u128::from(u64::MAX)) as u64,
    }
}

/// Hugepages are locked memory, so only free pages count: no overcommit.
pub fn fits_in_free_pages(pool: &PagePool, memory_mb: u64) -> bool {
    pages_needed(pool.size_kb, memory_mb).is_some_and(|n| n <= pool.free())
}

/// Nova's `can_fit_pagesize`: a whole number of pages, within the free pages (`use_free`) or
/// within the pool's total (overcommit of the smallest pages by unpinned guests).
pub fn fits_in_pages(pool: &PagePool, memory_mb: u64, use_free: bool) -> bool {
    let avail = if use_free { pool.free() } else { pool.total };
    pages_needed(pool.size_kb, memory_mb).is_some_and(|n| n <= avail)
}

/// A `Pages` refusal on `pool`, counted in its pages.
pub fn pages_refusal(pool: &PagePool, memory_mb: u64, use_free: bool) -> Refusal {
    let available = if use_free { pool.free() } else { pool.total };
    Refusal::new(Shortfall::Pages, pages_covering(pool.size_kb, memory_mb), available).with_page_size(pool.size_kb)
}

/// The page size chosen for a guest cell that asked for one, or why none works.
pub fn choose_page_size(cell: &HostCell, wish: PageSizeWish, memory_mb: u64) -> Result<u32, Refusal> {
    let sizes = candidates(cell, wish);
    for &size in &sizes {
        match cell.pages_of(size) {
            Some(pool) if fits_in_free_pages(pool, memory_mb) => return Ok(size),
            Some(_) => {}
            // An explicit size the cell has no pool of: the cell does not fit (0 such pages).
            None => return Err(Refusal::new(Shortfall::Pages, pages_covering(size, memory_mb), 0).with_page_size(size)),
        }
    }
    // Report against the first candidate: the one Nova would have preferred.
    match sizes.first().and_then(|&s| cell.pages_of(s)) {
        Some(pool) => Err(pages_refusal(pool, memory_mb, true)),
        // `large` on a cell with one pool (or none): there is no size to count in.
        None => Err(Refusal::new(Shortfall::Pages, 0, 0)),
    }
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
            host_cpus: CpuSet::new(),
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
        // `needed` is a page count in every pages refusal: one 1 GiB page for 1 GiB.
        assert_eq!((r.needed, r.available), (1, 0));
        let r = choose_page_size(&c, PageSizeWish::Kib(2048), 1024).unwrap_err();
        assert_eq!((r.needed, r.available), (512, 12));
    }

    #[test]
    fn pages_covering_rounds_up_and_saturates() {
        assert_eq!(pages_covering(2048, 3), 2);
        assert_eq!(pages_covering(1048576, 1024), 1);
        assert_eq!(pages_covering(4, 1), 256);
        // Past u64's KiB: the page count of the u128 product, saturated.
        assert_eq!(pages_covering(4, u64::MAX), u64::MAX);
        assert_eq!(pages_covering(1048576, u64::MAX), u64::MAX.div_ceil(1024));
    }
}
