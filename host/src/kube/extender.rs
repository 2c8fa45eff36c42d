//! The scheduler extender's wire types (`k8s.io/kube-scheduler/extender/v1`). That package
//! declares no json tags, so the keys are the Go field names (`Pod`, `NodeNames`, `FailedNodes`);
//! the Pod and Node objects inside are ordinary API JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// The largest score an extender may give (`MaxExtenderPriority`).
pub const MAX_PRIORITY: i64 = 10;

/// `ExtenderArgs`: the pod, and the candidate nodes as full objects (`Nodes`, when the extender
/// is not `nodeCacheCapable`) or by name (`NodeNames`).
#[derive(Debug, Deserialize)]
pub struct ExtenderArgs<'a> {
    #[serde(rename = "Pod")]
    pub pod: Value,
    #[serde(rename = "Nodes", default, borrow)]
    pub nodes: Option<NodeList<'a>>,
    #[serde(rename = "NodeNames", default)]
    pub node_names: Option<Vec<String>>,
}

/// A `v1.NodeList` (its own JSON is camelCase, with json tags). The Node objects are kept as the
/// text they came in, borrowed from the request's body, never copied: only their names are
/// read, and those that fit are answered verbatim (a thousand Node objects are a megabyte a pod).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NodeList<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, borrow)]
    pub items: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Named {
    metadata: NamedMeta,
}

#[derive(Deserialize)]
struct NamedMeta {
    name: String,
}

/// The name of a Node object.
pub fn node_name(node: &RawValue) -> Option<String> {
    serde_json::from_str::<Named>(node.get()).ok().map(|n| n.metadata.name)
}

impl ExtenderArgs<'_> {
    /// The candidates' names, whichever way they came; `Nodes` wins when both are given, as the
    /// scheduler sends one or the other.
    pub fn names(&self) -> Result<Vec<String>, String> {
        match (&self.nodes, &self.node_names) {
            (Some(list), _) => list
                .items
                .iter()
                .enumerate()
                .map(|(i, n)| node_name(n).ok_or_else(|| format!("field Nodes.items[{i}].metadata.name: missing")))
                .collect(),
            (None, Some(names)) => Ok(names.clone()),
            (None, None) => Err("neither Nodes nor NodeNames is given".into()),
        }
    }
}

/// `ExtenderFilterResult`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ExtenderFilterResult<'a> {
    #[serde(rename = "Nodes", borrow)]
    pub nodes: Option<NodeList<'a>>,
    #[serde(rename = "NodeNames")]
    pub node_names: Option<Vec<String>>,
    /// Nodes that do not fit now (preempting pods could make room).
    #[serde(rename = "FailedNodes")]
    pub failed_nodes: BTreeMap<String, String>,
    /// Nodes that could not fit the pod even empty, or that numafit cannot judge.
    #[serde(rename = "FailedAndUnresolvableNodes")]
    pub failed_and_unresolvable_nodes: BTreeMap<String, String>,
    #[serde(rename = "Error")]
    pub error: String,
}

/// One entry of a `HostPriorityList`.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct HostPriority {
    #[serde(rename = "Host")]
    pub host: String,
    #[serde(rename = "Score")]
    pub score: i64,
}

/// `ExtenderBindingArgs`.
#[derive(Debug, Deserialize, Serialize)]
pub struct ExtenderBindingArgs {
    #[serde(rename = "PodName")]
    pub pod_name: String,
    #[serde(rename = "PodNamespace")]
    pub pod_namespace: String,
    #[serde(rename = "PodUID")]
    pub pod_uid: String,
    #[serde(rename = "Node")]
    pub node: String,
}

/// `ExtenderBindingResult`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ExtenderBindingResult {
    #[serde(rename = "Error")]
    pub error: String,
}

/// The `v1.Binding` the API server is sent for a bind.
pub fn binding(args: &ExtenderBindingArgs) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": args.pod_name, "namespace": args.pod_namespace, "uid": args.pod_uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": args.node},
    })
}
