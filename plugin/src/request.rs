//! What an instance asks for: the guest NUMA topology (cells of vCPUs and memory) and its CPU,
//! thread, emulator-thread and page-size policies, and the checks an explicitly written one must
//! pass. `flavor::from_flavor` derives it from a Nova flavor and image.

use std::borrow::Cow;

use crate::cpuset::CpuSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuPolicy {
    Shared,
    Dedicated,
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadPolicy {
    Prefer,
    Isolate,
    Require,
}

impl ThreadPolicy {
    /// Nova's spelling (`hw:cpu_thread_policy`).
    pub fn name(self) -> &'static str {
        match self {
            ThreadPolicy::Prefer => "prefer",
            ThreadPolicy::Isolate => "isolate",
            ThreadPolicy::Require => "require",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatorThreads {
    Share,
    Isolate,
}

/// The page size a guest cell wants backing its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSizeWish {
    Small,
    Large,
    Any,
    Kib(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciNumaPolicy {
    Required,
    Legacy,
    Preferred,
    Socket,
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

    /// Thread policy in effect for pinned vCPUs (Nova defaults to prefer).
    pub fn effective_thread_policy(&self) -> ThreadPolicy {
        self.thread_policy.unwrap_or(ThreadPolicy::Prefer)
    }

    /// Checks an explicitly written guest topology: each vCPU once, consistent policies.
    pub fn validate(&self) -> Result<(), RequestError> {
        let mut seen = CpuSet::new();
        for (i, cell) in self.cells.iter().enumerate() {
            if cell.cpuset.intersects(&cell.pcpuset) {
                return Err(RequestError::new(
                    "ImageNUMATopologyCPUDuplicates",
                    format!("guest cell {i}: vCPUs {} are both shared and dedicated", cell.cpuset.intersection(&cell.pcpuset)),
                ));
            }
            if cell.cpuset.intersects(&seen) || cell.pcpuset.intersects(&seen) {
                let all = cell.cpuset.union(&cell.pcpuset);
                return Err(RequestError::new(
                    "ImageNUMATopologyCPUDuplicates",
                    format!("guest cell {i}: vCPUs {} appear in another cell too", all.intersection(&seen)),
                ));
            }
            seen.union_with(&cell.cpuset);
            seen.union_with(&cell.pcpuset);
            if cell.cpuset.is_empty() && cell.pcpuset.is_empty() {
                return Err(RequestError::new("ImageNUMATopologyCPUsUnassigned", format!("guest cell {i} has no vCPUs")));
            }
            if cell.memory == 0 {
                return Err(RequestError::new("ImageNUMATopologyMemoryOutOfRange", format!("guest cell {i} has no memory")));
            }
            if let Some(PageSizeWish::Kib(0)) = cell.pagesize {
                return Err(RequestError::new("MemoryPageSizeInvalid", format!("guest cell {i}: page size 0")));
            }
            match self.cpu_policy {
                Some(CpuPolicy::Dedicated) if !cell.cpuset.is_empty() => {
                    return Err(RequestError::new(
                        "InvalidRequest",
                        format!("guest cell {i}: cpu_policy dedicated but shared vCPUs {}", cell.cpuset),
                    ))
                }
                None | Some(CpuPolicy::Shared) if !cell.pcpuset.is_empty() => {
                    return Err(RequestError::new(
                        "RequiredMixedInstancePolicy",
                        format!("guest cell {i}: dedicated vCPUs {} need cpu_policy dedicated or mixed", cell.pcpuset),
                    ))
                }
                _ => {}
            }
        }
        if !self.pins() {
            if self.thread_policy.is_some() {
                return Err(RequestError::new(
                    "CPUThreadPolicyConfigurationInvalid",
                    "cpu_thread_policy is only valid with cpu_policy dedicated or mixed".into(),
                ));
            }
            if self.emulator_isolated() {
                return Err(RequestError::new(
                    "BadRequirementEmulatorThreadsPolicy",
                    "emulator_threads_policy isolate is only valid with cpu_policy dedicated or mixed".into(),
                ));
            }
        }
        Ok(())
    }
}

/// An invalid request: Nova's exception name and a sentence naming the keys and values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    pub code: String,
    pub message: String,
}

impl RequestError {
    pub fn new(code: &str, message: String) -> Self {
        RequestError { code: code.to_string(), message }
    }
}

/// A guest topology that passed `GuestTopology::validate`: what the searches assume, checked once
/// per request (a loaded `request-state` keeps one) instead of once per fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRequest<'a>(Cow<'a, GuestTopology>);

impl ValidRequest<'static> {
    pub fn owned(guest: GuestTopology) -> Result<Self, RequestError> {
        guest.validate()?;
        Ok(ValidRequest(Cow::Owned(guest)))
    }
}

impl<'a> ValidRequest<'a> {
    pub fn borrowed(guest: &'a GuestTopology) -> Result<Self, RequestError> {
        guest.validate()?;
        Ok(ValidRequest(Cow::Borrowed(guest)))
    }

    pub fn get(&self) -> &GuestTopology {
        &self.0
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}
