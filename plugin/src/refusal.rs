//! Why a host cell refused a guest cell: the shortfall and its numbers. Its own module so that
//! the per-cell checks (`fit`), the pinning and page steps and the sentences all name it without
//! depending on each other.

/// What a host cell lacked (mirrors the contract's `shortfall`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shortfall {
    Memory,
    Pages,
    PinnableCpus,
    SharedCpus,
    FreeCpus,
    FreeCores,
    SiblingThreads,
    EmulatorCpu,
    CpuRatio,
    NoCpus,
}

/// Why a host cell refused a guest cell: what was needed and what was there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub shortfall: Shortfall,
    pub needed: u64,
    pub available: u64,
    /// The page size the numbers are counted in, for `Pages`.
    pub page_size_kb: Option<u32>,
}

impl Refusal {
    pub fn new(shortfall: Shortfall, needed: u64, available: u64) -> Self {
        Refusal { shortfall, needed, available, page_size_kb: None }
    }

    pub fn with_page_size(mut self, size_kb: u32) -> Self {
        self.page_size_kb = Some(size_kb);
        self
    }
}
