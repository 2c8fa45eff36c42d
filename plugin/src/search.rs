//! Finds the placement Nova's `numa_fit_instance_to_host` finds — the first assignment of guest
//! cells to distinct host cells, in lexicographic order over the sorted host cells, in which every
//! guest cell fits and the PCI and network checks pass — without walking permutations.
//!
//! Whether guest cell g fits host cell h does not depend on the other pairs, so fits are memoised in
//! a (guest × host) table. The search first walks in Nova's order evaluating fits lazily, which
//! answers the common case after a handful of fits; past a budget it fills the table and walks again,
//! entering a branch only when the guest cells left can still be matched to distinct free host cells
//! (a bipartite matching). Without PCI or network needs that walk never backtracks, so it is
//! polynomial; the answer is the same first assignment either way.

use std::cell::Cell;

use smallvec::SmallVec;

use crate::batch::Batch;
use crate::cores::FreeCores;
use crate::cores::PreparedHost;
use crate::fit::{fit_cell_packed, CellFit, Limits};
use crate::pci;
use crate::pinning::{CellPinning, Packing, PinSink};
use crate::placement::{
    describe_guest_cell, describe_homeless, describe_no_distinct_cells, write_refusal_place, write_refusal_subject, write_refusal_why,
    PlacedCell, Placement, PlacementSink, Rejection, RejectionSink,
};
use crate::refusal::Refusal;
use crate::request::{GuestTopology, ValidRequest};
use crate::scoring::cell_order;
use crate::topology::HostTopology;

/// Room for a search's memoised fits, a row per guest cell that is its own twin: inline for up
/// to 4 such rows on 8 host cells (or 2 on 16). The caller keeps it, so a search's table is a few
/// references (not moved with its fits), and a batch reuses one for every host.
pub(crate) type Slots = SmallVec<[Option<Result<CellFit, Refusal>>; 32]>;

/// Memoised fits of guest cells (rows) on host cells (columns, in trial order).
pub(crate) struct FitTable<'a> {
    pub(crate) host: &'a HostTopology,
    /// Free cores of each host cell, by position in `host.cells`.
    pub(crate) cores: &'a [FreeCores],
    pub(crate) guest: &'a GuestTopology,
    /// The request: its twins (guest cells that ask alike share their fits) and vCPU lists.
    request: &'a ValidRequest<'a>,
    limits: &'a Limits,
    packing: Packing,
    /// Host cell positions in Nova's trial order: column k is host cell `order[k]`.
    pub(crate) order: &'a [usize],
    fits: &'a mut Slots,
    /// Whether every guest cell can have a host cell of its own, once the table is filled: asked
    /// by the search and again by the rejection that explains it.
    all_matchable: Cell<Option<bool>>,
}

impl<'a> FitTable<'a> {
    pub(crate) fn new(
        host: &'a PreparedHost,
        request: &'a ValidRequest<'a>,
        limits: &'a Limits,
        packing: Packing,
        fits: &'a mut Slots,
    ) -> Self {
        let guest = request.get();
        let order = cell_order(host, guest, limits.strategy);
        fits.clear();
        let table = FitTable {
            host: host.host(),
            cores: host.cores(),
            guest,
            request,
            limits,
            packing,
            order,
            fits,
            all_matchable: Cell::new(None),
        };
        // A row per guest cell that is its own twin (its twins read its row): a request of cells
        // that ask alike, as most are, fills one row, not one per cell.
        let rows = (0..guest.cells.len()).map(|g| table.twin(g) + 1).max().unwrap_or(0);
        table.fits.resize(rows * order.len(), None);
        table
    }

    pub(crate) fn columns(&self) -> usize {
        self.order.len()
    }

