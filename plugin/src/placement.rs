//! What a fit answers: a placement (per guest cell: host cell, pinning, page size, emulator CPUs)
//! or a rejection that says, for each guest cell, why each host cell refused it.

use crate::cpuset::CpuSet;
use crate::pinning::PinSink;
use crate::refusal::{Refusal, Shortfall};
use crate::request::{CpuPolicy, EmulatorThreads, GuestCell, GuestTopology, ThreadPolicy};
use crate::topology::HostCell;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedCell {
    pub guest_cell: u32,
    pub host_cell: u32,
    /// The guest cell's floating vCPUs (its dedicated ones are the keys of `pinning`).
    pub cpuset: CpuSet,
    pub memory: u64,
    pub pagesize_kb: Option<u32>,
    /// (vCPU, pCPU), vCPUs ascending.
    pub pinning: Vec<(u32, u32)>,
    pub emulator: Vec<u32>,
}

impl PlacedCell {
    /// The guest cell's dedicated vCPUs.
    pub fn pcpuset(&self) -> CpuSet {
        self.pinning.iter().map(|&(v, _)| v).collect()
    }

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
    /// The placement of `guest`'s cells by `policy`, with the guest's CPU policies.
    pub fn of(guest: &GuestTopology, policy: &str, cells: Vec<PlacedCell>) -> Placement {
        Placement {
            policy: policy.to_string(),
            cpu_policy: guest.cpu_policy,
            thread_policy: guest.thread_policy,
            emulator_threads: guest.emulator_threads,
            cells,
        }
    }

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

/// Where a placement is written as a search chooses it, cell by cell, without building a
/// `Placement` first: a batch's columns (contract 0.4), or packed words (0.5).
pub trait PlacementSink: PinSink {
    /// Starts the next placement.
    fn open(&mut self);
    /// One placed cell: its numbers and floating vCPUs, then whatever `pins` writes (its pinned
    /// pairs, then its emulator CPUs).
    fn cell(
        &mut self,
        guest_cell: u32,
        host_cell: u32,
        memory_mb: u64,
        page_size_kb: Option<u32>,
        shared: &CpuSet,
        pins: impl FnOnce(&mut Self),
    );
    /// Ends the placement.
    fn close(&mut self);

    /// A placement built already (an answer found without a search), written whole.
    fn placement(&mut self, p: &Placement) {
        self.open();
        for c in &p.cells {
            self.cell(c.guest_cell, c.host_cell, c.memory, c.pagesize_kb, &c.cpuset, |out| {
                for &(vcpu, pcpu) in &c.pinning {
                    out.pair(vcpu, pcpu);
                }
                for &pcpu in &c.emulator {
                    out.emulator(pcpu);
                }
            });
        }
        self.close();
    }
}

/// Where a rejection is written as it is explained: a `Rejection`, or a batch's columns (which
/// keep every sentence in one text instead of a string each).
pub trait RejectionSink {
    /// Why host cell `host_cell` refused guest cell `guest_cell`; `detail` writes the sentence.
    fn refusal(&mut self, guest_cell: u32, host_cell: u32, refusal: &Refusal, detail: impl FnOnce(&mut String));
    /// One line: why no placement exists.
    fn summary(&mut self, summary: &str);
    /// A reason that concerns the whole placement.
    fn reason(&mut self, reason: &str);
}

impl RejectionSink for Rejection {
    fn refusal(&mut self, guest_cell: u32, host_cell: u32, refusal: &Refusal, detail: impl FnOnce(&mut String)) {
        let mut sentence = String::with_capacity(160);
        detail(&mut sentence);
        self.refusals.push(CellRefusal { guest_cell, host_cell, refusal: refusal.clone(), detail: sentence });
    }

    fn summary(&mut self, summary: &str) {
        self.summary.push_str(summary);
    }

    fn reason(&mut self, reason: &str) {
        self.reasons.push(reason.to_string());
    }
}

/// A sentence built piece by piece: text, numbers (`itoa`, not `core::fmt`: a rejection writes a
/// sentence for every host cell that refused every guest cell) and counted nouns.
struct Sentence<'a>(&'a mut String);

