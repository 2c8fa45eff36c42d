//! A pod's NUMA request. Either its annotation `numafit.io/request` holds a REQUEST document, or
//! the request is read from its resources the way the kubelet's managers read them:
//! - the pod's effective CPU, memory and huge pages as the scheduler counts them (KEP-753): app
//!   containers and sidecars (init containers with `restartPolicy: Always`) run together, each
//!   other init container runs beside the sidecars started before it, and the pod needs the
//!   larger, plus its overhead; requests default to limits. Pod-level `spec.resources` (CPU and
//!   memory) take the place of the containers' sum when set (KEP-2837);
//! - Guaranteed QoS (every container limits CPU and memory, requests equal to limits) with a whole
//!   number of CPUs in every container is `dedicated` (pinned CPUs, as the static CPU manager
//!   gives); anything else is `shared`, with its CPU rounded up to whole vCPUs. A pod with
//!   pod-level resources is `shared`: the static CPU manager gives such pods no exclusive CPUs;
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

use super::nullable;
use super::quantity::{Quantity, QuantityText};
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
    #[serde(default, deserialize_with = "nullable")]
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
    #[serde(default, deserialize_with = "nullable")]
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
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<Container>,
    #[serde(default, deserialize_with = "nullable")]
    pub init_containers: Vec<Container>,
    #[serde(default, deserialize_with = "nullable")]
    pub overhead: BTreeMap<String, QuantityText>,
    /// Pod-level resources (KEP-2837).
    #[serde(default, deserialize_with = "nullable")]
    pub resources: Resources,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub resources: Resources,
    /// `Always` on an init container makes it a sidecar.
    #[serde(default, deserialize_with = "nullable")]
    pub restart_policy: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Resources {
    #[serde(default, deserialize_with = "nullable")]
    pub requests: BTreeMap<String, QuantityText>,
    #[serde(default, deserialize_with = "nullable")]
    pub limits: BTreeMap<String, QuantityText>,
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
        let mut asks = Vec::new();
        for (i, c) in self.spec.containers.iter().enumerate() {
            asks.push(ContainerAsk::read(c, Role::App, &format!("spec.containers[{i}]"))?);
        }
        for (i, c) in self.spec.init_containers.iter().enumerate() {
            let role = if c.restart_policy == "Always" { Role::Sidecar } else { Role::Init };
            asks.push(ContainerAsk::read(c, role, &format!("spec.initContainers[{i}]"))?);
        }
        let pod_level = PodLevel::read(&self.spec.resources, &asks)?;
        let guaranteed = !asks.is_empty() && asks.iter().all(|c| c.guaranteed);
        let whole_cpus = asks.iter().all(|c| c.cpu_limit.is_some_and(|q| q.is_whole(1)));
        let overhead = |name: &str| -> Result<Quantity, String> {
            Ok(quantity_at(&self.spec.overhead, "spec.overhead", name)?.unwrap_or(Quantity::zero()))
        };
        let cpu = pod_level.cpu.unwrap_or_else(|| effective(&asks, |c| c.cpu.unwrap_or(Quantity::zero()))).add(&overhead("cpu")?);
        let memory =
            pod_level.memory.unwrap_or_else(|| effective(&asks, |c| c.memory.unwrap_or(Quantity::zero()))).add(&overhead("memory")?);
        let mut page_sizes: Vec<&str> = asks.iter().flat_map(|c| c.hugepages.keys().map(String::as_str)).collect();
        page_sizes.sort_unstable();
        page_sizes.dedup();
        let mut extra_specs = BTreeMap::new();
        // The static CPU manager gives no exclusive CPUs to a pod with pod-level resources.
        let dedicated = !pod_level.set && guaranteed && whole_cpus && !cpu.is_zero();
        extra_specs.insert("hw:cpu_policy".to_string(), serde_json::json!(if dedicated { "dedicated" } else { "shared" }));
        let memory_mb = match page_sizes.as_slice() {
            [] => memory.ceil_units(MIB),
            [size] => {
                let kb = hugepage_kb(size).ok_or_else(|| format!("resource hugepages-{size}: not a page size"))?;
                extra_specs.insert("hw:mem_page_size".into(), serde_json::json!(kb.to_string()));
                effective(&asks, |c| c.hugepages.get(*size).copied().unwrap_or(Quantity::zero())).ceil_units(MIB)
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

/// A pod's need of one resource as the scheduler counts it (`PodRequests`, KEP-753): app
/// containers and sidecars run together; each plain init container runs alone beside the sidecars
/// started before it; the pod needs the larger. `asks` lists app containers, then init containers
/// in their order.
fn effective(asks: &[ContainerAsk], need: impl Fn(&ContainerAsk) -> Quantity) -> Quantity {
    let (mut running, mut sidecars, mut init_peak) = (Quantity::zero(), Quantity::zero(), Quantity::zero());
    for c in asks {
        let n = need(c);
        match c.role {
            Role::App => running = running.add(&n),
            Role::Sidecar => {
                running = running.add(&n);
                sidecars = sidecars.add(&n);
                init_peak = init_peak.max(sidecars);
            }
            Role::Init => init_peak = init_peak.max(n.add(&sidecars)),
        }
    }
    running.max(init_peak)
}

/// Pod-level CPU and memory requests (KEP-2837), where they replace the containers' sum: the
/// pod's request, else its limit when no container requests that resource (the API server's
/// defaulting, for objects that did not pass through it).
struct PodLevel {
    cpu: Option<Quantity>,
    memory: Option<Quantity>,
    /// Whether the pod states CPU or memory at pod level at all.
    set: bool,
}

impl PodLevel {
    fn read(r: &Resources, asks: &[ContainerAsk]) -> Result<PodLevel, String> {
        let one = |name: &str, containers_ask: bool| -> Result<Option<Quantity>, String> {
            let limit = quantity_at(&r.limits, "spec.resources.limits", name)?;
            Ok(quantity_at(&r.requests, "spec.resources.requests", name)?.or(if containers_ask { None } else { limit }))
        };
        let set = ["cpu", "memory"].iter().any(|n| r.requests.contains_key(*n) || r.limits.contains_key(*n));
        Ok(PodLevel {
            cpu: one("cpu", asks.iter().any(|c| c.cpu.is_some()))?,
            memory: one("memory", asks.iter().any(|c| c.memory.is_some()))?,
            set,
        })
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

/// `map[name]` as a quantity; the error names the field `{at}.{name}` and the value.
fn quantity_at(map: &BTreeMap<String, QuantityText>, at: &str, name: &str) -> Result<Option<Quantity>, String> {
    map.get(name).map(|v| v.parse().map_err(|e| format!("field {at}.{name}: {e}"))).transpose()
}

/// Where a container runs in the pod's life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    App,
    /// An init container with `restartPolicy: Always`: it starts before the later init
    /// containers and runs on beside the app containers.
    Sidecar,
    /// An init container that runs to completion before the next starts.
    Init,
}

/// One container's asks, requests defaulted to limits.
struct ContainerAsk {
    role: Role,
    /// Requests (defaulted to the limit); none when the container states neither.
    cpu: Option<Quantity>,
    cpu_limit: Option<Quantity>,
    memory: Option<Quantity>,
    /// Page size (`2Mi`) -> bytes.
    hugepages: BTreeMap<String, Quantity>,
    guaranteed: bool,
}

impl ContainerAsk {
    fn read(c: &Container, role: Role, field: &str) -> Result<ContainerAsk, String> {
        let q =
            |map: &BTreeMap<String, QuantityText>, which: &str, name: &str| quantity_at(map, &format!("{field}.resources.{which}"), name);
        let r = &c.resources;
        let cpu_limit = q(&r.limits, "limits", "cpu")?;
        let memory_limit = q(&r.limits, "limits", "memory")?;
        let cpu = q(&r.requests, "requests", "cpu")?.or(cpu_limit);
        let memory = q(&r.requests, "requests", "memory")?.or(memory_limit);
        let guaranteed = cpu_limit.is_some() && memory_limit.is_some() && cpu == cpu_limit && memory == memory_limit;
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
        Ok(ContainerAsk { role, cpu, cpu_limit, memory, hugepages, guaranteed })
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
    fn sidecars_and_pod_level_resources_count_as_the_scheduler_counts_them() {
        let g = |cpu: &str, mem: &str| container(json!({"cpu": cpu, "memory": mem}), json!({"cpu": cpu, "memory": mem}));
        let sidecar = |cpu: &str, mem: &str| {
            let mut c = g(cpu, mem);
            c["restartPolicy"] = json!("Always");
            c
        };
        // Table: spec -> vcpus, memory MiB, cpu policy.
        let cases = [
            // A sidecar runs beside the app: 2 + 1.
            (
                "a sidecar adds to the app",
                json!({"containers": [g("2", "1Gi")], "initContainers": [sidecar("1", "256Mi")]}),
                3,
                1280,
                "dedicated",
            ),
            // The init container after the sidecar runs beside it: max(2 + 1, 3 + 1) = 4.
            (
                "an init container after a sidecar runs beside it",
                json!({"containers": [g("2", "1Gi")], "initContainers": [sidecar("1", "256Mi"), g("3", "512Mi")]}),
                4,
                1280,
                "dedicated",
            ),
            // The init container before the sidecar runs alone: max(2 + 1, 3) = 3.
            (
                "an init container before a sidecar runs alone",
                json!({"containers": [g("2", "1Gi")], "initContainers": [g("3", "512Mi"), sidecar("1", "256Mi")]}),
                3,
                1280,
                "dedicated",
            ),
            // Pod-level requests replace the containers' sum, and the static CPU manager pins none.
            (
                "pod-level resources",
                json!({"containers": [container(json!({}), json!({})), container(json!({}), json!({}))],
                       "resources": {"requests": {"cpu": "4", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "2Gi"}}}),
                4,
                2048,
                "shared",
            ),
            (
                "a pod-level limit stands for the request no container states",
                json!({"containers": [container(json!({}), json!({}))], "resources": {"limits": {"cpu": "3", "memory": "1Gi"}}}),
                3,
                1024,
                "shared",
            ),
            (
                "quantities sent as JSON numbers",
                json!({"containers": [container(json!({"cpu": 2, "memory": 1073741824u64}), json!({"cpu": 2, "memory": 1073741824u64}))]}),
                2,
                1024,
                "dedicated",
            ),
            (
                "Go's nulls for nil slices and maps",
                json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": null}}],
                       "initContainers": null, "overhead": null}),
                1,
                64,
                "shared",
            ),
        ];
        for (name, spec, vcpus, memory, policy) in cases {
            let p = pod(spec, json!({}));
            let (v, m, specs) = flavor(&p);
            assert_eq!((v, m), (vcpus, memory), "{name}");
            assert_eq!(specs["hw:cpu_policy"], json!(policy), "{name}");
        }
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "annotations": null}, "spec": {"containers": null}})).unwrap();
        assert_eq!(flavor(&p).0, 1, "a pod of null lists is best effort");
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
            (json!({"containers": [], "resources": {"requests": {"memory": "1.5.0Gi"}}}), json!({}), "spec.resources.requests.memory"),
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