    /// Whether guest cell `g` fits the host cell at trial position `k`, computed once for it and
    /// its twins.
    pub(crate) fn fits(&mut self, g: usize, k: usize) -> bool {
        let twin = self.twin(g);
        let slot = twin * self.order.len() + k;
        if self.fits[slot].is_none() {
            let emulator = self.guest.emulator_cpus(twin);
            let (host_cell, cores) = (&self.host.cells[self.order[k]], &self.cores[self.order[k]]);
            self.fits[slot] =
                Some(fit_cell_packed(host_cell, cores, &self.guest.cells[twin], self.guest, self.limits, emulator, self.packing));
        }
        matches!(self.fits[slot], Some(Ok(_)))
    }

    /// The first guest cell whose fits and refusals are cell `g`'s on every host cell: one that
    /// asks the same and takes the same emulator CPUs (`g` itself when none before it does).
    pub(crate) fn twin(&self, g: usize) -> usize {
        self.request.twins().get(g).copied().unwrap_or(g)
    }

    /// The CPUs of guest cell `g` on the host cell at trial position `k`, which it fits.
    pub(crate) fn pinning(&self, g: usize, k: usize, fit: &CellFit) -> CellPinning {
        let (host_cell, cores) = (&self.host.cells[self.order[k]], &self.cores[self.order[k]]);
        fit.pinning(host_cell, cores, self.request.dedicated(g), self.guest.emulator_cpus(g))
    }

    /// `pinning`, written into `out`.
    fn pin_into(&self, g: usize, k: usize, fit: &CellFit, out: &mut impl PinSink) {
        let (host_cell, cores) = (&self.host.cells[self.order[k]], &self.cores[self.order[k]]);
        fit.pin_into(host_cell, cores, self.request.dedicated(g), self.guest.emulator_cpus(g), out)
    }

    pub(crate) fn fill(&mut self) {
        for g in 0..self.guest.cells.len() {
            if self.twin(g) != g {
                continue; // it reads its twin's row
            }
            for k in 0..self.columns() {
                self.fits(g, k);
            }
        }
    }

    pub(crate) fn result(&self, g: usize, k: usize) -> Option<&Result<CellFit, Refusal>> {
        self.fits.get(self.twin(g) * self.order.len() + k).and_then(Option::as_ref)
    }

    /// The PCI and network checks on a complete assignment (trial positions per guest cell).
    pub(crate) fn whole_placement_ok(&self, assign: &[usize]) -> bool {
        let needs_pci = !self.guest.pci_requests.is_empty();
        let needs_net = self.limits.network.as_ref().is_some_and(|n| !n.physnets.is_empty() || n.tunneled);
        if !needs_pci && !needs_net {
            return true;
        }
        let chosen: Vec<u32> = assign.iter().map(|&k| self.host.cells[self.order[k]].id).collect();
        if needs_pci && !pci::supports_requests(self.host, &self.guest.pci_requests, &chosen) {
            return false;
        }
        match &self.limits.network {
            Some(need) if needs_net => pci::supports_networks(self.host, need, &chosen),
            _ => true,
        }
    }

    /// Whether every guest cell can get a host cell of its own (over the filled table), computed once.
    pub(crate) fn all_matchable(&self) -> bool {
        if let Some(known) = self.all_matchable.get() {
            return known;
        }
        let (mut inline, mut heap) = ([false; INLINE_COLUMNS], Vec::new());
        let known = self.matchable(0, scratch(&mut inline, &mut heap, false, self.columns()));
        self.all_matchable.set(Some(known));
        known
    }

    /// Whether guest cells `from..` can each get a distinct unused host cell (Kuhn's augmenting paths
    /// over the filled table).
    pub(crate) fn matchable(&self, from: usize, used: &[bool]) -> bool {
        let n = self.columns();
        // A refused host asks this once or twice.
        let (mut owner_inline, mut owner_heap) = ([usize::MAX; INLINE_COLUMNS], Vec::new());
        let (mut seen_inline, mut seen_heap) = ([false; INLINE_COLUMNS], Vec::new());
        let owner = scratch(&mut owner_inline, &mut owner_heap, usize::MAX, n);
        let seen = scratch(&mut seen_inline, &mut seen_heap, false, n);
        (from..self.guest.cells.len()).all(|g| {
            seen.fill(false);
            self.augment(g, used, owner, seen)
        })
    }

