//! One request's answers on many hosts, as columns (contract 0.4's `fit-batch`): a fleet call
//! answers thousands of hosts, and a record per answer (a placement is eight lists and a string)
//! costs more to hand over than the fits cost to decide. Here every answer of the batch is a few
//! rows in shared columns; nested tables are found by `*_ends` columns (row r of the outer table
//! owns inner rows `ends[r-1]..ends[r]`, from 0 for r = 0), texts by the byte where each ends.
//! Contract 0.5 keeps the rejections' columns and packs the placements instead
//! (`Batch<PackedPlacements>`, `crate::packed`).
//!
//! `push` writes an answer in; `answers` reads each back as the fit alone gave it, checking the
//! columns on the way (a batch from a plugin is untrusted: a bad end is an error naming the column,
//! never a panic).

use std::ops::Range;

use crate::cpuset::CpuSet;
use crate::packed::PackedPlacements;
use crate::pinning::PinSink;
use crate::placement::{CellRefusal, PlacedCell, Placement, PlacementSink, Rejection, RejectionSink};
use crate::refusal::{Refusal, Shortfall};
use crate::request::{CpuPolicy, EmulatorThreads, GuestTopology, ThreadPolicy};

/// The placements of a batch, one per host that fits, in host order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlacedColumns {
    /// The request's policies and the policy's name: the same for every placement of one request.
    pub policy: String,
    pub cpu_policy: Option<CpuPolicy>,
    pub thread_policy: Option<ThreadPolicy>,
    pub emulator_threads: Option<EmulatorThreads>,
    /// Per placement: where its cells end.
    pub cells_ends: Vec<u32>,
    /// Per placed cell.
    pub guest_cell: Vec<u32>,
    pub host_cell: Vec<u32>,
    pub memory_mb: Vec<u64>,
    pub page_size_kb: Vec<Option<u32>>,
    /// Per placed cell: where its floating vCPUs, its (vCPU, pCPU) pairs and its emulator CPUs end.
    pub shared_ends: Vec<u32>,
    pub shared_vcpus: Vec<u32>,
    pub pinned_ends: Vec<u32>,
    pub pinned_vcpus: Vec<u32>,
    pub pinned_pcpus: Vec<u32>,
    pub emulator_ends: Vec<u32>,
    pub emulator_pcpus: Vec<u32>,
}

/// The rejections of a batch, one per host that does not fit, in host order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RejectedColumns {
    /// Per rejection: where its summary ends in `summaries`.
    pub summary_ends: Vec<u32>,
    pub summaries: String,
    /// Per rejection: where its refusals end.
    pub refusals_ends: Vec<u32>,
    /// Per refusal.
    pub guest_cell: Vec<u32>,
    pub host_cell: Vec<u32>,
    pub shortfall: Vec<Shortfall>,
    pub needed: Vec<u64>,
    pub available: Vec<u64>,
    pub detail_ends: Vec<u32>,
    pub details: String,
    /// Per rejection: where its reasons end in `reason_ends`; per reason: where it ends in `reasons`.
    pub reasons_ends: Vec<u32>,
    pub reason_ends: Vec<u32>,
    pub reasons: String,
}

/// One request's answers on many hosts; its placements as columns (contract 0.4) or packed
/// (`PackedPlacements`, 0.5).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch<P = PlacedColumns> {
    /// Per host, in the order asked: whether it fits (its answer is the next placement) or not.
    pub fits: Vec<bool>,
    pub placed: P,
    pub rejected: RejectedColumns,
}

