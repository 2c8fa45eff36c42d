//! Applying placements: what a placement means for the kernel (a `Binding`: which host CPUs each
//! vCPU and the emulator threads run on, which nodes the memory comes from), and the ways it is
//! enforced or handed on — a process started pinned (`process`), a cgroup's cpuset (`cgroup`),
//! the configuration other runtimes take (`render`), and a placement made outside numafit
//! recorded as it is (`adopt`). Every one of them reads the same `Binding`, so no two derive the
//! decision differently.

pub mod adopt;
pub mod cgroup;
pub mod process;
pub mod render;

use std::collections::BTreeSet;

use numafit_plugin::HostTopology;

use crate::cpulist;
use crate::formats::PlacementJson;

/// Applying a placement failed: `what` names the file, the call or the placement part, and the
/// cause (an errno, when the kernel refused).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ApplyError {
    pub what: String,
    pub message: String,
}

impl ApplyError {
    pub fn new(what: impl Into<String>, message: impl Into<String>) -> Self {
        ApplyError { what: what.into(), message: message.into() }
    }

    /// A system call's failure, with the errno's number and name.
    pub fn os(what: impl Into<String>, e: &std::io::Error) -> Self {
        ApplyError::new(what, errno_text(e))
    }
}

/// `Permission denied (errno 13, EACCES)`: the sentence and the errno an operator greps for.
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let name = format!("{:?}", nix::errno::Errno::from_raw(n));
            let sentence = std::io::Error::from_raw_os_error(n).to_string();
            let sentence = sentence.split(" (os error").next().unwrap_or(&sentence).to_string();
            format!("{sentence} (errno {n}, {name})")
        }
        None => e.to_string(),
    }
}

/// One guest cell as the kernel sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundCell {
    pub guest_cell: u32,
    /// The host node its memory comes from.
    pub host_node: u32,
    /// Its vCPUs, ascending.
    pub vcpus: Vec<u32>,
    /// The host CPUs its vCPUs run on.
    pub cpus: Vec<u32>,
    pub memory_mb: u64,
    pub pagesize_kb: Option<u32>,
}

/// One vCPU: the host CPUs it may run on (one when pinned, the host cell's shared CPUs when not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundVcpu {
    pub vcpu: u32,
    pub guest_cell: u32,
    pub cpus: Vec<u32>,
    pub pinned: bool,
}

/// A placement resolved against its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// False for a request without NUMA constraint: it floats on the host's shared CPUs and takes
    /// memory from any node.
    pub numa: bool,
    pub cells: Vec<BoundCell>,
    /// Every vCPU, by id.
    pub vcpus: Vec<BoundVcpu>,
    /// Where the emulator threads (and a process's other threads) run: Nova's rule
    /// (`_get_emulatorpin_cpuset`): the reserved CPUs for `isolate`; the host's shared-only CPUs
    /// for `share` when it has some; otherwise every CPU the vCPUs run on.
    pub emulator_cpus: Vec<u32>,
    /// Every host CPU of the placement: the vCPUs' and the emulator's.
    pub cpus: Vec<u32>,
    /// The host nodes memory comes from.
    pub mems: Vec<u32>,
    pub emulator_threads_policy: Option<String>,
}