    /// One augmenting path for guest cell `g`: a free fitting column, or one whose owner can move.
    fn augment(&self, g: usize, used: &[bool], owner: &mut [usize], seen: &mut [bool]) -> bool {
        for k in 0..owner.len() {
            if used[k] || seen[k] || !matches!(self.result(g, k), Some(Ok(_))) {
                continue;
            }
            seen[k] = true;
            if owner[k] == usize::MAX || self.augment(owner[k], used, owner, seen) {
                owner[k] = g;
                return true;
            }
        }
        false
    }
}

/// Host cells a search's per-column scratch holds on the stack; a larger host's goes on the heap.
const INLINE_COLUMNS: usize = 64;

/// `n` copies of `value`: the first `n` of `inline` when they fit, else `heap` filled. Asked once
/// per host a batch tries; a `SmallVec` built by `from_elem` is a call and a move of its whole
/// inline array in wasm, where this is a fill of the stack.
fn scratch<'a, T: Copy>(inline: &'a mut [T; INLINE_COLUMNS], heap: &'a mut Vec<T>, value: T, n: usize) -> &'a mut [T] {
    match inline.get_mut(..n) {
        Some(part) => part,
        None => {
            heap.resize(n, value);
            heap
        }
    }
}

/// Trial positions chosen for guest cells 0, 1, ... (inline for guests of up to 16 cells).
pub(crate) type Assignment = SmallVec<[usize; 16]>;

enum Walk {
    /// The assignment is the one the walk was given, complete.
    Found,
    Exhausted,
    NoneLeft,
}

/// Nova's walk, in its order, evaluating fits lazily; gives up after `budget` trials.
fn walk_lazily(table: &mut FitTable, g: usize, used: &mut [bool], assign: &mut Assignment, budget: &mut usize) -> Walk {
    if g == table.guest.cells.len() {
        // Found ends the walk, leaving the assignment in place (no copy returned up the levels).
        return if table.whole_placement_ok(assign) { Walk::Found } else { Walk::NoneLeft };
    }
    for k in 0..table.columns() {
        if used[k] {
            continue;
        }
        if *budget == 0 {
            return Walk::Exhausted;
        }
        *budget -= 1;
        if !table.fits(g, k) {
            continue;
        }
        used[k] = true;
        assign.push(k);
        match walk_lazily(table, g + 1, used, assign, budget) {
            Walk::NoneLeft => {}
            done => return done,
        }
        assign.pop();
        used[k] = false;
    }
    Walk::NoneLeft
}

/// The same walk over the filled table, entering only branches the matching says can complete.
fn walk_pruned(table: &FitTable, g: usize, used: &mut [bool], assign: &mut Assignment) -> Option<Assignment> {
    if g == table.guest.cells.len() {
        return table.whole_placement_ok(assign).then(|| assign.clone());
    }
    for k in 0..table.columns() {
        if used[k] || !matches!(table.result(g, k), Some(Ok(_))) {
            continue;
        }
        used[k] = true;
        assign.push(k);
        if table.matchable(g + 1, used) {
            if let Some(found) = walk_pruned(table, g + 1, used, assign) {
                return Some(found);
            }
        }
        assign.pop();
        used[k] = false;
    }
    None
}

/// The (guest cell, trial position, fit) of a complete assignment, guest cells in order.
fn assigned<'t>(table: &'t FitTable, assign: &'t [usize]) -> impl Iterator<Item = (usize, usize, &'t CellFit)> + 't {
    // Every assigned pair was fitted before it was assigned.
    assign.iter().enumerate().filter_map(|(g, &k)| match table.result(g, k) {
        Some(Ok(fit)) => Some((g, k, fit)),
        _ => None,
    })
}

