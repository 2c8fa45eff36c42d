//! Contract 0.5's packed placements: a placement as one run of 32-bit words holding only what the
//! policy chose (host cells, page sizes, host CPUs). Each cell's memory, floating vCPUs and
//! dedicated vCPUs, and the CPU policies, are the request's, which the reader has: lifting a
//! placement record (a string and eight lists) cost the host more than a small fit costs the policy.
//!
//! The layout (`wit/0.5.0/packed.wit` says the same), written and read only here:
//!
//! ```text
//! placement := cell-count, cell*
//! cell      := guest-cell, host-cell, page-size-kb (0: none), pinned-count, emulator-count,
//!              pinned host CPU * pinned-count (the i-th runs the guest cell's i-th dedicated
//!              vCPU, vCPUs ascending), emulator host CPU * emulator-count
//! ```

use crate::cpuset::CpuSet;
use crate::pinning::PinSink;
use crate::placement::{PlacedCell, Placement, PlacementSink};
use crate::request::{GuestCell, GuestTopology};

/// Words of a cell before its host CPUs.
const CELL_HEAD: usize = 5;
const PINNED_COUNT: usize = 3;
const EMULATOR_COUNT: usize = 4;

/// Placements packed one after the other (a single fit's answer holds one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedPlacements {
    pub words: Vec<u32>,
    /// Where the placement being written keeps its cell count, and the cell being written its head.
    placement_at: usize,
    cell_at: usize,
}

impl PackedPlacements {
    /// Placements packed already (as they crossed the boundary), to read.
    pub fn from_words(words: Vec<u32>) -> PackedPlacements {
        PackedPlacements { words, placement_at: 0, cell_at: 0 }
    }

    fn add(&mut self, at: usize, n: usize) {
        if let Some(w) = self.words.get_mut(at) {
            *w = w.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        }
    }

    fn emulator_count(&self) -> u32 {
        self.words.get(self.cell_at + EMULATOR_COUNT).copied().unwrap_or(0)
    }

    /// The placements packed here, in order, as `guest`'s placements by `policy`; an error names
    /// what does not hold together (packed words come from an untrusted plugin).
    pub fn read(&self, guest: &GuestTopology, policy: &str) -> Result<Vec<Placement>, String> {
        let mut placements = Vec::new();
        let mut rest = self.words.as_slice();
        while !rest.is_empty() {
            let (p, after) = read_placement(rest, guest, policy)?;
            placements.push(p);
            rest = after;
        }
        Ok(placements)
    }
}

impl PlacementSink for PackedPlacements {
    fn open(&mut self) {
        self.placement_at = self.words.len();
        self.words.push(0);
    }

    fn cell(
        &mut self,
        guest_cell: u32,
        host_cell: u32,
        _memory_mb: u64,
        page_size_kb: Option<u32>,
        _shared: &CpuSet,
        pins: impl FnOnce(&mut Self),
    ) {
        self.add(self.placement_at, 1);
        self.cell_at = self.words.len();
        self.words.extend_from_slice(&[guest_cell, host_cell, page_size_kb.unwrap_or(0), 0, 0]);
        pins(self);
    }

    fn close(&mut self) {}
}

impl PinSink for PackedPlacements {
    fn pair(&mut self, _vcpu: u32, pcpu: u32) {
        // vCPUs come ascending: the i-th pair is the cell's i-th dedicated vCPU's. Pinned CPUs
        // precede the emulator's (pinnings write them first; a late pair goes before them).
        let emulator = self.emulator_count() as usize;
        let at = self.words.len().saturating_sub(emulator);
        self.words.insert(at, pcpu);
        self.add(self.cell_at + PINNED_COUNT, 1);
    }

    fn emulator(&mut self, pcpu: u32) {
        self.words.push(pcpu);
        self.add(self.cell_at + EMULATOR_COUNT, 1);
    }

