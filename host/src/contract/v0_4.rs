//! Contract 0.4 (`wit/0.4.0`): 0.3 (0.2's `policy` and 0.3's `requests`) and the `batch`
//! interface (`fit-batch`: one request's answers on many loaded hosts, as columns). Contract 0.5
//! includes all three unchanged (`wit/0.5.0/deps`), so a 0.4 plugin is driven through the latest
//! bindings of those interfaces, with the same types; what it lacks (packed placements) the
//! runtime asks through 0.3's `fit` and 0.4's `fit-batch`.

pub use super::v0_5::{batch, requests, wit};
