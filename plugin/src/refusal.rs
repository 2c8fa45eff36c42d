//! Why a host cell refused a guest cell: the shortfall and its numbers. Its own module so that
//! the per-cell checks (`fit`), the pinning and page steps and the sentences all name it without
//! depending on each other.

crate::named_enum! {
    /// What a host cell lacked (mirrors the contract's `shortfall`; named as its cases are).
    pub enum Shortfall {
        Memory = "memory", Pages = "pages", PinnableCpus = "pinnable-cpus", SharedCpus = "shared-cpus",
        FreeCpus = "free-cpus", FreeCores = "free-cores", SiblingThreads = "sibling-threads",
        EmulatorCpu = "emulator-cpu", CpuRatio = "cpu-ratio", NoCpus = "no-cpus",
    }
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
