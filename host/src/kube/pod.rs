//! A pod's NUMA request. Either its annotation `numafit.io/request` holds a REQUEST document, or
//! the request is read from its resources the way the kubelet's managers read them:
//! - the pod's effective CPU, memory and huge pages: the larger of the sum over its containers and
//!   the largest init container, plus its overhead; requests default to limits;
//! - Guaranteed QoS (every container limits CPU and memory, requests equal to limits) with a whole
//!   number of CPUs in every container is `dedicated` (pinned CPUs, as the static CPU manager
//!   gives); anything else is `shared`, with its CPU rounded up to whole vCPUs;
//! - memory in huge pages (`hugepages-2Mi`, `hugepages-1Gi`; one size per pod) is the guest's
//!   memory in pages of that size; otherwise its memory is the memory limit (Guaranteed) or
//!   request;
//! - `numafit.io/numa-nodes`, `numafit.io/cpu-thread-policy` and
//!   `numafit.io/emulator-threads-policy` become the flavor's `hw:numa_nodes`,
//!   `hw:cpu_thread_policy` and `hw:emulator_threads_policy`.
//!
//! The request is a flavor, so the policy interprets it as it does Nova's (a dedicated pod is one
//! NUMA cell unless it asks for more, as the topology manager's `single-numa-node`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::quantity::Quantity;
use crate::formats::{FlavorJson, RequestJson};

pub const REQUEST_ANNOTATION: &str = "numafit.io/request";
/// Pod annotations that become flavor extra specs.
const EXTRA_SPEC_ANNOTATIONS: &[(&str, &str)] = &[
    ("numafit.io/numa-nodes", "hw:numa_nodes"),
    ("numafit.io/cpu-thread-policy", "hw:cpu_thread_policy"),
    ("numafit.io/emulator-threads-policy", "hw:emulator_threads_policy"),
];

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The ledger instance a bound pod's claim is recorded under: `pod:UID`. The prefix tells the
/// extender's claims from the node's other ones (Nova's instances, `numafit run`'s), so releasing
/// the claims of deleted pods never touches those.
const CLAIM_PREFIX: &str = "pod:";

pub fn claim_instance(uid: &str) -> String {
    format!("{CLAIM_PREFIX}{uid}")
}

/// The pod UID a ledger instance is the claim of, if it is a pod's.
pub fn uid_of_claim(instance: &str) -> Option<&str> {
    instance.strip_prefix(CLAIM_PREFIX).filter(|uid| check_uid("", uid).is_ok())
}

/// A pod UID as the API server makes them (a UUID): 1 to 64 ASCII letters, digits and '-', so it
/// is a safe ledger key and URL path segment.
pub fn check_uid(field: &str, uid: &str) -> Result<(), String> {
    if !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(())
    } else {
        Err(format!("numafit: field {field}: {uid:?} is not a pod UID (1 to 64 letters, digits and '-')"))
    }
}

/// A `PodList` as the API server answers `GET /api/v1/pods`: only what releasing claims reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodList {
    #[serde(default)]
    pub items: Vec<ListedPod>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListedPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodStatus {
    #[serde(default)]
    pub phase: String,
}

impl PodList {
    /// The UIDs of the listed pods that still hold their resources: every phase but `Succeeded`
    /// and `Failed` (the kubelet frees a pod's CPUs and memory when its containers have ended,
    /// while a pod being deleted still runs until then).
    pub fn holding(&self) -> std::collections::HashSet<&str> {
        self.items.iter().filter(|p| !matches!(p.status.phase.as_str(), "Succeeded" | "Failed")).map(|p| p.metadata.uid.as_str()).collect()
    }
}

/// The fields of a Pod numafit reads (API JSON; every other field is ignored).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
    #[serde(default)]
    pub overhead: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub resources: Resources,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

const MIB: u128 = 1 << 20;

impl Pod {
    /// `namespace/name`, as errors name it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }

