//! Kubernetes' words for numafit's facts, as pure data: pods as requests, the scheduler
//! extender's wire types, resource quantities, and a node's `NodeResourceTopology`. Nothing here
//! calls a plugin or the network; the service wires it.

pub mod extender;
pub mod nrt;
pub mod pod;
pub mod quantity;
