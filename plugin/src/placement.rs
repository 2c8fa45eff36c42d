//! What a fit answers: a placement (per guest cell: host cell, pinning, page size, emulator CPUs)
//! or a rejection that says, for each guest cell, why each host cell refused it.

use crate::cpuset::CpuSet;
use crate::fit::{Refusal, Shortfall};
use crate::pinning;
use crate::request::{CpuPolicy, EmulatorThreads, GuestCell, GuestTopology, ThreadPolicy};
use crate::topology::HostCell;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedCell {
    pub guest_cell: u32,
    pub host_cell: u32,
    pub cpuset: CpuSet,
    pub pcpuset: CpuSet,
    pub memory: u64,
    pub pagesize_kb: Option<u32>,
    /// (vCPU, pCPU), vCPUs ascending.
    pub pinning: Vec<(u32, u32)>,
    pub emulator: Vec<u32>,
}

impl PlacedCell {
    /// Every host CPU the cell pins: its vCPUs' and its emulator threads'.
    pub fn pinned_pcpus(&self) -> CpuSet {
        self.pinning.iter().map(|&(_, p)| p).chain(self.emulator.iter().copied()).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub policy: String,
    pub cpu_policy: Option<CpuPolicy>,
    pub thread_policy: Option<ThreadPolicy>,
    pub emulator_threads: Option<EmulatorThreads>,
    pub cells: Vec<PlacedCell>,
}

impl Placement {
    pub fn pins(&self) -> bool {
        matches!(self.cpu_policy, Some(CpuPolicy::Dedicated | CpuPolicy::Mixed))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellRefusal {
    pub guest_cell: u32,
    pub host_cell: u32,
    pub refusal: Refusal,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub summary: String,
    pub refusals: Vec<CellRefusal>,
    pub reasons: Vec<String>,
}

impl Rejection {
    pub fn whole(summary: String) -> Self {
        Rejection { summary, refusals: Vec::new(), reasons: Vec::new() }
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "4 dedicated vCPUs, isolate, 4096 MiB" — what the guest cell asks for.
pub fn describe_guest_cell(guest: &GuestCell, topo: &GuestTopology) -> String {
    let mut parts = Vec::new();
    if !guest.pcpuset.is_empty() {
        let mut s = plural(guest.pcpuset.len() as u64, "dedicated vCPU", "dedicated vCPUs");
        if let Some(t) = topo.thread_policy {
            s.push_str(&format!(", {}", format!("{t:?}").to_lowercase()));
        }
        parts.push(s);
    }
    if !guest.cpuset.is_empty() {
        parts.push(plural(guest.cpuset.len() as u64, "shared vCPU", "shared vCPUs"));
    }
    parts.push(format!("{} MiB", guest.memory));
    parts.join(", ")
}

/// Cores of `cell` that are not wholly free because some thread is pinned or not pinnable.
fn busy_cores(cell: &HostCell) -> String {
    let free = cell.free_pcpus();
    let busy: Vec<String> =
        cell.siblings.iter().filter(|c| !c.is_subset(&free) && c.intersects(&cell.pcpuset)).map(|c| c.to_string()).collect();
    if busy.is_empty() {
        String::new()
    } else {
        format!(" (cores {} hold pinned or unpinnable CPUs)", busy.join(","))
    }
}

/// One sentence with the numbers: why `host` refused guest cell `g`.
pub fn describe_refusal(g: usize, guest: &GuestCell, topo: &GuestTopology, host: &HostCell, r: &Refusal) -> String {
    let (n, a) = (r.needed, r.available);
    let emulator = if topo.emulator_isolated() && g == 0 { " incl. 1 for emulator threads" } else { "" };
    let why = match r.shortfall {
        Shortfall::NoCpus => "the cell has no CPUs".to_string(),
        Shortfall::Memory if topo.floats() && n > guest.memory => {
            format!("memory usage would be {n} MiB, over the allocation limit of {a} MiB")
        }
        Shortfall::Memory => format!("{a} MiB available, needs {n} MiB"),
        Shortfall::Pages => match r.page_size_kb {
            Some(size) if host.pages_of(size).is_none() => format!("no {size} KiB page pool"),
            Some(size) if n == u64::MAX => format!("{} MiB is not a whole number of {size} KiB pages", guest.memory),
            Some(size) => format!("{a} free {size} KiB pages, needs {n}"),
            None => "no page pool of a suitable size".to_string(),
        },
        Shortfall::PinnableCpus => {
            format!("{} pinnable, needs {n}{emulator}", plural(a, "CPU", "CPUs"))
        }
        Shortfall::SharedCpus => format!("{} for floating vCPUs, needs {n}", plural(a, "shared CPU", "shared CPUs")),
        Shortfall::FreeCpus => {
            format!("{} free pinnable, needs {n}{emulator} (pinned: {})", plural(a, "CPU", "CPUs"), host.pinned_cpus)
        }
        Shortfall::FreeCores => {
            format!("{}, needs {n}{emulator}{}", plural(a, "fully free core", "fully free cores"), busy_cores(host))
        }
        Shortfall::SiblingThreads if a == 1 && n == 2 => "the cell has no hyperthread siblings (thread policy require)".to_string(),
        Shortfall::SiblingThreads => {
            format!("{} on cores with 2 or more free siblings, needs {n}{emulator}", plural(a, "free thread", "free threads"))
        }
        Shortfall::EmulatorCpu => {
            let free = pinning::free_threads_by_core(host).iter().map(|c| c.len()).sum::<usize>();
            format!("no CPU left for the emulator threads after the vCPUs ({free} free)")
        }
        Shortfall::CpuRatio => {
            format!("shared vCPU usage would be {n}, over the allocation limit of {a}")
        }
    };
    format!("guest cell {g} ({}) on host cell {}: {why}", describe_guest_cell(guest, topo), host.id)
}