    /// The pod's request, or why it has none (naming the field and the value).
    pub fn request(&self) -> Result<RequestJson, String> {
        if let Some(text) = self.metadata.annotations.get(REQUEST_ANNOTATION) {
            return serde_json::from_str(text).map_err(|e| format!("annotation {REQUEST_ANNOTATION}: {e}"));
        }
        let mut containers = Vec::new();
        for (list, field) in [(&self.spec.containers, "spec.containers"), (&self.spec.init_containers, "spec.initContainers")] {
            for (i, c) in list.iter().enumerate() {
                containers.push((field == "spec.containers", ContainerAsk::read(c, &format!("{field}[{i}]"))?));
            }
        }
        let guaranteed = !containers.is_empty() && containers.iter().all(|(_, c)| c.guaranteed);
        let whole_cpus = containers.iter().all(|(_, c)| c.cpu_limit.is_some_and(|q| q.is_whole(1)));
        let effective = |get: &dyn Fn(&ContainerAsk) -> Quantity| {
            let sum = containers.iter().filter(|(app, _)| *app).fold(Quantity::zero(), |acc, (_, c)| acc.add(&get(c)));
            containers.iter().filter(|(app, _)| !*app).fold(sum, |acc, (_, c)| acc.max(get(c)))
        };
        let overhead = |name: &str| -> Result<Quantity, String> {
            self.spec
                .overhead
                .get(name)
                .map_or(Ok(Quantity::zero()), |v| Quantity::parse(v).map_err(|e| format!("field spec.overhead.{name}: {e}")))
        };
        let cpu = effective(&|c| if guaranteed { c.cpu_limit.unwrap_or(c.cpu) } else { c.cpu }).add(&overhead("cpu")?);
        let memory = effective(&|c| if guaranteed { c.memory_limit.unwrap_or(c.memory) } else { c.memory }).add(&overhead("memory")?);
        let mut page_sizes: Vec<&str> = containers.iter().flat_map(|(_, c)| c.hugepages.keys().map(String::as_str)).collect();
        page_sizes.sort_unstable();
        page_sizes.dedup();
        let mut extra_specs = BTreeMap::new();
        let dedicated = guaranteed && whole_cpus && !cpu.is_zero();
        extra_specs.insert("hw:cpu_policy".to_string(), serde_json::json!(if dedicated { "dedicated" } else { "shared" }));
        let memory_mb = match page_sizes.as_slice() {
            [] => memory.ceil_units(MIB),
            [size] => {
                let kb = hugepage_kb(size).ok_or_else(|| format!("resource hugepages-{size}: not a page size"))?;
                extra_specs.insert("hw:mem_page_size".into(), serde_json::json!(kb.to_string()));
                effective(&|c| c.hugepages.get(*size).copied().unwrap_or(Quantity::zero())).ceil_units(MIB)
            }
            more => {
                let names: Vec<String> = more.iter().map(|s| format!("hugepages-{s}")).collect();
                return Err(format!(
                    "resources: more than one huge page size ({}); a guest's memory is in one page size",
                    names.join(", ")
                ));
            }
        };
        for (annotation, spec) in EXTRA_SPEC_ANNOTATIONS {
            if let Some(v) = self.metadata.annotations.get(*annotation) {
                extra_specs.insert((*spec).to_string(), serde_json::json!(v));
            }
        }
        let too_big = |what: &str| format!("resources: {what} is beyond any host");
        let vcpus = u32::try_from(cpu.ceil_units(1).max(1)).map_err(|_| too_big("cpu"))?;
        let memory_mb = u64::try_from(memory_mb.max(1)).map_err(|_| too_big("memory"))?;
        Ok(RequestJson { flavor: Some(FlavorJson { vcpus, memory_mb, extra_specs, name: None, disk: None }), ..RequestJson::default() })
    }
}

/// `2Mi` -> 2048 (KiB).
fn hugepage_kb(size: &str) -> Option<u64> {
    let q = Quantity::parse(size).ok()?;
    if q.is_zero() || !q.is_whole(1024) {
        return None;
    }
    u64::try_from(q.ceil_units(1024)).ok()
}