    fn pairs(&mut self, vcpus: &[u32], pcpus: impl Iterator<Item = u32>) {
        if self.emulator_count() != 0 {
            return vcpus.iter().zip(pcpus).for_each(|(&v, p)| self.pair(v, p));
        }
        let start = self.words.len();
        self.words.extend(pcpus.take(vcpus.len()));
        self.add(self.cell_at + PINNED_COUNT, self.words.len() - start);
    }

    fn pairs_run(&mut self, vcpus: &[u32], pcpus: &[u32]) {
        if self.emulator_count() != 0 {
            return self.pairs(vcpus, pcpus.iter().copied());
        }
        let run = &pcpus[..pcpus.len().min(vcpus.len())];
        self.words.extend_from_slice(run);
        self.add(self.cell_at + PINNED_COUNT, run.len());
    }
}

/// One placed cell as packed, its host CPUs borrowed from the words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedCell<'a> {
    pub guest_cell: u32,
    pub host_cell: u32,
    pub page_size_kb: Option<u32>,
    /// Host CPUs of the guest cell's dedicated vCPUs, in the vCPUs' ascending order.
    pub pinned: &'a [u32],
    pub emulator: &'a [u32],
}

/// The placement packed at the start of `words`, each cell handed to `each` in order; returns
/// the words after it. An error names what does not hold together.
pub fn read_cells<'a>(words: &'a [u32], mut each: impl FnMut(PackedCell<'a>) -> Result<(), String>) -> Result<&'a [u32], String> {
    let (&count, mut rest) = words.split_first().ok_or("a packed placement is empty: it lacks its cell count")?;
    for n in 0..count {
        let short = || format!("packed placement cell {n} of {count}: the words end inside it");
        let head = rest.get(..CELL_HEAD).ok_or_else(short)?;
        let (pinned, emulator) = (head[PINNED_COUNT] as usize, head[EMULATOR_COUNT] as usize);
        let cpus = rest.get(CELL_HEAD..).ok_or_else(short)?;
        let (pinned, cpus) = (cpus.get(..pinned).ok_or_else(short)?, &cpus[pinned.min(cpus.len())..]);
        let (emulator, after) = (cpus.get(..emulator).ok_or_else(short)?, &cpus[emulator.min(cpus.len())..]);
        each(PackedCell { guest_cell: head[0], host_cell: head[1], page_size_kb: (head[2] != 0).then_some(head[2]), pinned, emulator })?;
        rest = after;
    }
    Ok(rest)
}

/// `read_cells`, each cell handed to `each` with the request's guest cell it names, once checked
/// against it: the guest cell exists and has at least as many dedicated vCPUs as the cell pins.
pub fn read_guest_cells<'a, 'g>(
    words: &'a [u32],
    guest: &'g GuestTopology,
    mut each: impl FnMut(PackedCell<'a>, &'g GuestCell),
) -> Result<&'a [u32], String> {
    read_cells(words, |c| {
        let g = guest.cells.get(c.guest_cell as usize).ok_or_else(|| {
            format!("packed placement: guest cell {} is not one of the request's {} cells", c.guest_cell, guest.cells.len())
        })?;
        // A cell that pins nothing fits any guest cell: no bit count for the shared guests.
        if !c.pinned.is_empty() && c.pinned.len() > g.pcpuset.len() {
            return Err(format!(
                "packed placement: guest cell {} has {} dedicated vCPUs, not {} pinned host CPUs",
                c.guest_cell,
                g.pcpuset.len(),
                c.pinned.len()
            ));
        }
        each(c, g);
        Ok(())
    })
}

/// The placement packed at the start of `words`, as `guest`'s placement by `policy` (its memory,
/// floating and dedicated vCPUs are `guest`'s cells'), and the words after it.
pub fn read_placement<'a>(words: &'a [u32], guest: &GuestTopology, policy: &str) -> Result<(Placement, &'a [u32]), String> {
    let mut cells = Vec::with_capacity(words.first().map_or(0, |&n| (n as usize).min(guest.cells.len())));
    let rest = read_guest_cells(words, guest, |c, g| {
        cells.push(PlacedCell {
            guest_cell: c.guest_cell,
            host_cell: c.host_cell,
            cpuset: g.cpuset.clone(),
            memory: g.memory,
            pagesize_kb: c.page_size_kb,
            pinning: g.pcpuset.iter().zip(c.pinned.iter().copied()).collect(),
            emulator: c.emulator.to_vec(),
        })
    })?;
    Ok((Placement::of(guest, policy, cells), rest))
}

