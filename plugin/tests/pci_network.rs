//! PCI device and network NUMA affinity, checked on the whole set of chosen host cells.

mod common;
use common::*;

use numafit_plugin::request::{PciNumaPolicy, PciRequest};
use numafit_plugin::topology::{CellNetwork, PciPool};
use numafit_plugin::{fit, GuestTopology, HostTopology, Limits, NetworkNeed};

/// Four single-socket-pair cells (sockets 0,0,1,1); two NICs on cell 0, one with no NUMA node.
fn nic_host() -> HostTopology {
    let mut h = four_node();
    for c in &mut h.cells {
        c.socket = Some(c.id / 2);
    }
    let nic = |numa_node, count| PciPool {
        numa_node,
        count,
        tags: vec![("vendor_id".into(), "8086".into()), ("product_id".into(), "154d".into())],
    };
    h.pci_pools = vec![nic(Some(0), 2), nic(None, 1)];
    h
}

fn wants_nic(policy: Option<PciNumaPolicy>, count: u32) -> GuestTopology {
    let mut g = dedicated(&[(2, 1024)], None);
    g.pci_requests = vec![PciRequest { count, spec: vec![vec![("vendor_id".into(), "8086".into())]], numa_policy: policy }];
    g
}

fn cell_of(h: &HostTopology, g: &GuestTopology, l: &Limits) -> Option<u32> {
    fit(h, g, l).ok().map(|p| p.cells[0].host_cell)
}

#[test]
fn cells_with_devices_come_first_when_the_guest_asks_for_devices_and_last_otherwise() {
    let h = nic_host();
    assert_eq!(cell_of(&h, &wants_nic(Some(PciNumaPolicy::Required), 1), &Limits::default()), Some(0));
    assert_eq!(cell_of(&h, &dedicated(&[(2, 1024)], None), &Limits::default()), Some(1));
}

#[test]
fn numa_policies_decide_which_devices_count() {
    let mut h = nic_host();
    // Cell 0 has no free CPU left: the guest must go elsewhere.
    h.cells[0].pinned_cpus = set(&[0, 1, 2, 3]);
    let l = Limits::default();
    // required: only devices on the guest's cells.
    let r = fit(&h, &wants_nic(Some(PciNumaPolicy::Required), 1), &l).unwrap_err();
    assert!(r.summary.contains("PCI"), "{}", r.summary);
    assert!(r.reasons.iter().any(|x| x.contains("PCI")));
    // legacy (and unset): devices without NUMA affinity count too.
    assert_eq!(cell_of(&h, &wants_nic(Some(PciNumaPolicy::Legacy), 1), &l), Some(1));
    assert_eq!(cell_of(&h, &wants_nic(None, 1), &l), Some(1));
    assert_eq!(cell_of(&h, &wants_nic(Some(PciNumaPolicy::Legacy), 2), &l), None);
    // preferred: any device, local ones first.
    assert_eq!(cell_of(&h, &wants_nic(Some(PciNumaPolicy::Preferred), 3), &l), Some(1));
    assert_eq!(cell_of(&h, &wants_nic(Some(PciNumaPolicy::Preferred), 4), &l), None);
    // socket: devices on cells of the same socket; cell 1 shares socket 0 with the NICs' cell 0.
    assert_eq!(cell_of(&h, &wants_nic(Some(PciNumaPolicy::Socket), 2), &l), Some(1));
    h.cells[1].pinned_cpus = set(&[4, 5, 6, 7]);
    assert_eq!(cell_of(&h, &wants_nic(Some(PciNumaPolicy::Socket), 2), &l), None, "cells 2 and 3 are on socket 1");
}

#[test]
fn a_spec_that_matches_no_pool_never_fits() {
    let h = nic_host();
    let mut g = wants_nic(Some(PciNumaPolicy::Preferred), 1);
    g.pci_requests[0].spec = vec![vec![("vendor_id".into(), "15b3".into())]];
    assert_eq!(cell_of(&h, &g, &Limits::default()), None);
}

#[test]
fn network_affinity_pulls_the_guest_to_the_physnets_cell() {
    let mut h = four_node();
    h.cells[2].network_metadata = Some(CellNetwork { physnets: vec!["physnet1".into()], tunneled: false });
    h.cells[3].network_metadata = Some(CellNetwork { physnets: vec![], tunneled: true });
    let g = dedicated(&[(2, 1024)], None);
    let need = |physnets: &[&str], tunneled| Limits {
        network: Some(NetworkNeed { physnets: physnets.iter().map(|s| s.to_string()).collect(), tunneled }),
        ..Default::default()
    };
    assert_eq!(cell_of(&h, &g, &Limits::default()), Some(0));
    assert_eq!(cell_of(&h, &g, &need(&["physnet1"], false)), Some(2));
    assert_eq!(cell_of(&h, &g, &need(&[], true)), Some(3));
    // A physnet no cell has affinity to constrains nothing.
    assert_eq!(cell_of(&h, &g, &need(&["physnet9"], false)), Some(0));
    // Both: one guest cell cannot be on cells 2 and 3 at once; two guest cells can.
    assert_eq!(cell_of(&h, &g, &need(&["physnet1"], true)), None);
    let two = dedicated(&[(1, 512), (1, 512)], None);
    let p = fit(&h, &two, &need(&["physnet1"], true)).expect("fits on cells 2 and 3");
    let mut cells: Vec<u32> = p.cells.iter().map(|c| c.host_cell).collect();
    cells.sort_unstable();
    assert_eq!(cells, vec![2, 3]);
}