fn sorted(set: impl IntoIterator<Item = u32>) -> Vec<u32> {
    set.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

impl Binding {
    /// Resolves `placement` (a verified claim's, or a file's: checked here against `host`).
    pub fn of(placement: &PlacementJson, host: &HostTopology) -> Result<Binding, ApplyError> {
        let bad = |message: String| ApplyError::new("the placement", message);
        if !placement.fits {
            return Err(bad("it says the request does not fit (fits: false): there is nothing to apply".into()));
        }
        if placement.cells.is_empty() {
            let cpus = sorted(host.cells.iter().flat_map(|c| c.cpuset.iter()));
            if cpus.is_empty() {
                return Err(bad("it has no NUMA constraint, so it floats on the host's shared CPUs, and the host has none".into()));
            }
            return Ok(Binding {
                numa: false,
                cells: Vec::new(),
                vcpus: Vec::new(),
                emulator_cpus: cpus.clone(),
                cpus,
                mems: sorted(host.cells.iter().map(|c| c.id)),
                emulator_threads_policy: placement.emulator_threads_policy.clone(),
            });
        }
        let mut cells = Vec::new();
        let mut vcpus = Vec::new();
        let mut reserved = BTreeSet::new();
        let mut seen_vcpus = BTreeSet::new();
        for (i, c) in placement.cells.iter().enumerate() {
            let at = |field: &str| format!("cells[{i}].{field}");
            let hc = host.cells.iter().find(|h| h.id == c.host_cell).ok_or_else(|| {
                bad(format!("field {}: host cell {} is not on this host (cells {})", at("host_cell"), c.host_cell, cell_ids(host)))
            })?;
            let mut cell_cpus = BTreeSet::new();
            for &v in c.cpuset.iter().chain(&c.pcpuset) {
                if !seen_vcpus.insert(v) {
                    return Err(bad(format!("vCPU {v} is placed twice (again in guest cell {})", c.guest_cell)));
                }
            }
            for &v in &c.pcpuset {
                let pcpu = c
                    .cpu_pinning
                    .get(&v.to_string())
                    .copied()
                    .ok_or_else(|| bad(format!("field {}: dedicated vCPU {v} has no pinned host CPU", at("cpu_pinning"))))?;
                if !hc.pcpuset.contains(pcpu) {
                    return Err(bad(format!(
                        "field {}: vCPU {v} is pinned to CPU {pcpu}, which host cell {} cannot pin (its pinnable CPUs: {})",
                        at("cpu_pinning"),
                        hc.id,
                        cpulist::text(&hc.pcpuset.to_vec())
                    )));
                }
                cell_cpus.insert(pcpu);
                vcpus.push(BoundVcpu { vcpu: v, guest_cell: c.guest_cell, cpus: vec![pcpu], pinned: true });
            }
            if !c.cpuset.is_empty() {
                let shared = hc.cpuset.to_vec();
                if shared.is_empty() {
                    return Err(bad(format!(
                        "field {}: shared vCPUs {} float on host cell {}'s shared CPUs, and it has none",
                        at("cpuset"),
                        cpulist::text(&c.cpuset),
                        hc.id
                    )));
                }
                for &v in &c.cpuset {
                    vcpus.push(BoundVcpu { vcpu: v, guest_cell: c.guest_cell, cpus: shared.clone(), pinned: false });
                }
                cell_cpus.extend(shared);
            }
            for &r in c.cpuset_reserved.iter().flatten() {
                if !hc.pcpuset.contains(r) {
                    return Err(bad(format!(
                        "field {}: emulator CPU {r} is not a pinnable CPU of host cell {}",
                        at("cpuset_reserved"),
                        hc.id
                    )));
                }
                reserved.insert(r);
            }
            cells.push(BoundCell {
                guest_cell: c.guest_cell,
                host_node: hc.id,
                vcpus: sorted(c.cpuset.iter().chain(&c.pcpuset).copied()),
                cpus: cell_cpus.into_iter().collect(),
                memory_mb: c.memory,
                pagesize_kb: c.pagesize_kb,
            });
        }
        vcpus.sort_by_key(|v| v.vcpu);
        let vcpu_cpus = sorted(vcpus.iter().flat_map(|v| v.cpus.iter().copied()));
        let policy = placement.emulator_threads_policy.as_deref();
        let shared_only: Vec<u32> = {
            let pinnable: BTreeSet<u32> = host.cells.iter().flat_map(|c| c.pcpuset.iter()).collect();
            sorted(host.cells.iter().flat_map(|c| c.cpuset.iter()).filter(|c| !pinnable.contains(c)))
        };
        let emulator_cpus = match policy {
            Some("isolate") => reserved.iter().copied().collect(),
            Some("share") if !shared_only.is_empty() => shared_only,
            _ => vcpu_cpus.clone(),
        };
        let cpus = sorted(vcpu_cpus.iter().chain(&emulator_cpus).copied());
        let mems = sorted(cells.iter().map(|c| c.host_node));
        Ok(Binding {
            numa: true,
            cells,
            vcpus,
            emulator_cpus,
            cpus,
            mems,
            emulator_threads_policy: placement.emulator_threads_policy.clone(),
        })
    }

    /// Guest vCPUs in all.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }
}

fn cell_ids(host: &HostTopology) -> String {
    cpulist::text(&host.cells.iter().map(|c| c.id).collect::<Vec<_>>())
}

/// A CPU or node list in the kernel's syntax, as cpusets, taskset and numactl read it: `0-3,8`.
pub fn list(ids: &[u32]) -> String {
    let t = cpulist::text(ids);
    if t == "none" {
        String::new()
    } else {
        t
    }
}

/// How a process's (or a domain's) memory is bound to the placement's nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemPolicy {
    /// Only the placement's nodes (MPOL_BIND; libvirt `strict`). Nova's, and the default.
    #[default]
    Strict,
    /// The placement's nodes first, others when they are full (MPOL_PREFERRED_MANY, or
    /// MPOL_PREFERRED on one node).
    Preferred,
    /// Pages spread round-robin over the placement's nodes (MPOL_INTERLEAVE).
    Interleave,
}

impl MemPolicy {
    pub const ALL: [MemPolicy; 3] = [MemPolicy::Strict, MemPolicy::Preferred, MemPolicy::Interleave];

    /// Its name: a value of `hw:numa_mempolicy` (the core's `MEMPOLICIES`), and libvirt's
    /// `<numatune>` mode.
    pub fn name(self) -> &'static str {
        match self {
            MemPolicy::Strict => "strict",
            MemPolicy::Preferred => "preferred",
            MemPolicy::Interleave => "interleave",
        }
    }

    pub fn parse(name: &str) -> Result<MemPolicy, String> {
        MemPolicy::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| format!("{name:?} is not a memory policy (one of {})", numafit_plugin::extra_specs::MEMPOLICIES.join(", ")))
    }

    /// The policy a REQUEST document asks for: the flavor's `hw:numa_mempolicy`, else the
    /// image's `hw_numa_mempolicy`; `None` when neither says.
    pub fn of_request(request: &serde_json::Value) -> Result<Option<MemPolicy>, String> {
        let flavor = request.pointer("/flavor/extra_specs").and_then(|s| s.get(numafit_plugin::extra_specs::MEMPOLICY_KEY));
        let image = request.pointer("/image_props/hw_numa_mempolicy");
        match flavor.or(image) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => MemPolicy::parse(s).map(Some),
            Some(other) => Err(format!("hw:numa_mempolicy {other} is not a string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MemPolicy;

    #[test]
    fn memory_policies_are_the_flavor_keys_values() {
        let names: Vec<&str> = MemPolicy::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, numafit_plugin::extra_specs::MEMPOLICIES);
        assert_eq!(
            MemPolicy::of_request(&serde_json::json!({"flavor": {"extra_specs": {"hw:numa_mempolicy": "interleave"}}})),
            Ok(Some(MemPolicy::Interleave))
        );
        assert_eq!(
            MemPolicy::of_request(&serde_json::json!({"image_props": {"hw_numa_mempolicy": "preferred"}})),
            Ok(Some(MemPolicy::Preferred))
        );
        assert_eq!(MemPolicy::of_request(&serde_json::json!({"cells": []})), Ok(None));
    }
}
