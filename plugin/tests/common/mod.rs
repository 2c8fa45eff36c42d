//! Named host topologies and request builders shared by the plugin's tests.
#![allow(dead_code)]

use numafit_plugin::{CpuPolicy, CpuSet, GuestCell, GuestTopology, HostCell, HostTopology, PagePool, ThreadPolicy};

pub fn set(cpus: &[u32]) -> CpuSet {
    cpus.iter().copied().collect()
}

/// A host cell whose `cores` are sibling groups; every CPU pinnable (dedicated set), none shared.
pub fn cell(id: u32, cores: &[&[u32]], memory: u64) -> HostCell {
    let cpus: CpuSet = cores.iter().flat_map(|c| c.iter().copied()).collect();
    HostCell {
        id,
        cpuset: CpuSet::new(),
        pcpuset: cpus,
        memory,
        cpu_usage: 0,
        memory_usage: 0,
        pinned_cpus: CpuSet::new(),
        host_cpus: CpuSet::new(),
        siblings: cores.iter().map(|c| set(c)).collect(),
        cache_groups: vec![],
        mempages: vec![
            PagePool { size_kb: 4, total: memory * 256, used: 0, reserved: 0 },
            PagePool { size_kb: 2048, total: 1024, used: 0, reserved: 0 },
        ],
        socket: Some(id),
        network_metadata: None,
    }
}

pub fn host(cells: Vec<HostCell>) -> HostTopology {
    HostTopology { cells, distances: vec![], pci_pools: vec![] }.normalized()
}

/// Dual-socket hyperthreaded box: 2 cells of 4 cores x 2 threads, siblings {n, n+8}.
pub fn dual_socket_ht() -> HostTopology {
    host(vec![cell(0, &[&[0, 8], &[1, 9], &[2, 10], &[3, 11]], 16384), cell(1, &[&[4, 12], &[5, 13], &[6, 14], &[7, 15]], 16384)])
}

/// 4-node host (EPYC-like NPS4 without SMT): 4 cells of 4 single-thread cores.
pub fn four_node() -> HostTopology {
    host((0..4).map(|n| cell(n, &[&[n * 4], &[n * 4 + 1], &[n * 4 + 2], &[n * 4 + 3]], 8192)).collect())
}

/// The dual-socket box with work on it: cell 0 has core {0,8} pinned and 8 GiB used.
pub fn used_dual_socket() -> HostTopology {
    let mut h = dual_socket_ht();
    h.cells[0].pinned_cpus = set(&[0, 8]);
    h.cells[0].memory_usage = 8192;
    h.cells[0].mempages[0].used = 8192 * 256;
    h
}

/// Every CPU both shared and pinnable (Nova's legacy `vcpu_pin_set` mode).
pub fn legacy(mut h: HostTopology) -> HostTopology {
    for c in &mut h.cells {
        c.cpuset = c.pcpuset.clone();
    }
    h
}

/// A pinned guest: one cell per (vCPU count, MiB), vCPUs numbered in order.
pub fn dedicated(cells: &[(u32, u64)], thread: Option<ThreadPolicy>) -> GuestTopology {
    let mut next = 0;
    let cells = cells
        .iter()
        .map(|&(n, memory)| {
            let c = GuestCell { cpuset: CpuSet::new(), pcpuset: (next..next + n).collect(), memory, pagesize: None };
            next += n;
            c
        })
        .collect();
    GuestTopology { cells, cpu_policy: Some(CpuPolicy::Dedicated), thread_policy: thread, ..Default::default() }
}

/// A floating guest: one cell per (vCPU count, MiB).
pub fn shared(cells: &[(u32, u64)]) -> GuestTopology {
    let mut g = dedicated(cells, None);
    for c in &mut g.cells {
        std::mem::swap(&mut c.cpuset, &mut c.pcpuset);
    }
    g.cpu_policy = Some(CpuPolicy::Shared);
    g
}
