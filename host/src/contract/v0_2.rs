//! Contract 0.2 (`wit/0.2.0`): the types and the `policy` interface every current plugin exports
//! (0.3 adds the `requests` interface, found by name in the runtime, with the same types).

pub mod bindings {
    wasmtime::component::bindgen!({
        world: "placement-policy",
        path: "../wit/0.2.0",
    });
}

/// The contract's types as the host sees them.
pub use bindings::exports::numafit::policy::policy as wit;

// The conversions between these types and the core model: the same code the component expands
// over its own bindings (`numafit_plugin::wire`).
numafit_plugin::contract_conversions!(super::wit);
