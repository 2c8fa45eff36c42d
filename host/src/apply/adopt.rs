//! A placement made outside numafit (a running container's `cpuset_cpus`, `cpuset_mems` and
//! memory limit) stated as the claim numafit would have made, so the ledger accounts for what the
//! machine really runs. One guest cell per memory node; a CPU counts in its own node's cell, so
//! every CPU's node must be one the memory comes from.

use std::collections::BTreeMap;

use numafit_plugin::HostTopology;

use super::ApplyError;
use crate::cpulist;
use crate::formats::{PlacedCellJson, PlacementJson};

/// What runs outside numafit.
#[derive(Clone, Debug)]
pub struct Adoption {
    pub cpus: Vec<u32>,
    pub mems: Vec<u32>,
    pub memory_mb: u64,
    /// Each CPU is the instance's alone (pinned), or shared with others (floating).
    pub dedicated: bool,
}

/// The policy name adopted claims are recorded under: no policy decided them.
pub const ADOPTED: &str = "adopted";

/// A memory size as container runtimes write it, in MiB (rounded up): `512M`, `2g`, `1Gi`,
/// `1073741824` (bytes); the units are binary, as docker's and Kubernetes' `Mi`/`Gi` are.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size (a number with an optional unit: 512M, 2G, 1Gi)"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        _ => return Err(format!("{text:?}: unit {unit:?} is not one of b, k, m, g, t (binary, as docker reads them; Ki, Mi, Gi, Ti too)")),
    };
    let bytes = n.checked_mul(1u64 << shift).ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("{text:?}: an instance has some memory"));
    }
    Ok(bytes.div_ceil(1 << 20))
}

/// The placement (and the REQUEST document it answers) that states `a` on `host`.
pub fn placement(a: &Adoption, host: &HostTopology) -> Result<(PlacementJson, serde_json::Value), ApplyError> {
    let bad = |flag: &str, message: String| ApplyError::new(flag, message);
    if a.cpus.is_empty() {
        return Err(bad("--cpus", "an instance runs on at least one CPU".into()));
    }
    if a.mems.is_empty() {
        return Err(bad("--mems", "an instance's memory comes from at least one node".into()));
    }
    let mut by_node: BTreeMap<u32, Vec<u32>> = a.mems.iter().map(|&n| (n, Vec::new())).collect();
    for &n in &a.mems {
        if !host.cells.iter().any(|c| c.id == n) {
            return Err(bad("--mems", format!("node {n} is not on this host (nodes {})", ids(host))));
        }
    }
    for &cpu in &a.cpus {
        let cell = host.cells.iter().find(|c| c.cpuset.contains(cpu) || c.pcpuset.contains(cpu) || c.host_cpus.contains(cpu));
        let Some(cell) = cell else {
            return Err(bad("--cpus", format!("CPU {cpu} is not a CPU this host gives instances")));
        };
        let (usable, kind) = if a.dedicated { (&cell.pcpuset, "pinnable") } else { (&cell.cpuset, "shared") };
        if !usable.contains(cpu) {
            return Err(bad(
                "--cpus",
                format!("CPU {cpu} is not one of node {}'s {kind} CPUs ({})", cell.id, cpulist::text(&usable.to_vec())),
            ));
        }
        let Some(cpus) = by_node.get_mut(&cell.id) else {
            return Err(bad(
                "--cpus",
                format!(
                    "CPU {cpu} is on node {}, which --mems {} leaves out: numafit accounts each node's CPUs with memory from that node",
                    cell.id,
                    cpulist::text(&a.mems)
                ),
            ));
        };
        cpus.push(cpu);
    }
    let nodes = by_node.len() as u64;
    if a.memory_mb < nodes {
        return Err(bad("--memory", format!("{} MiB cannot be split over {nodes} nodes", a.memory_mb)));
    }
    let mut cells = Vec::new();
    let mut request_cells = Vec::new();
    let mut next_vcpu = 0u32;
    for (i, (node, mut cpus)) in by_node.into_iter().enumerate() {
        cpus.sort_unstable();
        cpus.dedup();
        // Memory split evenly, the remainder on the first cells: the cells add up to the size.
        let memory = a.memory_mb / nodes + u64::from((i as u64) < a.memory_mb % nodes);
        let vcpus: Vec<u32> = (next_vcpu..next_vcpu + cpus.len() as u32).collect();
        next_vcpu += cpus.len() as u32;
        let (shared, dedicated) = if a.dedicated { (Vec::new(), vcpus.clone()) } else { (vcpus.clone(), Vec::new()) };
        let pinning = if a.dedicated { vcpus.iter().zip(&cpus).map(|(v, c)| (v.to_string(), *c)).collect() } else { BTreeMap::new() };
        request_cells.push(serde_json::json!({"memory": memory, "cpuset": shared, "pcpuset": dedicated}));
        cells.push(PlacedCellJson {
            guest_cell: i as u32,
            host_cell: node,
            cpuset: shared,
            pcpuset: dedicated,
            memory,
            pagesize_kb: None,
            cpu_pinning: pinning,
            cpuset_reserved: None,
        });
    }
    let cpu_policy = if a.dedicated { "dedicated" } else { "shared" };
    let placement = PlacementJson {
        fits: true,
        policy: ADOPTED.into(),
        cpu_policy: Some(cpu_policy.into()),
        cpu_thread_policy: None,
        emulator_threads_policy: None,
        numa_constrained: true,
        cells,
    };
    Ok((placement, serde_json::json!({"cells": request_cells, "cpu_policy": cpu_policy})))
}

fn ids(host: &HostTopology) -> String {
    cpulist::text(&host.cells.iter().map(|c| c.id).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::parse_memory;

    #[test]
    fn memory_sizes_as_container_runtimes_write_them() {
        assert_eq!(parse_memory("512M"), Ok(512));
        assert_eq!(parse_memory("512m"), Ok(512));
        assert_eq!(parse_memory("2g"), Ok(2048));
        assert_eq!(parse_memory("1Gi"), Ok(1024));
        assert_eq!(parse_memory("1073741824"), Ok(1024));
        assert_eq!(parse_memory("1000000"), Ok(1));
        assert!(parse_memory("0").is_err());
        assert!(parse_memory("12 parsecs").unwrap_err().contains("unit"));
        assert!(parse_memory("").is_err());
    }
}
