//! The host model: NUMA cells with their CPUs, hyperthread siblings, memory and page pools, and
//! what earlier claims already use. Field names follow OpenStack Nova's `NUMACell`.
//!
//! This is the host of record: discovery produces it, the HOST.json reader produces it, claims
//! change only its usage, and every rule a host must obey is checked here (`HostTopology::check`),
//! whoever built it.

use crate::cpuset::CpuSet;

/// A pool of memory pages of one size on one host cell (Nova's `NUMAPagesTopology`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PagePool {
    pub size_kb: u32,
    pub total: u64,
    pub used: u64,
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
pub struct CellNetwork {
    pub physnets: Vec<String>,
    pub tunneled: bool,
}

/// One host NUMA cell (node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCell {
    pub id: u32,
    /// CPUs for floating (shared) vCPUs.
    pub cpuset: CpuSet,
    /// CPUs that may be pinned.
    pub pcpuset: CpuSet,
    /// MiB.
    pub memory: u64,
    /// Floating vCPUs placed on `cpuset`.
    pub cpu_usage: u32,
    /// MiB claimed.
    pub memory_usage: u64,
    pub pinned_cpus: CpuSet,
    /// CPUs of the cell kept for the host (in neither `cpuset` nor `pcpuset`): sibling groups may
    /// name them, as threads no guest gets.
    pub host_cpus: CpuSet,
    /// Hyperthread sibling groups (physical cores), in packing order.
    pub siblings: Vec<CpuSet>,
    /// CPUs sharing an L3 cache, when the host says; empty when unknown.
    pub cache_groups: Vec<CpuSet>,
    /// Page pools, smallest size first.
    pub mempages: Vec<PagePool>,
    pub socket: Option<u32>,
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
        // Not `first()`: a host of record keeps its pools in the order it was given them.
        self.mempages.iter().min_by_key(|p| p.size_kb)
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
    /// CPU of the cell in exactly one sibling group (a CPU no group names is its own core, after
    /// the named ones, so hosts described without SMT information still pin).
    pub fn normalize(&mut self) {
        self.mempages.sort_by_key(|p| p.size_kb);
        let mut grouped = CpuSet::new();
        for core in &self.siblings {
            grouped.union_with(core);
        }
        // A CPU a sibling group names that the cell offers no guest is a thread kept for the host.
        let mut known = self.pcpuset.union(&self.cpuset);
        known.union_with(&self.host_cpus);
        if !grouped.is_subset(&known) {
            self.host_cpus.union_with(&grouped.difference(&known));
            known.union_with(&self.host_cpus);
        }
        let lone = known.difference(&grouped);
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

    /// Checks what the algorithms assume and a hand-written host may break (`check`, as text).
    pub fn validate(&self) -> Result<(), String> {
        self.check().map_err(|p| p.to_string())
    }

    /// Every rule a host must obey, in one place: the HOST.json reader, discovery and the
    /// component all check hosts with it. The first broken rule is named by its field.
    pub fn check(&self) -> Result<(), HostProblem> {
        let n = self.cells.len();
        if n == 0 {
            return Err(HostProblem::host("cells", "the host has no cells".into()));
        }
        // Allocation-free on a valid host (the component checks every host it is given): each
        // test is a word-wise set operation, and the offending CPU is looked up only on failure.
        let mut seen_cpus = CpuSet::new();
        for (i, cell) in self.cells.iter().enumerate() {
            let fail = |field: &str, message: String| Err(HostProblem::cell(i, field, message));
            if self.cells[..i].iter().any(|c| c.id == cell.id) {
                return fail("id", format!("cell id {} appears twice", cell.id));
            }
            for (name, v) in [("memory", cell.memory), ("memory_usage", cell.memory_usage)] {
                if v > MAX_MEMORY_MB {
                    return fail(name, format!("{v} MiB is beyond the largest supported {MAX_MEMORY_MB} MiB"));
                }
            }
            if cell.host_cpus.intersects(&cell.cpuset) || cell.host_cpus.intersects(&cell.pcpuset) {
                let cpu = cell.host_cpus.intersection(&cell.cpuset.union(&cell.pcpuset)).first().unwrap_or_default();
                return fail("host_cpus", format!("CPU {cpu} is kept for the host but also in cpuset or pcpuset"));
            }
            let mut all = cell.cpuset.union(&cell.pcpuset);
            all.union_with(&cell.host_cpus);
            let mut grouped = CpuSet::new();
            for (j, core) in cell.siblings.iter().enumerate() {
                if core.is_empty() {
                    return fail(&format!("siblings[{j}]"), "an empty sibling group".into());
                }
                if !core.is_subset(&all) {
                    let cpu = core.difference(&all).first().unwrap_or_default();
                    return fail(
                        &format!("siblings[{j}]"),
                        format!("CPU {cpu} is not a CPU of this cell (not in cpuset, pcpuset or host_cpus)"),
                    );
                }
                if core.intersects(&grouped) {
                    let cpu = core.intersection(&grouped).first().unwrap_or_default();
                    return fail("siblings", format!("CPU {cpu} is in more than one sibling group"));
                }
                grouped.union_with(core);
            }
            if all.intersects(&seen_cpus) {
                let dup = all.intersection(&seen_cpus);
                let other = self.cells[..i].iter().find(|c| c.cpuset.union(&c.pcpuset).union(&c.host_cpus).intersects(&dup));
                let other = other.map_or(String::new(), |c| format!(" (cell {})", c.id));
                return fail("cpuset", format!("CPUs {dup} also belong to another cell{other}"));
            }
            seen_cpus.union_with(&all);
            if !cell.pinned_cpus.is_subset(&cell.pcpuset) {
                let cpu = cell.pinned_cpus.difference(&cell.pcpuset).first().unwrap_or_default();
                return fail("pinned_cpus", format!("CPU {cpu} is pinned but not in pcpuset"));
            }
            let smallest = cell.smallest_pages().map(|p| p.size_kb);
            for (j, p) in cell.mempages.iter().enumerate() {
                let at = |f: &str| format!("mempages[{j}].{f}");
                if p.size_kb == 0 || !p.size_kb.is_power_of_two() {
                    return fail(&at("size_kb"), format!("{} is not a page size (a power of two KiB)", p.size_kb));
                }
                if cell.mempages[..j].iter().any(|q| q.size_kb == p.size_kb) {
                    return fail(&at("size_kb"), format!("two pools of {} KiB", p.size_kb));
                }
                if p.reserved > p.total {
                    return fail(&at("reserved"), format!("{} of {} pages", p.reserved, p.total));
                }
                // The smallest pages may show overcommit (Nova records it under a RAM allocation
                // ratio); hugepages are locked memory and never do.
                if Some(p.size_kb) != smallest && p.used.saturating_add(p.reserved) > p.total {
                    return fail(
                        &at("used"),
                        format!("{} used and {} reserved of {} {} KiB pages", p.used, p.reserved, p.total, p.size_kb),
                    );
                }
            }
        }
        if !self.distances.is_empty() {
            if let Some(why) = slit_problem(&self.distances, n) {
                return Err(HostProblem::host("cells[].distances", format!("not a SLIT: {why}")));
            }
        }
        for (i, p) in self.pci_pools.iter().enumerate() {
            if let Some(node) = p.numa_node.filter(|&node| self.cell(node).is_none()) {
                return Err(HostProblem::host(&format!("pci_pools[{i}].numa_node"), format!("{node} is not a cell of this host")));
            }
        }
        Ok(())
    }
}

