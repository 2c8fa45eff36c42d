//! The WebAssembly face of the core: wit-bindgen types in, core model, wit-bindgen types out.
//! Nothing here decides anything; it converts (`wire`'s conversions, expanded over wit-bindgen's
//! types) and keeps loaded hosts and requests (`host-state`, `request-state`).

use crate::accounting;
use crate::cores::PreparedHost;
use crate::fit::Limits;
use crate::placement::{Placement, Rejection};
use crate::request::GuestTopology;
use crate::topology::HostTopology;

#[cfg(not(any(feature = "contract-0-2", feature = "contract-0-4")))]
mod bindings {
    wit_bindgen::generate!({
        world: "placement-policy",
        path: "../wit/0.5.0",
        pub_export_macro: true,
    });
}

/// Built against contract 0.4 (no packed placements), for hosts that predate 0.5; the host's
/// tests use it to show a 0.4 plugin keeps loading.
#[cfg(all(feature = "contract-0-4", not(feature = "contract-0-2")))]
mod bindings {
    wit_bindgen::generate!({
        world: "placement-policy",
        path: "../wit/0.4.0",
        pub_export_macro: true,
    });
}

/// Built against contract 0.2 (no loaded requests), for hosts that predate 0.3; the host's tests
/// use it to show a 0.2 plugin keeps loading.
#[cfg(feature = "contract-0-2")]
mod bindings {
    wit_bindgen::generate!({
        world: "placement-policy",
        path: "../wit/0.2.0",
        pub_export_macro: true,
    });
}

#[cfg(feature = "contract-0-2")]
use bindings::exports::numafit::policy::policy as w;
#[cfg(not(feature = "contract-0-2"))]
use bindings::exports::numafit::policy0_2_0::policy as w;
#[cfg(not(feature = "contract-0-2"))]
use bindings::exports::numafit::policy0_3_0::requests as wr;
#[cfg(not(feature = "contract-0-2"))]
use bindings::exports::numafit::policy0_4_0::batch as wb;
#[cfg(not(any(feature = "contract-0-2", feature = "contract-0-4")))]
use bindings::exports::numafit::policy0_5_0::packed as wp;
use w::Guest;

struct Policy;

bindings::export!(Policy with_types_in bindings);

crate::contract_conversions!(super::w);
use convert::*;
#[cfg(not(feature = "contract-0-2"))]
crate::batch_conversions!(super::wb);

fn invalid(message: String) -> w::AccountingError {
    w::AccountingError { code: w::AccountingCode::InvalidInput, host_cell: None, cpus: Vec::new(), message }
}

fn fit_one(host: w::Host, request: &GuestTopology, limits: &Limits) -> Result<w::Placement, w::Rejection> {
    let host = host_from_wit(host).map_err(|e| rejection_to_wit(Rejection::whole(format!("invalid host: {e}"))))?;
    crate::POLICY.fit(&host, request, limits).map(placement_to_wit).map_err(rejection_to_wit)
}

type Account = fn(&HostTopology, &Placement) -> Result<HostTopology, accounting::AccountingError>;

fn account(host: w::Host, placement: w::Placement, op: Account) -> Result<w::Host, w::AccountingError> {
    let host = host_from_wit(host).map_err(|e| invalid(format!("invalid host: {e}")))?;
    let placement = placement_from_wit(placement).map_err(|e| invalid(format!("invalid placement: {e}")))?;
    op(&host, &placement).map(host_to_wit).map_err(accounting_error_to_wit)
}

