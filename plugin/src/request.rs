//! What an instance asks for: the guest NUMA topology (cells of vCPUs and memory) and its CPU,
//! thread, emulator-thread and page-size policies, and the checks an explicitly written one must
//! pass. `flavor::from_flavor` derives it from a Nova flavor and image.

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::cpuset::CpuSet;

crate::named_enum! {
    /// `hw:cpu_policy`.
    pub enum CpuPolicy {
        Shared = "shared", Dedicated = "dedicated", Mixed = "mixed",
    }
}

crate::named_enum! {
    /// `hw:cpu_thread_policy`.
    pub enum ThreadPolicy {
        Prefer = "prefer", Isolate = "isolate", Require = "require",
    }
}

crate::named_enum! {
    /// `hw:emulator_threads_policy`.
    pub enum EmulatorThreads {
        Share = "share", Isolate = "isolate",
    }
}

/// The page size a guest cell wants backing its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSizeWish {
    Small,
    Large,
    Any,
    Kib(u32),
}

impl PageSizeWish {
    /// The wishes spelled as words (`hw:mem_page_size`); any other is a size.
    pub const KEYWORDS: [(&'static str, PageSizeWish); 3] =
        [("small", PageSizeWish::Small), ("large", PageSizeWish::Large), ("any", PageSizeWish::Any)];

    pub fn keyword(self) -> Option<&'static str> {
        Self::KEYWORDS.iter().find(|(_, w)| *w == self).map(|(k, _)| *k)
    }

    pub fn from_keyword(word: &str) -> Option<Self> {
        Self::KEYWORDS.iter().find(|(k, _)| *k == word).map(|&(_, w)| w)
    }
}

crate::named_enum! {
    /// `hw:pci_numa_affinity_policy`.
    pub enum PciNumaPolicy {
        Required = "required", Legacy = "legacy", Preferred = "preferred", Socket = "socket",
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciRequest {
    pub count: u32,
    pub spec: Vec<Vec<(String, String)>>,
    pub numa_policy: Option<PciNumaPolicy>,
}

/// One guest NUMA cell (Nova's `InstanceNUMACell`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestCell {
    /// Floating vCPUs.
    pub cpuset: CpuSet,
    /// Dedicated (pinned) vCPUs.
    pub pcpuset: CpuSet,
    /// MiB.
    pub memory: u64,
    pub pagesize: Option<PageSizeWish>,
}

impl GuestCell {
    pub fn vcpus(&self) -> usize {
        self.cpuset.len() + self.pcpuset.len()
    }

    /// Whether `other` asks for what this cell asks: as many floating and dedicated vCPUs, as
    /// much memory, the same page size. The per-cell checks and their refusals read nothing else
    /// of a cell, so two such cells fit, or are refused, alike on every host cell.
    pub fn asks_as(&self, other: &GuestCell) -> bool {
        self.memory == other.memory
            && self.pagesize == other.pagesize
            && self.pcpuset.len() == other.pcpuset.len()
            && self.cpuset.len() == other.cpuset.len()
    }
}

/// The guest NUMA topology (Nova's `InstanceNUMATopology`). No cells: no NUMA constraint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestTopology {
    pub cells: Vec<GuestCell>,
    pub cpu_policy: Option<CpuPolicy>,
    pub thread_policy: Option<ThreadPolicy>,
    pub emulator_threads: Option<EmulatorThreads>,
    pub pci_requests: Vec<PciRequest>,
}

impl GuestTopology {
    /// Dedicated vCPUs are pinned under the dedicated and mixed policies.
    pub fn pins(&self) -> bool {
        matches!(self.cpu_policy, Some(CpuPolicy::Dedicated | CpuPolicy::Mixed))
    }

    /// Floating vCPUs exist under shared (or unset) and mixed policies.
    pub fn floats(&self) -> bool {
        !matches!(self.cpu_policy, Some(CpuPolicy::Dedicated))
    }

    pub fn emulator_isolated(&self) -> bool {
        self.emulator_threads == Some(EmulatorThreads::Isolate)
    }

    /// Extra pinned CPUs guest cell `g` takes: isolated emulator threads are charged to the host
    /// cell of guest cell 0.
    pub fn emulator_cpus(&self, g: usize) -> usize {
        usize::from(g == 0 && self.emulator_isolated())
    }

    /// Thread policy in effect for pinned vCPUs (Nova defaults to prefer).
    pub fn effective_thread_policy(&self) -> ThreadPolicy {
        self.thread_policy.unwrap_or(ThreadPolicy::Prefer)
    }

