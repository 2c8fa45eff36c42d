//! Contract 0.2 (`wit/0.2.0`): the `policy` interface alone. Contracts 0.3 to 0.5 include it unchanged
//! (`wit/0.3.0/deps/policy-0.2.0` is `wit/0.2.0`), so a 0.2 plugin is driven through the latest
//! bindings of that interface, with the same types and no conversion; what it lacks (loaded
//! requests) the runtime keeps on the host's side.

pub use super::v0_5::wit;