/// Where the next row of a column ends: its length, which a batch keeps under 2^32 rows.
fn end(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl Batch {
    /// An empty batch for `guest`'s answers by `policy`.
    pub fn new(guest: &GuestTopology, policy: &str) -> Batch {
        Batch {
            fits: Vec::new(),
            placed: PlacedColumns {
                policy: policy.to_string(),
                cpu_policy: guest.cpu_policy,
                thread_policy: guest.thread_policy,
                emulator_threads: guest.emulator_threads,
                ..PlacedColumns::default()
            },
            rejected: RejectedColumns::default(),
        }
    }

    /// Room for `hosts` more answers, as if each placed `guest`: the columns are sized once
    /// instead of growing (and being copied) as a fleet's answers come in. Each column reserves
    /// at most `RESERVE_ROWS` rows: past that (a huge guest on a huge fleet, most of which may
    /// not fit) it grows as answers come.
    pub fn reserve(&mut self, hosts: usize, guest: &GuestTopology) {
        const RESERVE_ROWS: usize = 1 << 22;
        let rows = |per_host: usize| hosts.saturating_mul(per_host).min(RESERVE_ROWS);
        let cells = rows(guest.cells.len());
        let (pinned, shared): (usize, usize) =
            guest.cells.iter().map(|c| (c.pcpuset.len(), c.cpuset.len())).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let p = &mut self.placed;
        self.fits.reserve(rows(1));
        p.cells_ends.reserve(rows(1));
        for column in [&mut p.guest_cell, &mut p.host_cell, &mut p.shared_ends, &mut p.pinned_ends, &mut p.emulator_ends] {
            column.reserve(cells);
        }
        p.memory_mb.reserve(cells);
        p.page_size_kb.reserve(cells);
        p.pinned_vcpus.reserve(rows(pinned));
        p.pinned_pcpus.reserve(rows(pinned));
        p.shared_vcpus.reserve(rows(shared));
    }
}

impl<P: PlacementSink> Batch<P> {
    /// Number of hosts answered.
    pub fn len(&self) -> usize {
        self.fits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fits.is_empty()
    }

    /// Appends the next host's answer. A placement's policies are the batch's (one request, one
    /// policy), so only its cells are written.
    pub fn push(&mut self, answer: &Result<Placement, Rejection>) {
        match answer {
            Ok(p) => self.next_placed().placement(p),
            Err(r) => self.push_rejected(|out| {
                for c in &r.refusals {
                    out.refusal(c.guest_cell, c.host_cell, &c.refusal, |s| s.push_str(&c.detail));
                }
                out.summary(&r.summary);
                for reason in &r.reasons {
                    out.reason(reason);
                }
            }),
        }
    }

    /// Appends the next host's rejection, written by `write` (a search's explanation, its
    /// sentences written straight into the batch's text).
    pub fn push_rejected(&mut self, write: impl FnOnce(&mut RejectedColumns)) {
        self.fits.push(false);
        let r = &mut self.rejected;
        write(r);
        r.summary_ends.push(end(r.summaries.len()));
        r.refusals_ends.push(end(r.guest_cell.len()));
        r.reasons_ends.push(end(r.reason_ends.len()));
    }

    /// Where the next host's placement goes (the host fits): a search writes the assignment it
    /// chose into it, one placement, without building a `Placement` first.
    pub fn next_placed(&mut self) -> &mut P {
        self.fits.push(true);
        &mut self.placed
    }
}

impl Batch {
    /// Each host's answer as the fit alone gave it, in order; an error names the first column
    /// that does not hold together.
    pub fn answers(&self) -> Result<Vec<Result<Placement, Rejection>>, String> {
        self.merged(self.placed.read()?)
    }
}

impl Batch<PackedPlacements> {
    /// An empty batch of packed placements, with room for `hosts` answers as if each placed `guest`.
    pub fn packed(hosts: usize, guest: &GuestTopology) -> Self {
        const RESERVE_WORDS: usize = 1 << 24;
        let per_placement = crate::packed::words_for(guest);
        let mut batch = Batch::<PackedPlacements>::default();
        batch.fits.reserve(hosts);
        batch.placed.words.reserve(hosts.saturating_mul(per_placement).min(RESERVE_WORDS));
        batch
    }

    /// Each host's answer as the fit alone gave it, in order (`guest`'s placements by `policy`);
    /// an error names what does not hold together.
    pub fn answers(&self, guest: &GuestTopology, policy: &str) -> Result<Vec<Result<Placement, Rejection>>, String> {
        self.merged(self.placed.read(guest, policy)?)
    }
}

impl<P> Batch<P> {
    /// The placements and the rejections, back in host order.
    fn merged(&self, placements: Vec<Placement>) -> Result<Vec<Result<Placement, Rejection>>, String> {
        let rejections = self.rejected.read()?;
        let (fitting, refused) = (self.fits.iter().filter(|f| **f).count(), self.fits.iter().filter(|f| !**f).count());
        if fitting != placements.len() || refused != rejections.len() {
            return Err(format!(
                "fits: {fitting} hosts fit and {refused} do not, but the batch holds {} placements and {} rejections",
                placements.len(),
                rejections.len()
            ));
        }
        let (mut placements, mut rejections) = (placements.into_iter(), rejections.into_iter());
        Ok(self.fits.iter().filter_map(|&fits| if fits { placements.next().map(Ok) } else { rejections.next().map(Err) }).collect())
    }
}

impl PinSink for PlacedColumns {
    fn pair(&mut self, vcpu: u32, pcpu: u32) {
        self.pinned_vcpus.push(vcpu);
        self.pinned_pcpus.push(pcpu);
    }

    fn emulator(&mut self, pcpu: u32) {
        self.emulator_pcpus.push(pcpu);
    }

    fn pairs(&mut self, vcpus: &[u32], pcpus: impl Iterator<Item = u32>) {
        // Each column extended in one run (its length kept in a register, not stored per pair).
        let start = self.pinned_pcpus.len();
        self.pinned_pcpus.extend(pcpus.take(vcpus.len()));
        self.pinned_vcpus.extend_from_slice(&vcpus[..self.pinned_pcpus.len() - start]);
    }

    fn pairs_run(&mut self, vcpus: &[u32], pcpus: &[u32]) {
        let n = pcpus.len().min(vcpus.len());
        self.pinned_pcpus.extend_from_slice(&pcpus[..n]);
        self.pinned_vcpus.extend_from_slice(&vcpus[..n]);
    }
}

impl PlacementSink for PlacedColumns {
    fn open(&mut self) {}

    fn cell(
        &mut self,
        guest_cell: u32,
        host_cell: u32,
        memory_mb: u64,
        page_size_kb: Option<u32>,
        shared: &CpuSet,
        pins: impl FnOnce(&mut Self),
    ) {
        self.guest_cell.push(guest_cell);
        self.host_cell.push(host_cell);
        self.memory_mb.push(memory_mb);
        self.page_size_kb.push(page_size_kb);
        self.shared_vcpus.extend(shared.iter());
        self.shared_ends.push(end(self.shared_vcpus.len()));
        pins(self);
        self.pinned_ends.push(end(self.pinned_vcpus.len()));
        self.emulator_ends.push(end(self.emulator_pcpus.len()));
    }

    fn close(&mut self) {
        self.cells_ends.push(end(self.guest_cell.len()));
    }
}

impl PlacedColumns {
    fn read(&self) -> Result<Vec<Placement>, String> {
        let cells = self.guest_cell.len();
        same_rows(
            ("placed.guest-cell", cells),
            &[
                ("placed.host-cell", self.host_cell.len()),
                ("placed.memory-mb", self.memory_mb.len()),
                ("placed.page-size-kb", self.page_size_kb.len()),
                ("placed.shared-ends", self.shared_ends.len()),
                ("placed.pinned-ends", self.pinned_ends.len()),
                ("placed.emulator-ends", self.emulator_ends.len()),
            ],
        )?;
        same_rows(("placed.pinned-vcpus", self.pinned_vcpus.len()), &[("placed.pinned-pcpus", self.pinned_pcpus.len())])?;
        let shared = spans(&self.shared_ends, self.shared_vcpus.len(), "placed.shared-ends")?;
        let pinned = spans(&self.pinned_ends, self.pinned_vcpus.len(), "placed.pinned-ends")?;
        let emulator = spans(&self.emulator_ends, self.emulator_pcpus.len(), "placed.emulator-ends")?;
        let placements = spans(&self.cells_ends, cells, "placed.cells-ends")?;
        Ok(placements
            .into_iter()
            .map(|rows| Placement {
                policy: self.policy.clone(),
                cpu_policy: self.cpu_policy,
                thread_policy: self.thread_policy,
                emulator_threads: self.emulator_threads,
                cells: rows
                    .map(|k| PlacedCell {
                        guest_cell: self.guest_cell[k],
                        host_cell: self.host_cell[k],
                        cpuset: self.shared_vcpus[shared[k].clone()].iter().copied().collect(),
                        memory: self.memory_mb[k],
                        pagesize_kb: self.page_size_kb[k],
                        pinning: pinned[k].clone().map(|i| (self.pinned_vcpus[i], self.pinned_pcpus[i])).collect(),
                        emulator: self.emulator_pcpus[emulator[k].clone()].to_vec(),
                    })
                    .collect(),
            })
            .collect())
    }
}

impl RejectionSink for RejectedColumns {
    fn refusal(&mut self, guest_cell: u32, host_cell: u32, refusal: &Refusal, detail: impl FnOnce(&mut String)) {
        self.guest_cell.push(guest_cell);
        self.host_cell.push(host_cell);
        self.shortfall.push(refusal.shortfall);
        self.needed.push(refusal.needed);
        self.available.push(refusal.available);
        detail(&mut self.details);
        self.detail_ends.push(end(self.details.len()));
    }

    fn summary(&mut self, summary: &str) {
        self.summaries.push_str(summary);
    }

    fn reason(&mut self, reason: &str) {
        self.reasons.push_str(reason);
        self.reason_ends.push(end(self.reasons.len()));
    }
}

impl RejectedColumns {
    fn read(&self) -> Result<Vec<Rejection>, String> {
        let refusals = self.guest_cell.len();
        same_rows(
            ("rejected.guest-cell", refusals),
            &[
                ("rejected.host-cell", self.host_cell.len()),
                ("rejected.shortfall", self.shortfall.len()),
                ("rejected.needed", self.needed.len()),
                ("rejected.available", self.available.len()),
                ("rejected.detail-ends", self.detail_ends.len()),
            ],
        )?;
        same_rows(
            ("rejected.summary-ends", self.summary_ends.len()),
            &[("rejected.refusals-ends", self.refusals_ends.len()), ("rejected.reasons-ends", self.reasons_ends.len())],
        )?;
        let summaries = texts(&self.summary_ends, &self.summaries, "rejected.summary-ends")?;
        let details = texts(&self.detail_ends, &self.details, "rejected.detail-ends")?;
        let reasons = texts(&self.reason_ends, &self.reasons, "rejected.reason-ends")?;
        let refused = spans(&self.refusals_ends, refusals, "rejected.refusals-ends")?;
        let reasoned = spans(&self.reasons_ends, reasons.len(), "rejected.reasons-ends")?;
        Ok(summaries
            .into_iter()
            .zip(refused.into_iter().zip(reasoned))
            .map(|(summary, (rows, why))| Rejection {
                summary: summary.to_string(),
                refusals: rows
                    .map(|k| CellRefusal {
                        guest_cell: self.guest_cell[k],
                        host_cell: self.host_cell[k],
                        refusal: Refusal::new(self.shortfall[k], self.needed[k], self.available[k]),
                        detail: details[k].to_string(),
                    })
                    .collect(),
                reasons: reasons[why].iter().map(|r| r.to_string()).collect(),
            })
            .collect())
    }
}

/// Columns of one table have as many rows as its first column; the error names the first that does not.
fn same_rows((first, rows): (&str, usize), others: &[(&str, usize)]) -> Result<(), String> {
    match others.iter().find(|(_, len)| *len != rows) {
        Some((name, len)) => Err(format!("{name}: {len} rows, but {first} has {rows}")),
        None => Ok(()),
    }
}

/// The row ranges an `*_ends` column gives an inner table of `len` rows: ends never go back and
/// the last one is the table's end (an empty ends column owns nothing, so `len` must be 0).
fn spans(ends: &[u32], len: usize, what: &str) -> Result<Vec<Range<usize>>, String> {
    let mut start = 0usize;
    let mut out = Vec::with_capacity(ends.len());
    for (r, &e) in ends.iter().enumerate() {
        let e = e as usize;
        if e < start || e > len {
            return Err(format!("{what}[{r}]: {e} is outside {start}..={len}"));
        }
        out.push(start..e);
        start = e;
    }
    if start != len {
        return Err(format!("{what}: the last end is {start}, but the table it ends has {len} rows"));
    }
    Ok(out)
}

/// The texts an `*_ends` column cuts `text` into, each ending on a character boundary.
fn texts<'t>(ends: &[u32], text: &'t str, what: &str) -> Result<Vec<&'t str>, String> {
    spans(ends, text.len(), what)?
        .into_iter()
        .enumerate()
        .map(|(r, span)| text.get(span.clone()).ok_or_else(|| format!("{what}[{r}]: {} cuts a character in two", span.end)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(summary: &str, refusals: &[(u32, u32, &str)], reasons: &[&str]) -> Rejection {
        Rejection {
            summary: summary.into(),
            refusals: refusals
                .iter()
                .map(|&(g, h, d)| CellRefusal {
                    guest_cell: g,
                    host_cell: h,
                    refusal: Refusal::new(Shortfall::FreeCpus, 4, u64::from(h)),
                    detail: d.into(),
                })
                .collect(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// A placed cell: guest cell, host cell, floating vCPUs, (vCPU, pCPU) pairs, emulator CPUs.
    type Cell<'a> = (u32, u32, &'a [u32], &'a [(u32, u32)], &'a [u32]);

    fn placement(cells: &[Cell]) -> Placement {
        Placement {
            policy: "nova".into(),
            cpu_policy: Some(CpuPolicy::Mixed),
            thread_policy: None,
            emulator_threads: Some(EmulatorThreads::Isolate),
            cells: cells
                .iter()
                .map(|&(g, h, shared, pinned, emulator)| PlacedCell {
                    guest_cell: g,
                    host_cell: h,
                    cpuset: shared.iter().copied().collect(),
                    memory: 1024,
                    pagesize_kb: (h == 1).then_some(2048),
                    pinning: pinned.to_vec(),
                    emulator: emulator.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn every_answer_reads_back_as_it_was_pushed() {
        let guest = GuestTopology {
            cells: Vec::new(),
            cpu_policy: Some(CpuPolicy::Mixed),
            thread_policy: None,
            emulator_threads: Some(EmulatorThreads::Isolate),
            pci_requests: Vec::new(),
        };
        let answers = vec![
            Err(rejection("guest cell 1 fits on no host cell", &[(0, 0, "é: first"), (1, 0, "second")], &[])),
            Ok(placement(&[(0, 1, &[0, 1], &[(2, 8), (3, 9)], &[10]), (1, 0, &[], &[(4, 3)], &[])])),
            Err(rejection("", &[], &["PCI", "network ünit"])),
            Ok(placement(&[])),
            Ok(placement(&[(0, 2, &[5], &[], &[])])),
        ];
        let mut batch = Batch::new(&guest, "nova");
        for a in &answers {
            batch.push(a);
        }
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.answers().unwrap(), answers);
        assert_eq!(Batch::new(&guest, "nova").answers().unwrap(), Vec::new());
    }

    #[test]
    fn columns_that_do_not_hold_together_are_named() {
        let guest = GuestTopology::default();
        let mut batch = Batch::new(&guest, "nova");
        batch.push(&Ok(placement(&[(0, 1, &[0], &[(2, 8)], &[])])));
        batch.push(&Err(rejection("no", &[(0, 0, "ü"), (1, 0, "x")], &["why"])));
        let broken = |f: &dyn Fn(&mut Batch)| {
            let mut b = batch.clone();
            f(&mut b);
            b.answers().unwrap_err()
        };
        assert!(broken(&|b| b.fits.push(true)).starts_with("fits: 2 hosts fit"));
        assert!(broken(&|b| b.placed.pinned_pcpus.push(3)).starts_with("placed.pinned-pcpus: 2 rows"));
        assert!(broken(&|b| b.placed.cells_ends[0] = 7).starts_with("placed.cells-ends[0]: 7 is outside 0..=1"));
        assert!(broken(&|b| b.placed.shared_ends[0] = 0).contains("placed.shared-ends: the last end is 0"));
        assert!(broken(&|b| b.rejected.detail_ends[0] = 1).contains("rejected.detail-ends[0]: 1 cuts a character"));
        assert!(broken(&|b| b.rejected.shortfall.clear()).starts_with("rejected.shortfall: 0 rows"));
        assert!(broken(&|b| b.rejected.reasons_ends.clear()).starts_with("rejected.reasons-ends: 0 rows"));
        assert!(broken(&|b| b.rejected.reasons_ends[0] = u32::MAX).contains("outside 0..=1"));
    }
}
