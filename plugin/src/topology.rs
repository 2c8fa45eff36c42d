//! The host model: NUMA cells with their CPUs, hyperthread siblings, memory and page pools, and
//! what earlier claims already use. Field names follow OpenStack Nova's `NUMACell`.

use crate::cpuset::CpuSet;

/// A pool of memory pages of one size on one host cell (Nova's `NUMAPagesTopology`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct PagePool {
    pub size_kb: u32,
    pub total: u64,
    #[cfg_attr(feature = "serde", serde(default))]
    pub used: u64,
    #[cfg_attr(feature = "serde", serde(default))]
    pub reserved: u64,
}

impl PagePool {
    /// Pages neither used nor reserved.
    pub fn free(&self) -> u64 {
        self.total.saturating_sub(self.used + self.reserved)
    }

    pub fn free_kb(&self) -> u64 {
        self.free() * u64::from(self.size_kb)
    }
}

/// Networks with NUMA affinity to a cell (Nova's `NetworkMetadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct CellNetwork {
    #[cfg_attr(feature = "serde", serde(default))]
    pub physnets: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub tunneled: bool,
}

/// One host NUMA cell (node).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct HostCell {
    pub id: u32,
    /// CPUs for floating (shared) vCPUs.
    pub cpuset: CpuSet,
    /// CPUs that may be pinned.
    pub pcpuset: CpuSet,
    /// MiB.
    pub memory: u64,
    /// Floating vCPUs placed on `cpuset`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub cpu_usage: u32,
    /// MiB claimed.
    #[cfg_attr(feature = "serde", serde(default))]
    pub memory_usage: u64,
    #[cfg_attr(feature = "serde", serde(default))]
    pub pinned_cpus: CpuSet,
    /// Hyperthread sibling groups (physical cores), in packing order.
    #[cfg_attr(feature = "serde", serde(default))]
    pub siblings: Vec<CpuSet>,
    /// CPUs sharing an L3 cache, when the host says; empty when unknown.
    #[cfg_attr(feature = "serde", serde(default))]
    pub cache_groups: Vec<CpuSet>,
    /// Page pools, smallest size first.
    #[cfg_attr(feature = "serde", serde(default))]
    pub mempages: Vec<PagePool>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub socket: Option<u32>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub network_metadata: Option<CellNetwork>,
}

impl HostCell {
    /// Pinnable CPUs not pinned yet.
    pub fn free_pcpus(&self) -> CpuSet {
        self.pcpuset.difference(&self.pinned_cpus)
    }

    /// Memory not claimed yet, MiB.
    pub fn avail_memory(&self) -> u64 {
        self.memory.saturating_sub(self.memory_usage)
    }

    /// The page pool of the smallest size, which backs memory that asks for no page size.
    pub fn smallest_pages(&self) -> Option<&PagePool> {
        self.mempages.first()
    }

    pub fn pages_of(&self, size_kb: u32) -> Option<&PagePool> {
        self.mempages.iter().find(|p| p.size_kb == size_kb)
    }

    /// Most threads of one core usable by guests (shared or pinnable): 1 on a host without SMT.
    pub fn threads_per_core(&self) -> usize {
        let usable = self.cpuset.union(&self.pcpuset);
        self.siblings.iter().map(|core| core.intersection_len(&usable)).max().unwrap_or(0).max(1)
    }

    /// Puts the model in the shape the algorithms rely on: page pools sorted by size, and every
    /// pinnable or shared CPU in exactly one sibling group (a CPU no group names is its own core,
    /// after the named ones, so hosts described without SMT information still pin).
    pub fn normalize(&mut self) {
        self.mempages.sort_by_key(|p| p.size_kb);
        let mut grouped = CpuSet::new();
        for core in &self.siblings {
            grouped.union_with(core);
        }
        let lone = self.pcpuset.union(&self.cpuset).difference(&grouped);
        self.siblings.retain(|core| !core.is_empty());
        self.siblings.extend(lone.iter().map(|cpu| CpuSet::from([cpu])));
    }
}

/// A PCI device pool (Nova's `PciDevicePool`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciPool {
    pub numa_node: Option<u32>,
    pub count: u32,
    pub tags: Vec<(String, String)>,
}

/// A whole host: its cells, and the host-wide facts that relate them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTopology {
    pub cells: Vec<HostCell>,
    /// Row-major distances over `cells` in list order; empty when unknown.
    pub distances: Vec<u32>,
    pub pci_pools: Vec<PciPool>,
}

impl HostTopology {
    pub fn cell(&self, id: u32) -> Option<&HostCell> {
        self.cells.iter().find(|c| c.id == id)
    }

    pub fn cell_mut(&mut self, id: u32) -> Option<&mut HostCell> {
        self.cells.iter_mut().find(|c| c.id == id)
    }

    /// Distance between the cells at list positions `a` and `b`, when the host says.
    pub fn distance(&self, a: usize, b: usize) -> Option<u32> {
        let n = self.cells.len();
        if self.distances.len() != n * n {
            return None;
        }
        self.distances.get(a * n + b).copied()
    }

    /// Checks what the algorithms assume and a hand-written host may break.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen_cpus = CpuSet::new();
        for (i, cell) in self.cells.iter().enumerate() {
            if self.cells[..i].iter().any(|c| c.id == cell.id) {
                return Err(format!("cell id {} appears twice", cell.id));
            }
            let mut cpus = cell.cpuset.clone();
            cpus.union_with(&cell.pcpuset);
            if cpus.intersects(&seen_cpus) {
                let dup = cpus.intersection(&seen_cpus);
                return Err(format!("cell {}: CPUs {dup} also belong to another cell", cell.id));
            }
            seen_cpus.union_with(&cpus);
            if !cell.pinned_cpus.is_subset(&cell.pcpuset) {
                let bad = cell.pinned_cpus.difference(&cell.pcpuset);
                return Err(format!("cell {}: pinned_cpus {bad} are not in pcpuset", cell.id));
            }
            let mut grouped = CpuSet::new();
            for core in &cell.siblings {
                if core.intersects(&grouped) {
                    return Err(format!("cell {}: sibling group {core} overlaps another", cell.id));
                }
                grouped.union_with(core);
            }
            for pool in &cell.mempages {
                if pool.size_kb == 0 {
                    return Err(format!("cell {}: a page pool has size_kb 0", cell.id));
                }
            }
            if cell.mempages.windows(2).any(|w| w[0].size_kb == w[1].size_kb) {
                return Err(format!("cell {}: two page pools of the same size", cell.id));
            }
        }
        let n = self.cells.len();
        if !self.distances.is_empty() && self.distances.len() != n * n {
            return Err(format!("distances has {} entries, expected {} ({n} cells squared)", self.distances.len(), n * n));
        }
        Ok(())
    }
}

impl HostTopology {
    /// `normalize`d cells; every entry point that takes a host in calls this once.
    pub fn normalized(mut self) -> Self {
        for cell in &mut self.cells {
            cell.normalize();
        }
        self
    }
}
