//! Contract 0.5 (`wit/0.5.0`), the latest: 0.4 unchanged (0.2's `policy`, whose types are the
//! host's `wit`, 0.3's `requests`, 0.4's `batch`), plus the `packed` interface (placements as one
//! list of numbers holding what the policy chose; the host fills in the request's part). Each
//! interface is found and type-checked by the bindings on its own, so a plugin built against 0.4,
//! 0.3 or 0.2 is driven by the same bindings without the interfaces it lacks.

pub mod bindings {
    wasmtime::component::bindgen!({
        world: "placement-policy",
        path: "../wit/0.5.0",
    });
}

/// The contract's types and the `policy` interface, as the host sees them.
pub use bindings::exports::numafit::policy0_2_0::policy as wit;
/// The `requests` interface (0.3 and later plugins).
pub use bindings::exports::numafit::policy0_3_0::requests;
/// The `batch` interface (0.4 and later plugins).
pub use bindings::exports::numafit::policy0_4_0::batch;
/// The `packed` interface (0.5 plugins).
pub use bindings::exports::numafit::policy0_5_0::packed;

// The conversions between these types and the core model: the same code the component expands
// over its own bindings (`numafit_plugin::wire`).
numafit_plugin::contract_conversions!(super::wit);
numafit_plugin::batch_conversions!(super::batch);
