//! Contract 0.3 (`wit/0.3.0`), the latest: 0.2's `policy` interface unchanged (its types are the
//! host's `wit`) and the `requests` interface (`request-state`, a request loaded once). Both are
//! found and type-checked by the bindings, per interface, so a plugin that exports only `policy`
//! (built against 0.2) is driven by the same bindings without `requests`.

pub mod bindings {
    wasmtime::component::bindgen!({
        world: "placement-policy",
        path: "../wit/0.3.0",
    });
}

/// The contract's types and the `policy` interface, as the host sees them.
pub use bindings::exports::numafit::policy0_2_0::policy as wit;
/// The `requests` interface (0.3 plugins only).
pub use bindings::exports::numafit::policy0_3_0::requests;

// The conversions between these types and the core model: the same code the component expands
// over its own bindings (`numafit_plugin::wire`).
numafit_plugin::contract_conversions!(super::wit);