/// Largest memory (MiB) a cell may have or claim: 1 EiB. Far beyond any machine, and small
/// enough that KiB counts and usage sums never overflow the accounting.
pub const MAX_MEMORY_MB: u64 = 1 << 40;

/// A broken host rule: the field (a path in HOST.json's terms, such as `cells[2].siblings[0]`)
/// and what is wrong with its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostProblem {
    pub field: String,
    pub message: String,
}

impl HostProblem {
    fn cell(position: usize, field: &str, message: String) -> Self {
        HostProblem { field: format!("cells[{position}].{field}"), message }
    }

    fn host(field: &str, message: String) -> Self {
        HostProblem { field: field.to_string(), message }
    }
}

impl std::fmt::Display for HostProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field {}: {}", self.field, self.message)
    }
}

/// Why a distance table (row-major, `n` x `n`) is not an ACPI SLIT, as Linux's `slit_valid`
/// judges it: 10 on the diagonal, more than 10 everywhere else.
pub fn slit_problem(distances: &[u32], n: usize) -> Option<String> {
    if distances.len() != n * n {
        return Some(format!("{} entries for {n} cells ({} expected)", distances.len(), n * n));
    }
    for (i, row) in distances.chunks_exact(n.max(1)).enumerate() {
        // The common case in one branch-free pass per row: exactly one entry at 10 or less, and
        // it is the diagonal's 10. Only a broken row is walked again to name the entry.
        if row.get(i) == Some(&10) && row.iter().map(|&d| usize::from(d <= 10)).sum::<usize>() == 1 {
            continue;
        }
        for (j, &d) in row.iter().enumerate() {
            if i == j && d != 10 {
                return Some(format!("the distance of cell position {i} to itself is {d}, not 10"));
            }
            if i != j && d <= 10 {
                return Some(format!("the distance from cell position {i} to {j} is {d}; a remote distance is more than 10"));
            }
        }
    }
    None
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
