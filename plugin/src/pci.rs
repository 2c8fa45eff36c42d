//! PCI device and network NUMA affinity: the checks on a whole set of chosen host cells that run
//! after every guest cell has found a host cell (Nova's `PciDeviceStats.support_requests` and
//! `_numa_cells_support_network_metadata`).

use crate::fit::NetworkNeed;
use crate::request::{PciNumaPolicy, PciRequest};
use crate::topology::{HostTopology, PciPool};

fn pool_value<'a>(pool: &'a PciPool, key: &str) -> Option<&'a str> {
    pool.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A pool matches a spec when every key of one alternative equals the pool's attribute.
fn matches_spec(pool: &PciPool, spec: &[Vec<(String, String)>]) -> bool {
    spec.is_empty() || spec.iter().any(|alt| alt.iter().all(|(k, v)| pool_value(pool, k) == Some(v.as_str())))
}

/// Pools (indices) a request may draw from, given the host cells chosen for the guest.
fn eligible_pools(host: &HostTopology, pools: &[(usize, u32)], request: &PciRequest, chosen: &[u32]) -> Vec<usize> {
    let count = |sel: &[usize]| -> u64 { sel.iter().map(|&i| u64::from(pools[i].1)).sum() };
    let on = |pred: &dyn Fn(Option<u32>) -> bool| -> Vec<usize> {
        (0..pools.len()).filter(|&i| pred(host.pci_pools[pools[i].0].numa_node)).collect()
    };
    let policy = request.numa_policy.unwrap_or(PciNumaPolicy::Legacy);
    let local = on(&|n| n.is_some_and(|n| chosen.contains(&n)));
    if policy == PciNumaPolicy::Required || count(&local) >= u64::from(request.count) {
        return local;
    }
    if policy == PciNumaPolicy::Socket {
        let sockets: Vec<u32> = chosen.iter().filter_map(|id| host.cell(*id).and_then(|c| c.socket)).collect();
        return on(&|n| n.and_then(|n| host.cell(n)).and_then(|c| c.socket).is_some_and(|s| sockets.contains(&s)));
    }
    let legacy = on(&|n| n.is_none_or(|n| chosen.contains(&n)));
    if policy == PciNumaPolicy::Legacy || count(&legacy) >= u64::from(request.count) {
        return legacy;
    }
    (0..pools.len()).collect()
}

/// Whether all PCI requests can be served together with the guest on `chosen` host cells;
/// each request consumes devices, so later requests see what earlier ones left.
pub fn supports_requests(host: &HostTopology, requests: &[PciRequest], chosen: &[u32]) -> bool {
    let mut left: Vec<u32> = host.pci_pools.iter().map(|p| p.count).collect();
    for request in requests {
        // (index into host.pci_pools, devices left) of the pools matching the spec.
        let pools: Vec<(usize, u32)> =
            host.pci_pools.iter().enumerate().filter(|(_, p)| matches_spec(p, &request.spec)).map(|(i, _)| (i, left[i])).collect();
        let mut want = request.count;
        for j in eligible_pools(host, &pools, request, chosen) {
            let take = want.min(left[pools[j].0]);
            left[pools[j].0] -= take;
            want -= take;
        }
        if want > 0 {
            return false;
        }
    }
    true
}

/// Nova's network affinity rule: each required physnet (and tunneled networks) must have
/// affinity to a chosen cell, unless no cell of the host has affinity to it at all.
pub fn supports_networks(host: &HostTopology, need: &NetworkNeed, chosen: &[u32]) -> bool {
    let cell_net = |id: u32| host.cell(id).and_then(|c| c.network_metadata.as_ref());
    let mut missing: Vec<&String> = need.physnets.iter().collect();
    missing.retain(|net| !chosen.iter().any(|&id| cell_net(id).is_some_and(|m| m.physnets.contains(net))));
    if host.cells.iter().any(|c| c.network_metadata.as_ref().is_some_and(|m| missing.iter().any(|net| m.physnets.contains(net)))) {
        return false;
    }
    if need.tunneled && !chosen.iter().any(|&id| cell_net(id).is_some_and(|m| m.tunneled)) {
        return !host.cells.iter().any(|c| c.network_metadata.as_ref().is_some_and(|m| m.tunneled));
    }
    true
}
