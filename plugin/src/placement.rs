//! What a fit answers: a placement (per guest cell: host cell, pinning, page size, emulator CPUs)
//! or a rejection that says, for each guest cell, why each host cell refused it.

use std::fmt::{self, Write};

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

/// "1 CPU" / "4 CPUs", written straight into the sentence.
struct Plural(u64, &'static str, &'static str);

impl fmt::Display for Plural {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, if self.0 == 1 { self.1 } else { self.2 })
    }
}

/// "4 dedicated vCPUs, isolate, 4096 MiB" — what the guest cell asks for.
pub fn describe_guest_cell(guest: &GuestCell, topo: &GuestTopology) -> String {
    let mut s = String::with_capacity(48);
    if !guest.pcpuset.is_empty() {
        let _ = write!(s, "{}, ", Plural(guest.pcpuset.len() as u64, "dedicated vCPU", "dedicated vCPUs"));
        if let Some(t) = topo.thread_policy {
            let _ = write!(s, "{}, ", t.name());
        }
    }
    if !guest.cpuset.is_empty() {
        let _ = write!(s, "{}, ", Plural(guest.cpuset.len() as u64, "shared vCPU", "shared vCPUs"));
    }
    let _ = write!(s, "{} MiB", guest.memory);
    s
}

/// Cores of `cell` that are not wholly free because some thread is pinned or not pinnable.
fn write_busy_cores(out: &mut String, cell: &HostCell) {
    let free = cell.free_pcpus();
    let mut busy = cell.siblings.iter().filter(|c| !c.is_subset(&free) && c.intersects(&cell.pcpuset)).peekable();
    if busy.peek().is_none() {
        return;
    }
    out.push_str(" (cores ");
    for (i, core) in busy.enumerate() {
        let _ = write!(out, "{}{core}", if i > 0 { "," } else { "" });
    }
    out.push_str(" hold pinned or unpinnable CPUs)");
}

/// One sentence with the numbers: why `host` refused guest cell `g`.
pub fn describe_refusal(g: usize, guest: &GuestCell, topo: &GuestTopology, host: &HostCell, r: &Refusal) -> String {
    describe_refusal_of(g, &describe_guest_cell(guest, topo), guest, topo, host, r)
}

/// `describe_refusal` with the guest cell's description made once (a rejection repeats it for
/// every host cell).
pub fn describe_refusal_of(g: usize, asks: &str, guest: &GuestCell, topo: &GuestTopology, host: &HostCell, r: &Refusal) -> String {
    let mut s = String::with_capacity(96 + asks.len());
    let _ = write!(s, "guest cell {g} ({asks}) on host cell {}: ", host.id);
    let _ = write_why(&mut s, g, guest, topo, host, r);
    s
}

fn write_why(s: &mut String, g: usize, guest: &GuestCell, topo: &GuestTopology, host: &HostCell, r: &Refusal) -> fmt::Result {
    let (n, a) = (r.needed, r.available);
    let emulator = if topo.emulator_isolated() && g == 0 { " incl. 1 for emulator threads" } else { "" };
    match r.shortfall {
        Shortfall::NoCpus => s.push_str("the cell has no CPUs"),
        Shortfall::Memory if topo.floats() && n > guest.memory => {
            write!(s, "memory usage would be {n} MiB, over the allocation limit of {a} MiB")?
        }
        Shortfall::Memory => write!(s, "{a} MiB available, needs {n} MiB")?,
        Shortfall::Pages => match r.page_size_kb {
            Some(size) if host.pages_of(size).is_none() => write!(s, "no {size} KiB page pool")?,
            Some(size) if n == u64::MAX => write!(s, "{} MiB is not a whole number of {size} KiB pages", guest.memory)?,
            Some(size) => write!(s, "{a} free {size} KiB pages, needs {n}")?,
            None => s.push_str("no page pool of a suitable size"),
        },
        Shortfall::PinnableCpus => write!(s, "{} pinnable, needs {n}{emulator}", Plural(a, "CPU", "CPUs"))?,
        Shortfall::SharedCpus => write!(s, "{} for floating vCPUs, needs {n}", Plural(a, "shared CPU", "shared CPUs"))?,
        Shortfall::FreeCpus => write!(s, "{} free pinnable, needs {n}{emulator} (pinned: {})", Plural(a, "CPU", "CPUs"), host.pinned_cpus)?,
        Shortfall::FreeCores => {
            write!(s, "{}, needs {n}{emulator}", Plural(a, "fully free core", "fully free cores"))?;
            write_busy_cores(s, host);
        }
        Shortfall::SiblingThreads if a == 1 && n == 2 => s.push_str("the cell has no hyperthread siblings (thread policy require)"),
        Shortfall::SiblingThreads => {
            write!(s, "{} on cores with 2 or more free siblings, needs {n}{emulator}", Plural(a, "free thread", "free threads"))?
        }
        Shortfall::EmulatorCpu => {
            let free = pinning::free_threads_by_core(host).iter().map(|c| c.len()).sum::<usize>();
            write!(s, "no CPU left for the emulator threads after the vCPUs ({free} free)")?
        }
        Shortfall::CpuRatio => write!(s, "shared vCPU usage would be {n}, over the allocation limit of {a}")?,
    }
    Ok(())
}
