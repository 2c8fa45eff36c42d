//! Where a component's functions are: the latest bindings' indices, interface by interface, or a
//! 0.1 plugin's top-level functions found by name.

use wasmtime::component::{Component, ComponentExportIndex, ComponentNamedList, Func, Lift, Lower};
use wasmtime::Store;

use super::limits::State;
use super::{batch, packed, requests, wit};

/// How a component's exports are found: by the latest bindings, per interface (`requests` when
/// the plugin has it: a 0.2 plugin does not; `batch` when it has it: a 0.3 plugin does not;
/// `packed` when it has it: a 0.4 plugin does not), or by name for a 0.1 plugin.
pub(super) enum Pre {
    Current {
        pre: wasmtime::component::InstancePre<State>,
        policy: wit::GuestIndices,
        requests: Option<requests::GuestIndices>,
        batch: Option<batch::GuestIndices>,
        packed: Option<packed::GuestIndices>,
    },
    V0_1 {
        pre: wasmtime::component::InstancePre<State>,
        funcs: LegacyIndices,
    },
}

/// The name contract 0.3 exports its `requests` interface under.
pub(super) const REQUESTS_INTERFACE: &str = "numafit:policy/requests@0.3.0";
/// The name contract 0.4 exports its `batch` interface under.
pub(super) const BATCH_INTERFACE: &str = "numafit:policy/batch@0.4.0";
/// The name contract 0.5 exports its `packed` interface under.
pub(super) const PACKED_INTERFACE: &str = "numafit:policy/packed@0.5.0";

/// A live instance's exports.
pub(super) enum Exports {
    Current { policy: wit::Guest, requests: Option<requests::Guest>, batch: Option<batch::Guest>, packed: Option<packed::Guest> },
    V0_1(LegacyFuncs),
}

/// Where a 0.1 plugin's top-level functions are.
#[derive(Clone, Copy)]
pub(super) struct LegacyIndices {
    info: ComponentExportIndex,
    request_from_flavor: ComponentExportIndex,
    fit: ComponentExportIndex,
    fit_many: ComponentExportIndex,
    claim: ComponentExportIndex,
    release: ComponentExportIndex,
}

/// A 0.1 plugin's functions in one instance. Apart from requests and placements, 0.1 and 0.2 types
/// are structurally identical, so the latest bindings' Rust types lower and lift them (wasmtime
/// type-checks each call).
pub(super) struct LegacyFuncs {
    pub(super) info: Func,
    pub(super) request_from_flavor: Func,
    pub(super) fit: Func,
    pub(super) fit_many: Func,
    pub(super) claim: Func,
    pub(super) release: Func,
}

impl LegacyIndices {
    pub(super) fn find(component: &Component) -> Option<LegacyIndices> {
        let at = |name: &str| component.get_export_index(None, name);
        Some(LegacyIndices {
            info: at("info")?,
            request_from_flavor: at("request-from-flavor")?,
            fit: at("fit")?,
            fit_many: at("fit-many")?,
            claim: at("claim")?,
            release: at("release")?,
        })
    }

    pub(super) fn funcs(&self, store: &mut Store<State>, instance: &wasmtime::component::Instance) -> wasmtime::Result<LegacyFuncs> {
        let mut get = |index: &ComponentExportIndex| {
            instance.get_func(&mut *store, index).ok_or_else(|| wasmtime::format_err!("a 0.1 export is not a function"))
        };
        Ok(LegacyFuncs {
            info: get(&self.info)?,
            request_from_flavor: get(&self.request_from_flavor)?,
            fit: get(&self.fit)?,
            fit_many: get(&self.fit_many)?,
            claim: get(&self.claim)?,
            release: get(&self.release)?,
        })
    }
}

/// Calls a function found by name with the given types (checked against the component's).
pub(super) fn call_typed<P, R>(func: Func, store: &mut Store<State>, params: P) -> wasmtime::Result<R>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    func.typed::<P, R>(&*store)?.call(store, params)
}
