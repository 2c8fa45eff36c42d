//! The scheduler extender's wire types (`k8s.io/kube-scheduler/extender/v1`). That package
//! declares no json tags, so the keys are the Go field names (`Pod`, `NodeNames`, `FailedNodes`);
//! the Pod and Node objects inside are ordinary API JSON. Go's decoder also takes a key in another
//! case, so the arguments are read under their lower- and camel-case spellings too; answers use
//! the Go names. A `null` where Go wrote a nil slice reads as empty.

use std::borrow::Cow;
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
    #[serde(rename = "Pod", alias = "pod")]
    pub pod: Value,
    #[serde(rename = "Nodes", alias = "nodes", default, borrow)]
    pub nodes: Option<NodeList<'a>>,
    #[serde(rename = "NodeNames", alias = "nodeNames", alias = "nodenames", default)]
    pub node_names: Option<Vec<String>>,
}

/// A `v1.NodeList` (its own JSON is camelCase, with json tags). The Node objects are kept as the
/// text they came in, borrowed from the request's body, never copied: only their names are
/// read, and those that fit are answered as sent (a thousand Node objects are a megabyte a pod).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NodeList<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, borrow, deserialize_with = "super::nullable")]
    pub items: Vec<NodeObject<'a>>,
}

/// A Node object as the text of each of its fields, in the order sent. It is read in one pass
/// and its name parsed from `metadata` alone: reading each object whole and then again for its
/// name scanned the megabyte of `status` twice, a sixth of a Nodes-form filter's CPU. It is
/// answered as the same fields, each value as sent.
#[derive(Clone, Debug, Default)]
pub struct NodeObject<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// A field name, borrowed from the body unless it holds an escape.
#[derive(Deserialize)]
struct FieldName<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct NamedMeta {
    name: String,
}

impl NodeObject<'_> {
    /// `metadata.name`; none when `metadata` is missing, given twice, or has no name.
    pub fn name(&self) -> Option<String> {
        let mut metadata = self.fields.iter().filter(|(k, _)| k == "metadata");
        let (_, raw) = metadata.next()?;
        if metadata.next().is_some() {
            return None;
        }
        serde_json::from_str::<NamedMeta>(raw.get()).ok().map(|m| m.name)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for NodeObject<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Fields<'a> {
            type Value = NodeObject<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Node object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<NodeObject<'a>, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(5));
                while let Some(FieldName(key)) = map.next_key()? {
                    fields.push((key, map.next_value()?));
                }
                Ok(NodeObject { fields })
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData))
    }
}

impl Serialize for NodeObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
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
                .map(|(i, n)| n.name().ok_or_else(|| format!("field Nodes.items[{i}].metadata.name: missing")))
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
    #[serde(rename = "PodName", alias = "podName", alias = "podname")]
    pub pod_name: String,
    #[serde(rename = "PodNamespace", alias = "podNamespace", alias = "podnamespace")]
    pub pod_namespace: String,
    #[serde(rename = "PodUID", alias = "podUID", alias = "podUid", alias = "poduid")]
    pub pod_uid: String,
    #[serde(rename = "Node", alias = "node")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_object_is_answered_as_sent_and_named_from_its_metadata() {
        let sent =
            r#"{"metadata":{"labels":{"a":"b"},"name":"node-1"},"spec":{"podCIDR":"10.0.0.0/24"},"status":{"capacity":{"cpu":"8"}}}"#;
        let node: NodeObject = serde_json::from_str(sent).expect("a Node object");
        assert_eq!(node.name().as_deref(), Some("node-1"));
        assert_eq!(serde_json::to_string(&node).expect("serializes"), sent, "the same fields, in order, each as sent");

        // A field name with an escape is read (owned) and answered as the same name.
        let escaped = r#"{"metadata":{"name":"n"},"x\u0041":1}"#;
        let node: NodeObject = serde_json::from_str(escaped).expect("a Node object");
        assert_eq!(serde_json::to_string(&node).expect("serializes"), r#"{"metadata":{"name":"n"},"xA":1}"#);

        for nameless in [r#"{"spec":{}}"#, r#"{"metadata":{}}"#, r#"{"metadata":{"name":"a"},"metadata":{"name":"b"}}"#] {
            let node: NodeObject = serde_json::from_str(nameless).expect("an object");
            assert_eq!(node.name(), None, "{nameless}");
        }
        let err = serde_json::from_str::<NodeObject>(r#""node-1""#).expect_err("not an object");
        assert!(err.to_string().contains("expected a Node object"), "{err}");
    }

    #[test]
    fn the_candidates_are_named_by_position_when_one_has_no_name() {
        let args: ExtenderArgs =
            serde_json::from_str(r#"{"Pod":{},"Nodes":{"items":[{"metadata":{"name":"a"}},{"metadata":{}}]}}"#).expect("args");
        assert_eq!(args.names().expect_err("the second has no name"), "field Nodes.items[1].metadata.name: missing");
        let args: ExtenderArgs = serde_json::from_str(r#"{"Pod":{},"Nodes":{"items":[{"metadata":{"name":"a"}}]}}"#).expect("args");
        assert_eq!(args.names().expect("named"), ["a"]);
    }

    #[test]
    fn arguments_are_read_as_gos_decoder_reads_them() {
        // Go matches keys regardless of case, and writes an empty NodeList's items as null.
        let args: ExtenderArgs = serde_json::from_str(r#"{"pod":{},"nodes":{"metadata":{},"items":null}}"#).expect("args");
        assert_eq!(args.names().expect("no candidates"), Vec::<String>::new());
        let args: ExtenderArgs = serde_json::from_str(r#"{"Pod":{},"Nodes":null,"nodeNames":["a","b"]}"#).expect("args");
        assert_eq!(args.names().expect("named"), ["a", "b"]);
        let bind: ExtenderBindingArgs =
            serde_json::from_str(r#"{"podName":"p","podNamespace":"ns","podUID":"u-1","node":"n"}"#).expect("binding args");
        assert_eq!(
            (bind.pod_name.as_str(), bind.pod_namespace.as_str(), bind.pod_uid.as_str(), bind.node.as_str()),
            ("p", "ns", "u-1", "n")
        );
        let err = serde_json::from_str::<ExtenderBindingArgs>(r#"{"PodName":"p","PodNamespace":"ns","PodUID":"u"}"#).expect_err("no Node");
        assert!(err.to_string().contains("missing field `Node`"), "{err}");
    }
}