impl Sentence<'_> {
    fn t(&mut self, text: &str) -> &mut Self {
        crate::text::push(self.0, text);
        self
    }

    fn n(&mut self, value: u64) -> &mut Self {
        crate::text::push(self.0, itoa::Buffer::new().format(value));
        self
    }

    /// "1 CPU" / "4 CPUs".
    fn count(&mut self, n: u64, one: &str, many: &str) -> &mut Self {
        self.n(n).t(" ").t(if n == 1 { one } else { many })
    }
}

/// "4 dedicated vCPUs, isolate, 4096 MiB" — what the guest cell asks for.
pub fn describe_guest_cell(guest: &GuestCell, topo: &GuestTopology) -> String {
    let mut s = String::with_capacity(48);
    let mut w = Sentence(&mut s);
    if !guest.pcpuset.is_empty() {
        w.count(guest.pcpuset.len() as u64, "dedicated vCPU", "dedicated vCPUs").t(", ");
        if let Some(t) = topo.thread_policy {
            w.t(t.name_const()).t(", ");
        }
    }
    if !guest.cpuset.is_empty() {
        w.count(guest.cpuset.len() as u64, "shared vCPU", "shared vCPUs").t(", ");
    }
    w.n(guest.memory).t(" MiB");
    s
}

/// "guest cells 0, 2 fit on no host cell" — a rejection's summary when some guest cells fit
/// nowhere (written without `core::fmt`, as the sentences are: a fleet's filter writes one for
/// every refused host).
pub fn describe_homeless(cells: &[usize]) -> String {
    let mut s = String::with_capacity(48);
    let many = cells.len() > 1;
    let mut w = Sentence(&mut s);
    w.t(if many { "guest cells " } else { "guest cell " });
    for (i, &g) in cells.iter().enumerate() {
        w.t(if i > 0 { ", " } else { "" }).n(g as u64);
    }
    w.t(if many { " fit on no host cell" } else { " fits on no host cell" });
    s
}

/// "every guest cell fits some host cell, but no 4 distinct host cells hold all 4 guest cells".
pub fn describe_no_distinct_cells(n: usize) -> String {
    let mut s = String::with_capacity(96);
    Sentence(&mut s)
        .t("every guest cell fits some host cell, but no ")
        .n(n as u64)
        .t(" distinct host cells hold all ")
        .n(n as u64)
        .t(" guest cells");
    s
}

/// Cores of `cell` that are not wholly free because some thread is pinned or not pinnable.
fn write_busy_cores(out: &mut String, cell: &HostCell) {
    let free = cell.free_pcpus();
    let mut busy = cell.siblings.iter().filter(|c| !c.is_subset(&free) && c.intersects(&cell.pcpuset)).peekable();
    if busy.peek().is_none() {
        return;
    }
    crate::text::push(out, " (cores ");
    for (i, core) in busy.enumerate() {
        crate::text::push(out, if i > 0 { "," } else { "" });
        core.push_to(out);
    }
    crate::text::push(out, " hold pinned or unpinnable CPUs)");
}

/// One sentence with the numbers: why `host` refused guest cell `g`.
pub fn describe_refusal(g: usize, guest: &GuestCell, topo: &GuestTopology, host: &HostCell, r: &Refusal) -> String {
    describe_refusal_of(g, &describe_guest_cell(guest, topo), guest, topo, host, r)
}

/// `describe_refusal` with the guest cell's description made once (a rejection repeats it for
/// every host cell).
pub fn describe_refusal_of(g: usize, asks: &str, guest: &GuestCell, topo: &GuestTopology, host: &HostCell, r: &Refusal) -> String {
    let mut s = String::with_capacity(96 + asks.len());
    write_refusal(&mut s, g, asks, guest, topo, host, r);
    s
}

/// `describe_refusal_of`, written onto `s`.
pub fn write_refusal(s: &mut String, g: usize, asks: &str, guest: &GuestCell, topo: &GuestTopology, host: &HostCell, r: &Refusal) {
    write_refusal_opening(s, g, asks, host);
    write_refusal_why(s, g, guest, topo, host, r);
}