/// Words one packed placement of `guest` takes at most (isolated emulator threads take one host
/// CPU). Exact room matters: the bindings shrink a returned list to its length, a copy.
pub fn words_for(guest: &GuestTopology) -> usize {
    1 + guest.cells.iter().map(|c| CELL_HEAD + c.pcpuset.len()).sum::<usize>() + usize::from(guest.emulator_isolated())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::PageSizeWish;

    fn guest() -> GuestTopology {
        let cell = |shared: &[u32], dedicated: &[u32]| GuestCell {
            cpuset: shared.iter().copied().collect(),
            pcpuset: dedicated.iter().copied().collect(),
            memory: 2048,
            pagesize: Some(PageSizeWish::Large),
        };
        GuestTopology { cells: vec![cell(&[0], &[1, 2]), cell(&[3], &[4, 5])], ..GuestTopology::default() }
    }

    fn placement(g: &GuestTopology) -> Placement {
        let cell = |guest_cell: u32, host_cell: u32, pinning: Vec<(u32, u32)>, emulator: Vec<u32>| PlacedCell {
            guest_cell,
            host_cell,
            cpuset: g.cells[guest_cell as usize].cpuset.clone(),
            memory: 2048,
            pagesize_kb: (host_cell == 1).then_some(2048),
            pinning,
            emulator,
        };
        Placement::of(g, "nova", vec![cell(0, 3, vec![(1, 10), (2, 11)], vec![12]), cell(1, 1, vec![(4, 20), (5, 21)], vec![])])
    }

    #[test]
    fn a_placement_packs_and_reads_back_whole() {
        let g = guest();
        let p = placement(&g);
        let mut out = PackedPlacements::default();
        out.placement(&p);
        out.placement(&Placement::of(&g, "nova", Vec::new()));
        out.placement(&p);
        assert_eq!(out.words[..13], [2, 0, 3, 0, 2, 1, 10, 11, 12, 1, 1, 2048, 2]);
        assert_eq!(out.read(&g, "nova"), Ok(vec![p.clone(), Placement::of(&g, "nova", Vec::new()), p]));
    }

    #[test]
    fn a_pair_written_after_an_emulator_cpu_still_goes_before_it() {
        let mut out = PackedPlacements::default();
        out.open();
        out.cell(0, 0, 1, None, &CpuSet::default(), |out| {
            out.emulator(9);
            out.pair(1, 7);
            out.pairs(&[2], [8].into_iter());
        });
        out.close();
        assert_eq!(out.words, [1, 0, 0, 0, 2, 1, 7, 8, 9]);
    }

    #[test]
    fn words_that_do_not_hold_together_are_an_error_naming_what() {
        let g = guest();
        for (words, says) in [
            (vec![1, 0, 3, 0], "cell 0 of 1: the words end inside it"),
            (vec![1, 0, 3, 0, 3, 0, 10, 11], "cell 0 of 1: the words end inside it"),
            (vec![1, 0, 3, 0, 0, u32::MAX], "cell 0 of 1: the words end inside it"),
            (vec![2, 0, 3, 0, 0, 0], "cell 1 of 2"),
            (vec![1, 7, 3, 0, 0, 0], "guest cell 7 is not one of the request's 2 cells"),
            (vec![1, 0, 3, 0, 3, 0, 10, 11, 12], "guest cell 0 has 2 dedicated vCPUs, not 3 pinned host CPUs"),
        ] {
            let err = PackedPlacements::from_words(words.clone()).read(&g, "nova").expect_err("refused");
            assert!(err.contains(says), "{words:?}: {err}");
        }
    }
}
