//! Kubernetes' words for numafit's facts, as pure data: pods as requests, the scheduler
//! extender's wire types, resource quantities, and a node's `NodeResourceTopology`. Nothing here
//! calls a plugin or the network; the service wires it.

pub mod extender;
pub mod nrt;
pub mod pod;
pub mod quantity;

/// Go writes a nil slice, map or pointer as `null` where the field has no `omitempty` (an empty
/// `NodeList`'s `items`, a pod's `containers`): read as empty, as Go's own decoder does.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