/// The placement of a complete assignment: the only pairs whose CPUs are chosen.
pub(crate) fn placement_from(table: &FitTable, assign: &[usize], policy: &str) -> Placement {
    let mut cells = Vec::with_capacity(assign.len());
    for (g, k, fit) in assigned(table, assign) {
        let pinning = table.pinning(g, k, fit);
        let guest = &table.guest.cells[g];
        cells.push(PlacedCell {
            guest_cell: g as u32,
            host_cell: fit.host_cell,
            cpuset: guest.cpuset.clone(),
            memory: guest.memory,
            pagesize_kb: fit.pagesize_kb,
            pinning: pinning.pairs,
            emulator: pinning.emulator,
        });
    }
    Placement::of(table.guest, policy, cells)
}

/// `placement_from`, written into `out` (a batch's columns, packed words) without building it.
fn placement_into(table: &FitTable, assign: &[usize], out: &mut impl PlacementSink) {
    out.open();
    for (g, k, fit) in assigned(table, assign) {
        let guest = &table.guest.cells[g];
        out.cell(g as u32, fit.host_cell, guest.memory, fit.pagesize_kb, &guest.cpuset, |out| table.pin_into(g, k, fit, out));
    }
    out.close();
}

/// What a search decided, before its answer is written: a single fit builds it, a batch writes it
/// into its columns.
pub(crate) enum Decision<'a> {
    /// Guest cell g goes to the host cell at trial position `assign[g]`.
    Placed(FitTable<'a>, Assignment),
    /// No assignment: the table says why.
    Refused(FitTable<'a>),
    /// Answered without a search (no NUMA constraint, too few host cells).
    Answered(Result<Placement, Rejection>),
}

impl Decision<'_> {
    pub(crate) fn answer(self, policy: &str) -> Result<Placement, Rejection> {
        match self {
            Decision::Placed(table, assign) => Ok(placement_from(&table, &assign, policy)),
            Decision::Refused(table) => Err(rejection_from(&table)),
            Decision::Answered(answer) => answer,
        }
    }

    /// The answer appended to `batch` (whose policy it is).
    pub(crate) fn write<P: PlacementSink>(self, batch: &mut Batch<P>) {
        match self {
            Decision::Placed(table, assign) => placement_into(&table, &assign, batch.next_placed()),
            Decision::Refused(table) => batch.push_rejected(|out| explain(&table, out)),
            Decision::Answered(answer) => batch.push(&answer),
        }
    }

    /// The answer: a placement written into `out` (packed words), or the rejection.
    pub(crate) fn place_into(self, out: &mut impl PlacementSink) -> Result<(), Rejection> {
        match self {
            Decision::Placed(table, assign) => {
                placement_into(&table, &assign, out);
                Ok(())
            }
            Decision::Refused(table) => Err(rejection_from(&table)),
            Decision::Answered(answer) => answer.map(|p| out.placement(&p)),
        }
    }
}

pub(crate) fn rejection_from(table: &FitTable) -> Rejection {
    let mut rejection = Rejection::whole(String::new());
    explain(table, &mut rejection);
    rejection
}