/// One container's asks, requests defaulted to limits.
struct ContainerAsk {
    cpu: Quantity,
    cpu_limit: Option<Quantity>,
    memory: Quantity,
    memory_limit: Option<Quantity>,
    /// Page size (`2Mi`) -> bytes.
    hugepages: BTreeMap<String, Quantity>,
    guaranteed: bool,
}

impl ContainerAsk {
    fn read(c: &Container, field: &str) -> Result<ContainerAsk, String> {
        let q = |map: &BTreeMap<String, String>, which: &str, name: &str| -> Result<Option<Quantity>, String> {
            map.get(name).map(|v| Quantity::parse(v).map_err(|e| format!("field {field}.resources.{which}.{name}: {e}"))).transpose()
        };
        let r = &c.resources;
        let cpu_limit = q(&r.limits, "limits", "cpu")?;
        let memory_limit = q(&r.limits, "limits", "memory")?;
        let cpu_request = q(&r.requests, "requests", "cpu")?.or(cpu_limit);
        let memory_request = q(&r.requests, "requests", "memory")?.or(memory_limit);
        let guaranteed = cpu_limit.is_some() && memory_limit.is_some() && cpu_request == cpu_limit && memory_request == memory_limit;
        let mut hugepages = BTreeMap::new();
        for (which, map) in [("limits", &r.limits), ("requests", &r.requests)] {
            for name in map.keys() {
                if let Some(size) = name.strip_prefix("hugepages-") {
                    if let Some(v) = q(map, which, name)? {
                        hugepages.entry(size.to_string()).or_insert(v);
                    }
                }
            }
        }
        Ok(ContainerAsk {
            cpu: cpu_request.unwrap_or(Quantity::zero()),
            cpu_limit,
            memory: memory_request.unwrap_or(Quantity::zero()),
            memory_limit,
            hugepages,
            guaranteed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "annotations": annotations}, "spec": spec})).unwrap()
    }

    fn container(requests: serde_json::Value, limits: serde_json::Value) -> serde_json::Value {
        json!({"name": "c", "resources": {"requests": requests, "limits": limits}})
    }

    fn flavor(p: &Pod) -> (u32, u64, BTreeMap<String, serde_json::Value>) {
        let f = p.request().unwrap().flavor.unwrap();
        (f.vcpus, f.memory_mb, f.extra_specs)
    }

    #[test]
    fn a_pods_resources_become_a_flavor_as_the_kubelet_reads_them() {
        // Table: containers, init containers, annotations -> vcpus, memory MiB, cpu policy, page size.
        let g = |cpu: &str, mem: &str| container(json!({"cpu": cpu, "memory": mem}), json!({"cpu": cpu, "memory": mem}));
        let cases = [
            ("guaranteed, whole CPUs", json!([g("2", "1Gi"), g("1", "512Mi")]), json!([]), 3, 1536, "dedicated", None),
            (
                "limits only default the requests",
                json!([container(json!({}), json!({"cpu": "4", "memory": "4Gi"}))]),
                json!([]),
                4,
                4096,
                "dedicated",
                None,
            ),
            ("guaranteed, a fractional CPU", json!([g("1500m", "1Gi")]), json!([]), 2, 1024, "shared", None),
            (
                "burstable",
                json!([container(json!({"cpu": "1", "memory": "1Gi"}), json!({"cpu": "2", "memory": "2Gi"}))]),
                json!([]),
                1,
                1024,
                "shared",
                None,
            ),
            ("best effort", json!([container(json!({}), json!({}))]), json!([]), 1, 1, "shared", None),
            ("an init container larger than the sum", json!([g("1", "1Gi")]), json!([g("3", "256Mi")]), 3, 1024, "dedicated", None),
            (
                "huge pages are the guest's memory",
                json!([container(
                    json!({"cpu": "2", "memory": "1Gi", "hugepages-2Mi": "2Gi"}),
                    json!({"cpu": "2", "memory": "1Gi", "hugepages-2Mi": "2Gi"})
                )]),
                json!([]),
                2,
                2048,
                "dedicated",
                Some("2048"),
            ),
            (
                "1Gi pages",
                json!([container(json!({}), json!({"cpu": "8", "memory": "1Gi", "hugepages-1Gi": "4Gi"}))]),
                json!([]),
                8,
                4096,
                "dedicated",
                Some("1048576"),
            ),
        ];
        for (name, containers, init, vcpus, memory, policy, page) in cases {
            let p = pod(json!({"containers": containers, "initContainers": init}), json!({}));
            let (v, m, specs) = flavor(&p);
            assert_eq!((v, m), (vcpus, memory), "{name}");
            assert_eq!(specs["hw:cpu_policy"], json!(policy), "{name}");
            assert_eq!(specs.get("hw:mem_page_size").and_then(|v| v.as_str()), page, "{name}");
        }
        let p = pod(json!({"containers": [g("2", "1Gi")], "overhead": {"cpu": "250m", "memory": "120Mi"}}), json!({}));
        assert_eq!((flavor(&p).0, flavor(&p).1), (3, 1144), "overhead counts");
        let p =
            pod(json!({"containers": [g("2", "1Gi")]}), json!({"numafit.io/numa-nodes": "2", "numafit.io/cpu-thread-policy": "isolate"}));
        let specs = flavor(&p).2;
        assert_eq!((specs["hw:numa_nodes"].as_str(), specs["hw:cpu_thread_policy"].as_str()), (Some("2"), Some("isolate")));
        let p =
            pod(json!({"containers": [g("2", "1Gi")]}), json!({"numafit.io/request": "{\"cells\": [{\"pcpuset\": [0], \"memory\": 64}]}"}));
        assert!(p.request().unwrap().cells.is_some(), "the annotation's REQUEST document wins");
    }

    #[test]
    fn a_pod_that_states_no_request_is_refused_naming_the_field() {
        let bad = [
            (json!({"containers": [container(json!({"cpu": "two"}), json!({}))]}), json!({}), "spec.containers[0].resources.requests.cpu"),
            (
                json!({"containers": [container(json!({}), json!({"memory": "-1Gi"}))]}),
                json!({}),
                "spec.containers[0].resources.limits.memory",
            ),
            (
                json!({"containers": [], "initContainers": [container(json!({"cpu": "1x"}), json!({}))]}),
                json!({}),
                "spec.initContainers[0]",
            ),
            (
                json!({"containers": [container(json!({"hugepages-2Mi": "1Gi", "hugepages-1Gi": "1Gi"}), json!({}))]}),
                json!({}),
                "more than one huge page size",
            ),
            (json!({"containers": [container(json!({"hugepages-3x": "1Gi"}), json!({}))]}), json!({}), "hugepages-3x"),
            (json!({"containers": []}), json!({"numafit.io/request": "{"}), "annotation numafit.io/request"),
            (json!({"containers": [], "overhead": {"cpu": "lots"}}), json!({}), "spec.overhead.cpu"),
        ];
        for (spec, annotations, field) in bad {
            let e = pod(spec, annotations).request().unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn pod_claims_are_named_apart_and_listed_pods_hold_until_they_end() {
        let uid = "3f1c7c2e-8d5b-4a6e-9f0a-1b2c3d4e5f60";
        assert_eq!(uid_of_claim(&claim_instance(uid)), Some(uid));
        for other in ["3f1c7c2e-8d5b-4a6e-9f0a-1b2c3d4e5f60", "vm-1", "pod:", "pod:a/b", "pod:x?y"] {
            assert_eq!(uid_of_claim(other), None, "{other}");
        }
        assert!(check_uid("PodUID", "../x").unwrap_err().contains("field PodUID"));
        let list: PodList = serde_json::from_value(json!({"kind": "PodList", "items": [
            {"metadata": {"uid": "a"}, "status": {"phase": "Running"}},
            {"metadata": {"uid": "b"}, "status": {"phase": "Succeeded"}},
            {"metadata": {"uid": "c"}, "status": {"phase": "Failed"}},
            {"metadata": {"uid": "d"}, "status": {"phase": "Pending"}},
            {"metadata": {"uid": "e"}},
        ]}))
        .unwrap();
        let mut holding: Vec<&str> = list.holding().into_iter().collect();
        holding.sort_unstable();
        assert_eq!(holding, ["a", "d", "e"]);
    }
}