/// The sentence's opening: which guest cell, asking what (`asks`), on which host cell.
pub fn write_refusal_opening(s: &mut String, g: usize, asks: &str, host: &HostCell) {
    write_refusal_subject(s, g);
    write_refusal_place(s, asks, host);
}

/// "guest cell 2": the only words of a refusal that differ between guest cells asking alike.
pub fn write_refusal_subject(s: &mut String, g: usize) {
    Sentence(s).t("guest cell ").n(g as u64);
}

/// " (4 dedicated vCPUs, 4096 MiB) on host cell 3: ", after the subject.
pub fn write_refusal_place(s: &mut String, asks: &str, host: &HostCell) {
    Sentence(s).t(" (").t(asks).t(") on host cell ").n(u64::from(host.id)).t(": ");
}

/// The rest: why, with the numbers. It reads of guest cell `g` only what `GuestCell::asks_as`
/// compares and whether `g` carries the emulator threads.
pub fn write_refusal_why(s: &mut String, g: usize, guest: &GuestCell, topo: &GuestTopology, host: &HostCell, r: &Refusal) {
    let (n, a) = (r.needed, r.available);
    let emulator = if topo.emulator_isolated() && g == 0 { " incl. 1 for emulator threads" } else { "" };
    let mut w = Sentence(s);
    match r.shortfall {
        Shortfall::NoCpus => {
            w.t("the cell has no CPUs");
        }
        Shortfall::Memory if topo.floats() && n > guest.memory => {
            w.t("memory usage would be ").n(n).t(" MiB, over the allocation limit of ").n(a).t(" MiB");
        }
        Shortfall::Memory => {
            w.n(a).t(" MiB available, needs ").n(n).t(" MiB");
        }
        Shortfall::Pages => match r.page_size_kb.map(u64::from) {
            Some(size) if host.pages_of(size as u32).is_none() => {
                w.t("no ").n(size).t(" KiB page pool");
            }
            Some(size) if (u128::from(guest.memory) * 1024) % u128::from(size) != 0 => {
                w.n(guest.memory).t(" MiB is not a whole number of ").n(size).t(" KiB pages");
            }
            Some(size) => {
                w.n(a).t(" free ").n(size).t(" KiB pages, needs ").n(n);
            }
            None => {
                w.t("no page pool of a suitable size");
            }
        },
        Shortfall::PinnableCpus if guest.pcpuset.is_empty() => {
            w.t("the cell has no dedicated vCPU, and ");
            if topo.effective_thread_policy() == ThreadPolicy::Isolate {
                w.t("thread policy isolate");
            } else {
                w.t("emulator threads isolate");
            }
            w.t(" needs one to pin (Nova refuses such a cell)");
        }
        Shortfall::PinnableCpus => {
            w.count(a, "CPU", "CPUs").t(" pinnable, needs ").n(n).t(emulator);
        }
        Shortfall::SharedCpus => {
            w.count(a, "shared CPU", "shared CPUs").t(" for floating vCPUs, needs ").n(n);
        }
        Shortfall::FreeCpus => {
            w.count(a, "CPU", "CPUs").t(" free pinnable, needs ").n(n).t(emulator).t(" (pinned: ");
            host.pinned_cpus.push_to(w.0);
            w.t(")");
        }
        Shortfall::FreeCores => {
            w.count(a, "fully free core", "fully free cores").t(", needs ").n(n).t(emulator);
            write_busy_cores(s, host);
        }
        Shortfall::SiblingThreads if a == 1 && n == 2 => {
            w.t("the cell has no hyperthread siblings (thread policy require)");
        }
        Shortfall::SiblingThreads => {
            w.count(a, "free thread", "free threads").t(" on cores with 2 or more free siblings, needs ").n(n).t(emulator);
        }
        Shortfall::EmulatorCpu => {
            // The refusal's `available` is the cell's free pinnable CPUs.
            w.t("no CPU left for the emulator threads after the vCPUs (").n(a).t(" free)");
        }
        Shortfall::CpuRatio => {
            w.t("shared vCPU usage would be ").n(n).t(", over the allocation limit of ").n(a);
        }
    }
}