/// Why `table` holds no placement, written into `out`: for each guest cell, why each host cell it
/// was tried on refused it; then the summary and the reasons that concern the whole placement.
fn explain(table: &FitTable, out: &mut impl RejectionSink) {
    let mut homeless: SmallVec<[usize; 16]> = SmallVec::new();
    let columns = table.columns();
    // Each guest cell's description and, for a cell with twins, its sentence for each host cell
    // after its number: its twins' sentences differ from its own only in that number.
    let mut asked: SmallVec<[String; 4]> = SmallVec::new();
    let mut rests: Vec<Option<String>> = Vec::new();
    for (g, guest) in table.guest.cells.iter().enumerate() {
        let twin = table.twin(g);
        // A twin reads its first cell's description (an empty one of its own stands in its place).
        let own = if twin == g { describe_guest_cell(guest, table.guest) } else { String::new() };
        let asks: &str = if twin == g { &own } else { &asked[twin] };
        let words_for_twins = twin == g && (g + 1..table.guest.cells.len()).any(|later| table.twin(later) == g);
        if words_for_twins && rests.is_empty() {
            rests.resize(table.guest.cells.len() * columns, None);
        }
        let mut fits_somewhere = false;
        for k in 0..columns {
            let host_cell = &table.host.cells[table.order[k]];
            match table.result(g, k) {
                Some(Err(r)) => out.refusal(g as u32, host_cell.id, r, |s| {
                    let worded = rests.get(twin * columns + k).and_then(Option::as_deref);
                    write_refusal_subject(s, g);
                    match worded {
                        Some(rest) if twin != g && matches!(table.result(twin, k), Some(Err(said)) if said == r) => {
                            crate::text::push(s, rest)
                        }
                        _ => {
                            let start = s.len();
                            write_refusal_place(s, asks, host_cell);
                            write_refusal_why(s, g, guest, table.guest, host_cell, r);
                            if words_for_twins {
                                rests[g * columns + k] = Some(s[start..].to_string());
                            }
                        }
                    }
                }),
                Some(Ok(_)) => fits_somewhere = true,
                None => {}
            }
        }
        asked.push(own);
        if !fits_somewhere {
            homeless.push(g);
        }
    }
    if !homeless.is_empty() {
        out.summary(&describe_homeless(&homeless));
    } else if !table.all_matchable() {
        out.summary(&describe_no_distinct_cells(table.guest.cells.len()));
    } else {
        if !table.guest.pci_requests.is_empty() {
            out.reason(&format!(
                "PCI requests ({} device(s)) cannot be met with NUMA affinity on any set of host cells that fits",
                table.guest.pci_requests.iter().map(|r| r.count).sum::<u32>()
            ));
        }
        if table.limits.network.is_some() {
            out.reason("network NUMA affinity (physnets / tunneled) cannot be met on any set of host cells that fits");
        }
        out.summary("every assignment of guest cells to host cells fails the PCI or network checks");
    }
}

/// The answers every policy gives before searching (on a request already validated): no NUMA
/// constraint at all, or too few host cells; `None` when there is something to search.
pub(crate) fn answer_without_search(host: &PreparedHost, guest: &GuestTopology, policy: &str) -> Option<Result<Placement, Rejection>> {
    if guest.cells.is_empty() {
        return Some(Ok(Placement::of(guest, policy, Vec::new())));
    }
    let cells = host.host().cells.len();
    if cells < guest.cells.len() {
        return Some(Err(Rejection::whole(format!("the host has {cells} NUMA cells, the guest needs {}", guest.cells.len()))));
    }
    None
}

/// Places `guest` on `host` the way Nova does, or explains why it cannot.
pub fn fit(host: &PreparedHost, guest: &ValidRequest, limits: &Limits, policy: &str) -> Result<Placement, Rejection> {
    decide(host, guest, limits, policy, &mut Slots::new()).answer(policy)
}

/// Nova's assignment of `guest` on `host`, or the table that shows there is none.
pub(crate) fn decide<'a>(
    host: &'a PreparedHost,
    guest: &'a ValidRequest,
    limits: &'a Limits,
    policy: &str,
    slots: &'a mut Slots,
) -> Decision<'a> {
    let request = guest;
    let guest = guest.get();
    if let Some(answer) = answer_without_search(host, guest, policy) {
        return Decision::Answered(answer);
    }
    let mut table = FitTable::new(host, request, limits, Packing::Nova, slots);
    let (mut inline, mut heap) = ([false; INLINE_COLUMNS], Vec::new());
    let used = scratch(&mut inline, &mut heap, false, table.columns());
    let mut assign = Assignment::new();
    let mut budget = guest.cells.len() * table.columns();
    match walk_lazily(&mut table, 0, used, &mut assign, &mut budget) {
        Walk::Found => return Decision::Placed(table, assign),
        Walk::NoneLeft | Walk::Exhausted => {}
    }
    table.fill();
    let mut used = vec![false; table.columns()];
    let mut assign = Assignment::new();
    if table.all_matchable() {
        if let Some(found) = walk_pruned(&table, 0, &mut used, &mut assign) {
            return Decision::Placed(table, found);
        }
    }
    Decision::Refused(table)
}
