//! Contract 0.3 (`wit/0.3.0`): 0.2's `policy` and the `requests` interface (loaded requests).
//! Contracts 0.4 and 0.5 include both unchanged (`wit/0.5.0/deps`), so a 0.3 plugin is driven through the
//! latest bindings of those interfaces, with the same types; what it lacks (`fit-batch`) the
//! runtime answers with 0.2's `fit-loaded`.

pub use super::v0_5::{requests, wit};