    /// Every rule an explicitly written guest topology must obey, in one place: each vCPU once,
    /// consistent policies. The JSON reader and the component both check with it; the
    /// error names the field (`cells[1].pcpuset`) and Nova's exception.
    pub fn validate(&self) -> Result<(), RequestError> {
        let mut seen = CpuSet::new();
        for (i, cell) in self.cells.iter().enumerate() {
            let fail = |field: &str, code: &str, message: String| Err(RequestError::new(code, message).at(format!("cells[{i}]{field}")));
            if cell.cpuset.intersects(&cell.pcpuset) {
                let both = cell.cpuset.intersection(&cell.pcpuset);
                return fail(".pcpuset", "ImageNUMATopologyCPUDuplicates", format!("vCPUs {both} are both shared and dedicated"));
            }
            let all = cell.cpuset.union(&cell.pcpuset);
            if all.intersects(&seen) {
                let again = all.intersection(&seen);
                return fail("", "ImageNUMATopologyCPUDuplicates", format!("vCPUs {again} appear in another cell too"));
            }
            seen.union_with(&all);
            if all.is_empty() {
                return fail("", "ImageNUMATopologyCPUsUnassigned", "the cell has no vCPUs".into());
            }
            if cell.memory == 0 {
                return fail(".memory", "ImageNUMATopologyMemoryOutOfRange", "0 MiB; a guest cell needs memory".into());
            }
            if let Some(PageSizeWish::Kib(0)) = cell.pagesize {
                return fail(".pagesize", "MemoryPageSizeInvalid", "0 is not a page size".into());
            }
            match self.cpu_policy {
                Some(CpuPolicy::Dedicated) if !cell.cpuset.is_empty() => {
                    return fail(
                        ".cpuset",
                        "InvalidRequest",
                        format!("{} are shared vCPUs, but cpu_policy dedicated pins every vCPU (list them in pcpuset)", cell.cpuset),
                    )
                }
                None | Some(CpuPolicy::Shared) if !cell.pcpuset.is_empty() => {
                    return fail(
                        ".pcpuset",
                        "RequiredMixedInstancePolicy",
                        format!("{} are dedicated vCPUs, which need cpu_policy dedicated or mixed", cell.pcpuset),
                    )
                }
                _ => {}
            }
        }
        if !self.pins() {
            if self.thread_policy.is_some() {
                return Err(RequestError::new(
                    "CPUThreadPolicyConfigurationInvalid",
                    "only meaningful with cpu_policy dedicated or mixed".into(),
                )
                .at("cpu_thread_policy".into()));
            }
            if self.emulator_isolated() {
                return Err(RequestError::new("BadRequirementEmulatorThreadsPolicy", "isolate needs cpu_policy dedicated or mixed".into())
                    .at("emulator_threads_policy".into()));
            }
        }
        Ok(())
    }
}

/// An invalid request: Nova's exception name and a sentence naming the keys and values; for an
/// explicitly written topology, also the field (in REQUEST.json's terms) that breaks the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl RequestError {
    pub fn new(code: &str, message: String) -> Self {
        RequestError { code: code.to_string(), message, field: None }
    }

    pub fn at(mut self, field: String) -> Self {
        self.field = Some(field);
        self
    }
}

/// A guest topology that passed `GuestTopology::validate`: what the searches assume, checked once
/// per request (a loaded `request-state` keeps one) instead of once per fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRequest<'a> {
    guest: Cow<'a, GuestTopology>,
    /// For each guest cell, the first cell that asks what it asks (`GuestCell::asks_as`) and takes
    /// as many emulator CPUs, itself when none before it does. Flavors split a guest evenly, so a
    /// search decides such cells' fits once per host cell, and a rejection words their refusals
    /// once.
    twins: SmallVec<[usize; 16]>,
    /// Each guest cell's dedicated vCPUs, ascending: what every placement's pinned pairs list.
    dedicated: Vec<Vec<u32>>,
}

impl ValidRequest<'static> {
    pub fn owned(guest: GuestTopology) -> Result<Self, RequestError> {
        guest.validate()?;
        Ok(ValidRequest { twins: twins(&guest), dedicated: dedicated(&guest), guest: Cow::Owned(guest) })
    }
}

impl<'a> ValidRequest<'a> {
    pub fn borrowed(guest: &'a GuestTopology) -> Result<Self, RequestError> {
        guest.validate()?;
        Ok(ValidRequest { twins: twins(guest), dedicated: dedicated(guest), guest: Cow::Borrowed(guest) })
    }

    pub fn get(&self) -> &GuestTopology {
        &self.guest
    }

    /// For each guest cell, the first cell that asks what it asks and takes as many emulator CPUs
    /// (itself when none before it does).
    pub fn twins(&self) -> &[usize] {
        &self.twins
    }

    /// Guest cell `g`'s dedicated vCPUs, ascending (its `pcpuset` as a list).
    pub fn dedicated(&self, g: usize) -> &[u32] {
        self.dedicated.get(g).map_or(&[], Vec::as_slice)
    }
}

fn dedicated(guest: &GuestTopology) -> Vec<Vec<u32>> {
    guest.cells.iter().map(|c| c.pcpuset.to_vec()).collect()
}

fn twins(guest: &GuestTopology) -> SmallVec<[usize; 16]> {
    // Looked up among the first 64 distinct asks only, so a request of very many unlike cells
    // costs linear time (its later cells are their own twins).
    let mut heads: SmallVec<[usize; 16]> = SmallVec::new();
    let cells = &guest.cells;
    (0..cells.len())
        .map(|g| match heads.iter().find(|&&h| cells[h].asks_as(&cells[g]) && guest.emulator_cpus(h) == guest.emulator_cpus(g)) {
            Some(&h) => h,
            None => {
                if heads.len() < 64 {
                    heads.push(g);
                }
                g
            }
        })
        .collect()
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {field}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}
