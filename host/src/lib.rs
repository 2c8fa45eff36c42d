//! numafit's host: the thin runtime around placement policy components. It reads the CLI's JSON
//! formats, loads and calls a policy component under limits, verifies every answer itself, keeps
//! the claims ledger, and prints it. Data flows one way: discover / formats → ledger → runtime
//! (plugin) → verify → output.

pub mod apply;
pub mod cli;
pub mod contract;
pub mod cpulist;
pub mod discover;
pub mod draw;
pub mod failure;
pub mod fleet;
pub mod formats;
pub mod kube;
pub mod ledger;
pub mod placing;
pub mod runtime;
pub mod selftest;
pub mod service;
pub mod simulate;
pub mod verify;
