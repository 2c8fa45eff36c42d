//! The `balanced` policy: same rules as `nova`, a different choice among the placements they allow.

mod common;
use common::*;

use numafit_plugin::{claim, CpuSet, HostTopology, Limits, Policy, ThreadPolicy};

fn cells_and_pins(p: &numafit_plugin::Placement) -> Vec<(u32, Vec<(u32, u32)>)> {
    p.cells.iter().map(|c| (c.host_cell, c.pinning.clone())).collect()
}

/// Four equal cells; cells 0 and 3 are close to each other (11), every other pair is far (21).
fn asymmetric() -> HostTopology {
    let mut h = four_node();
    let near = |a: usize, b: usize| a == b || (a.min(b) == 0 && a.max(b) == 3);
    h.distances = (0..16)
        .map(|i| (i / 4, i % 4))
        .map(|(a, b)| {
            if a == b {
                10
            } else if near(a, b) {
                11
            } else {
                21
            }
        })
        .collect();
    h
}

#[test]
fn multi_cell_guests_go_on_the_closest_cells() {
    let h = asymmetric();
    let g = dedicated(&[(2, 1024), (2, 1024)], None);
    let nova = Policy::Nova.fit(&h, &g, &Limits::default()).unwrap();
    let balanced = Policy::Balanced.fit(&h, &g, &Limits::default()).unwrap();
    assert_eq!(nova.cells.iter().map(|c| c.host_cell).collect::<Vec<_>>(), vec![0, 1], "Nova takes the first cells in its order");
    assert_eq!(balanced.cells.iter().map(|c| c.host_cell).collect::<Vec<_>>(), vec![0, 3], "balanced takes the pair at distance 11");
    assert_eq!(balanced.policy, "balanced");
}

#[test]
fn odd_vcpus_go_on_cores_already_in_use_rather_than_break_a_whole_core() {
    let mut h = dual_socket_ht();
    h.cells[0].pinned_cpus = set(&[0]);
    let g = dedicated(&[(3, 1024)], None);
    let p = Policy::Balanced.fit(&h, &g, &Limits::default()).unwrap();
    assert_eq!(cells_and_pins(&p), vec![(0, vec![(0, 1), (1, 9), (2, 8)])], "core {{1,9}} whole, the third vCPU beside the pinned CPU 0");
    let nova = Policy::Nova.fit(&h, &g, &Limits { strategy: numafit_plugin::Strategy::Pack, ..Default::default() }).unwrap();
    assert_eq!(cells_and_pins(&nova), vec![(0, vec![(0, 1), (1, 9), (2, 2)])], "Nova breaks core {{2,10}}");
}

#[test]
fn a_cell_stays_inside_one_l3_cache_when_one_can_hold_it() {
    let mut h = host(vec![cell(0, &[&[0], &[1], &[2], &[3], &[4], &[5], &[6], &[7]], 8192)]);
    h.cells[0].cache_groups = vec![set(&[0, 1, 2, 3]), set(&[4, 5, 6, 7])];
    h.cells[0].pinned_cpus = set(&[0, 1]);
    let pins = |n: u32| Policy::Balanced.fit(&h, &dedicated(&[(n, 512)], None), &Limits::default()).unwrap().cells[0].pinning.clone();
    assert_eq!(pins(2), vec![(0, 2), (1, 3)], "the fuller cache that still holds two");
    assert_eq!(pins(3), vec![(0, 4), (1, 5), (2, 6)], "the other cache holds three");
}

#[test]
fn a_single_cell_guest_goes_where_it_strands_least() {
    // Cell 0 has half its memory used, cell 1 half its CPUs: a CPU-heavy guest belongs on cell 0.
    let mut h = four_node();
    h.cells.truncate(2);
    h.cells[0].memory_usage = 4096;
    h.cells[0].mempages[0].used = 4096 * 256;
    h.cells[1].pinned_cpus = set(&[4, 5]);
    let g = dedicated(&[(2, 512)], None);
    assert_eq!(Policy::Balanced.fit(&h, &g, &Limits::default()).unwrap().cells[0].host_cell, 0);
    let memory_heavy = dedicated(&[(1, 4096)], None);
    assert_eq!(Policy::Balanced.fit(&h, &memory_heavy, &Limits::default()).unwrap().cells[0].host_cell, 1);
}

#[test]
fn balanced_placements_claim_cleanly_and_refusals_explain() {
    let h = asymmetric();
    for thread in [None, Some(ThreadPolicy::Isolate), Some(ThreadPolicy::Prefer)] {
        let g = dedicated(&[(2, 1024), (2, 1024)], thread);
        let p = Policy::Balanced.fit(&h, &g, &Limits::default()).unwrap();
        claim(&h, &p).expect("claims");
    }
    let r = Policy::Balanced.fit(&h, &dedicated(&[(5, 1024)], None), &Limits::default()).unwrap_err();
    assert!(r.summary.contains("fits on no host cell") && !r.refusals.is_empty());
    let _ = CpuSet::new();
}