/// A host checked and modelled once (`host-state`), so later fits only cross the request.
struct LoadedHost(PreparedHost<'static>);

impl w::GuestHostState for LoadedHost {
    fn load(host: w::Host) -> Result<w::HostState, String> {
        // The model outlives this call, so nothing of it may live in the per-call arena: not even
        // the lists it takes over from the (arena-allocated) argument, hence the copy.
        crate::arena::persistent(|| host_from_wit(host.clone()).map(|h| w::HostState::new(LoadedHost(PreparedHost::owned(h)))))
    }

    fn fit(&self, request: w::Request, limits: w::Limits) -> Result<w::Placement, w::Rejection> {
        let request = request_from_wit(request).map_err(|e| rejection_to_wit(Rejection::whole(format!("invalid request: {e}"))))?;
        crate::POLICY.fit_prepared(&self.0, &request, &limits_from_wit(limits)).map(placement_to_wit).map_err(rejection_to_wit)
    }
}

/// A request checked and modelled once (`request-state`), so later fits cross only two handles.
#[cfg(not(feature = "contract-0-2"))]
struct LoadedRequest(crate::ValidRequest<'static>);

#[cfg(not(feature = "contract-0-2"))]
impl wr::GuestRequestState for LoadedRequest {
    fn load(request: w::Request) -> Result<wr::RequestState, String> {
        // Outlives the call: nothing of it may live in the per-call arena (see `LoadedHost::load`).
        crate::arena::persistent(|| {
            // The reason without the "invalid request: " a fit's rejection puts before it.
            let request = crate::ValidRequest::owned(request_from_wit(request.clone())?).map_err(|e| e.to_string())?;
            Ok(wr::RequestState::new(LoadedRequest(request)))
        })
    }

    fn fit(&self, host: w::HostStateBorrow<'_>, limits: w::Limits) -> Result<w::Placement, w::Rejection> {
        crate::POLICY
            .fit_valid(&host.get::<LoadedHost>().0, &self.0, &limits_from_wit(limits))
            .map(placement_to_wit)
            .map_err(rejection_to_wit)
    }
}

#[cfg(not(feature = "contract-0-2"))]
impl wr::Guest for Policy {
    type RequestState = LoadedRequest;
}

#[cfg(not(feature = "contract-0-2"))]
impl wb::Guest for Policy {
    fn fit_batch(hosts: Vec<w::HostStateBorrow<'_>>, request: wr::RequestStateBorrow<'_>, limits: w::Limits) -> wb::BatchAnswers {
        let hosts = hosts.iter().map(|h| &h.get::<LoadedHost>().0);
        convert_batch::batch_to_wit(crate::POLICY.fit_batch(hosts, &request.get::<LoadedRequest>().0, &limits_from_wit(limits)))
    }
}

#[cfg(not(any(feature = "contract-0-2", feature = "contract-0-4")))]
impl wp::Guest for Policy {
    fn fit_packed(host: w::HostStateBorrow<'_>, request: wr::RequestStateBorrow<'_>, limits: w::Limits) -> Result<Vec<u32>, w::Rejection> {
        let mut out = crate::PackedPlacements::default();
        crate::POLICY
            .fit_packed(&host.get::<LoadedHost>().0, &request.get::<LoadedRequest>().0, &limits_from_wit(limits), &mut out)
            .map(|()| out.words)
            .map_err(rejection_to_wit)
    }

    fn fit_batch_packed(hosts: Vec<w::HostStateBorrow<'_>>, request: wr::RequestStateBorrow<'_>, limits: w::Limits) -> wp::PackedAnswers {
        let hosts = hosts.iter().map(|h| &h.get::<LoadedHost>().0);
        let batch = crate::POLICY.fit_batch_packed(hosts, &request.get::<LoadedRequest>().0, &limits_from_wit(limits));
        wp::PackedAnswers { fits: batch.fits, placed: batch.placed.words, rejected: convert_batch::rejected_to_wit(batch.rejected) }
    }
}

impl Guest for Policy {
    type HostState = LoadedHost;

    fn info() -> w::PluginInfo {
        w::PluginInfo { name: crate::POLICY_NAME.into(), version: crate::POLICY_VERSION.into(), contract: crate::CONTRACT_VERSION.into() }
    }

    fn request_from_flavor(flavor: w::Flavor) -> Result<w::Request, w::RequestError> {
        let f = crate::flavor::Flavor {
            vcpus: flavor.vcpus,
            memory_mb: flavor.memory_mb,
            extra_specs: flavor.extra_specs,
            image_props: flavor.image_props,
            pci_requests: flavor.pci_requests.into_iter().map(pci_request_from_wit).collect(),
        };
        crate::flavor::from_flavor(&f).map(request_to_wit).map_err(|e| w::RequestError { code: e.code, message: e.message })
    }

    fn fit(host: w::Host, request: w::Request, limits: w::Limits) -> Result<w::Placement, w::Rejection> {
        let request = request_from_wit(request).map_err(|e| rejection_to_wit(Rejection::whole(format!("invalid request: {e}"))))?;
        fit_one(host, &request, &limits_from_wit(limits))
    }

    fn fit_many(hosts: Vec<w::Host>, request: w::Request, limits: w::Limits) -> Vec<Result<w::Placement, w::Rejection>> {
        let limits = limits_from_wit(limits);
        match request_from_wit(request) {
            Ok(request) => hosts.into_iter().map(|h| fit_one(h, &request, &limits)).collect(),
            Err(e) => hosts.iter().map(|_| Err(rejection_to_wit(Rejection::whole(format!("invalid request: {e}"))))).collect(),
        }
    }

    fn fit_loaded(hosts: Vec<w::HostStateBorrow<'_>>, request: w::Request, limits: w::Limits) -> Vec<Result<w::Placement, w::Rejection>> {
        let limits = limits_from_wit(limits);
        // Loaded hosts are valid already, so the request is the only thing to check: once, not per host.
        let request = request_from_wit(request);
        let valid = request.as_ref().map_err(Clone::clone).and_then(|r| crate::ValidRequest::borrowed(r).map_err(|e| e.to_string()));
        match valid {
            Ok(request) => hosts
                .iter()
                .map(|h| {
                    crate::POLICY.fit_valid(&h.get::<LoadedHost>().0, &request, &limits).map(placement_to_wit).map_err(rejection_to_wit)
                })
                .collect(),
            Err(e) => hosts.iter().map(|_| Err(rejection_to_wit(Rejection::whole(format!("invalid request: {e}"))))).collect(),
        }
    }

    fn claim(host: w::Host, placement: w::Placement) -> Result<w::Host, w::AccountingError> {
        account(host, placement, accounting::claim)
    }

    fn release(host: w::Host, placement: w::Placement) -> Result<w::Host, w::AccountingError> {
        account(host, placement, accounting::release)
    }
}
