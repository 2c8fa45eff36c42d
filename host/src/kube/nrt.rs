//! The node's truth as Kubernetes' topology-aware scheduling reads it: a `NodeResourceTopology`
//! (`topology.node.k8s.io/v1alpha2`), one zone per NUMA node, so the scheduler-plugins
//! `NodeResourceTopologyMatch` plugin can use numafit's accounting without the extender.
//!
//! Per zone: `cpu` (capacity: every CPU of the cell; allocatable: those guests may use, shared or
//! pinned; available: allocatable less the pinned ones, as the resource-topology exporter counts
//! exclusive CPUs: floating vCPUs share and take none), `memory` (the cell's small pages:
//! capacity all of them, allocatable less those reserved for the host, available less those
//! used; without page pools the cell's memory), `hugepages-<size>` the same for each huge page
//! pool; costs are the SLIT row (10 when the host states none).

use serde::Serialize;

use super::quantity::bytes;
use numafit_plugin::{HostCell, HostTopology, PagePool};

pub const API_VERSION: &str = "topology.node.k8s.io/v1alpha2";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeResourceTopology {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    /// Deprecated in v1alpha2 in favour of the two attributes, but still what older
    /// `NodeResourceTopologyMatch` versions (and tools filtering nodes by policy) read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topology_policies: Vec<String>,
    pub attributes: Vec<Attribute>,
    pub zones: Vec<Zone>,
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    pub name: String,
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct Attribute {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub struct Zone {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub costs: Vec<Cost>,
    pub resources: Vec<ResourceInfo>,
}

#[derive(Debug, Serialize)]
pub struct Cost {
    pub name: String,
    pub value: i64,
}

#[derive(Debug, Serialize)]
pub struct ResourceInfo {
    pub name: String,
    pub capacity: String,
    pub allocatable: String,
    pub available: String,
}

/// What the node says about itself beyond its zones.
pub struct NodeFacts<'a> {
    pub node: &'a str,
    /// The kubelet's topology manager policy and scope, as the operator configured them.
    pub topology_manager_policy: &'a str,
    pub topology_manager_scope: &'a str,
    pub generation: i64,
    pub policy: &'a str,
}

/// The v1alpha1 policy name of a topology manager policy and scope (`single-numa-node` and
/// `pod`: `SingleNUMANodePodLevel`); none for a pair the API has no name for.
fn topology_policy(policy: &str, scope: &str) -> Option<String> {
    let level = match scope {
        "container" => "ContainerLevel",
        "pod" => "PodLevel",
        _ => return None,
    };
    let name = match policy {
        "none" => return Some("None".into()),
        "single-numa-node" => "SingleNUMANode",
        "restricted" => "Restricted",
        "best-effort" => "BestEffort",
        _ => return None,
    };
    Some(format!("{name}{level}"))
}

fn zone_name(cell: &HostCell) -> String {
    format!("node-{}", cell.id)
}

/// `2048` KiB -> `hugepages-2Mi`.
pub fn hugepages_resource(size_kb: u32) -> String {
    format!("hugepages-{}", bytes(u64::from(size_kb) << 10))
}

fn pages(name: String, p: &PagePool) -> ResourceInfo {
    let b = |n: u64| bytes(n.saturating_mul(u64::from(p.size_kb) << 10));
    ResourceInfo { name, capacity: b(p.total), allocatable: b(p.total.saturating_sub(p.reserved)), available: b(p.free()) }
}

/// The zones of `host` (the derived host: its usage is the ledger's).
pub fn render(host: &HostTopology, facts: &NodeFacts) -> NodeResourceTopology {
    let n = host.cells.len();
    let zones = host
        .cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let costs = host
                .cells
                .iter()
                .enumerate()
                .map(|(j, other)| {
                    let stated = host.distances.get(i * n + j).copied();
                    let value = stated.unwrap_or(if i == j { 10 } else { 20 });
                    Cost { name: zone_name(other), value: i64::from(value) }
                })
                .collect();
            let usable = cell.cpuset.union(&cell.pcpuset);
            let all = usable.union(&cell.host_cpus);
            let available = usable.difference(&cell.pinned_cpus);
            let mut resources = vec![ResourceInfo {
                name: "cpu".into(),
                capacity: all.len().to_string(),
                allocatable: usable.len().to_string(),
                available: available.len().to_string(),
            }];
            match cell.smallest_pages() {
                Some(small) => resources.push(pages("memory".into(), small)),
                None => {
                    let mib = |m: u64| bytes(m << 20);
                    resources.push(ResourceInfo {
                        name: "memory".into(),
                        capacity: mib(cell.memory),
                        allocatable: mib(cell.memory),
                        available: mib(cell.avail_memory()),
                    });
                }
            }
            let smallest = cell.smallest_pages().map(|p| p.size_kb);
            for p in cell.mempages.iter().filter(|p| Some(p.size_kb) != smallest) {
                resources.push(pages(hugepages_resource(p.size_kb), p));
            }
            Zone { name: zone_name(cell), kind: "Node", costs, resources }
        })
        .collect();
    let attr = |name: &str, value: &str| Attribute { name: name.into(), value: value.into() };
    NodeResourceTopology {
        api_version: API_VERSION,
        kind: "NodeResourceTopology",
        metadata: Metadata {
            name: facts.node.to_string(),
            annotations: [
                ("numafit.io/generation".to_string(), facts.generation.to_string()),
                ("numafit.io/policy".to_string(), facts.policy.to_string()),
            ]
            .into(),
        },
        topology_policies: topology_policy(facts.topology_manager_policy, facts.topology_manager_scope).into_iter().collect(),
        attributes: vec![
            attr("topologyManagerPolicy", facts.topology_manager_policy),
            attr("topologyManagerScope", facts.topology_manager_scope),
        ],
        zones,
    }
}

#[cfg(test)]
mod tests {
    use super::topology_policy;

    #[test]
    fn the_deprecated_policy_name_is_the_pair_of_attributes() {
        let cases = [
            ("single-numa-node", "container", Some("SingleNUMANodeContainerLevel")),
            ("single-numa-node", "pod", Some("SingleNUMANodePodLevel")),
            ("restricted", "container", Some("RestrictedContainerLevel")),
            ("best-effort", "pod", Some("BestEffortPodLevel")),
            ("none", "container", Some("None")),
            ("none", "pod", Some("None")),
            ("static", "container", None),
            ("single-numa-node", "node", None),
        ];
        for (policy, scope, want) in cases {
            assert_eq!(topology_policy(policy, scope).as_deref(), want, "{policy} {scope}");
        }
    }
}
