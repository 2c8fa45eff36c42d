//! A numafit policy with one fault: `nova`'s answers (numafit's core), then the fault. The faults
//! are the ways a hot-swapped policy can go wrong; the host must survive and refuse each.

mod bindings {
    wit_bindgen::generate!({ world: "placement-policy", path: "../../wit/0.2.0", pub_export_macro: true });
}

use bindings::exports::numafit::policy::policy as w;
use numafit_plugin::{accounting, HostTopology, Limits, Placement, Rejection};

numafit_plugin::contract_conversions!(super::w);
use convert::*;

bindings::export!(Misbehaving with_types_in bindings);

/// One way to go wrong.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    EndlessLoop,
    MemoryBomb,
    Panic,
    /// Pins a vCPU to a CPU of another host cell than the one its guest cell is placed on.
    ForeignCell,
    /// Pins a vCPU to a CPU that is pinned already (on the host, or to another vCPU).
    DoublePin,
    /// Places guest cells with no regard for the host's free memory.
    Overcommit,
    /// Answers correctly, after tens of milliseconds of busy work.
    Slow,
}

/// The fault this build always has, if it was built with one.
const BUILT_FAULT: Option<Fault> = if cfg!(feature = "endless-loop") {
    Some(Fault::EndlessLoop)
} else if cfg!(feature = "memory-bomb") {
    Some(Fault::MemoryBomb)
} else if cfg!(feature = "panic") {
    Some(Fault::Panic)
} else if cfg!(feature = "foreign-cell") {
    Some(Fault::ForeignCell)
} else if cfg!(feature = "double-pin") {
    Some(Fault::DoublePin)
} else if cfg!(feature = "overcommit") {
    Some(Fault::Overcommit)
} else if cfg!(feature = "slow") {
    Some(Fault::Slow)
} else {
    None
};

const FAULT_NAME: &str = match BUILT_FAULT {
    Some(Fault::EndlessLoop) => "endless-loop",
    Some(Fault::MemoryBomb) => "memory-bomb",
    Some(Fault::Panic) => "panic",
    Some(Fault::ForeignCell) => "foreign-cell",
    Some(Fault::DoublePin) => "double-pin",
    Some(Fault::Overcommit) => "overcommit",
    Some(Fault::Slow) => "slow",
    None => "on-request",
};

/// The fault for this request: the build's, else the one its first guest cell's memory asks for.
fn fault(request: &numafit_plugin::GuestTopology) -> Option<Fault> {
    BUILT_FAULT.or_else(|| match request.cells.first().map(|c| c.memory) {
        Some(7001) => Some(Fault::EndlessLoop),
        Some(7002) => Some(Fault::MemoryBomb),
        Some(7003) => Some(Fault::Panic),
        Some(7004) => Some(Fault::ForeignCell),
        Some(7005) => Some(Fault::DoublePin),
        Some(7006) => Some(Fault::Overcommit),
        Some(7007) => Some(Fault::Slow),
        _ => None,
    })
}

fn fit_core(host: &HostTopology, request: &numafit_plugin::GuestTopology, limits: &Limits) -> Result<Placement, Rejection> {
    let fault = fault(request);
    match fault {
        Some(Fault::EndlessLoop) => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Some(Fault::MemoryBomb) => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Some(Fault::Panic) => panic!("misbehaving policy panics on purpose"),
        Some(Fault::Slow) => {
            // Ten million square roots, each waiting for the one before (some 130 million fuel
            // units): a square root's latency, not the CPU's speed at cheap instructions, sets the
            // time, 90 to 130 ms of wall-clock time here (a loop of adds was 29 ms on an idle
            // machine, too close to the 30 ms deadline the service test must hit), well inside the
            // fuel budgets the tests give.
            let mut x = std::hint::black_box(2.0f64);
            for _ in 0..10_000_000u32 {
                x = (x * 1.000_000_1 + 1.0).sqrt();
            }
            std::hint::black_box(x);
        }
        _ => {}
    }
    if fault == Some(Fault::Overcommit) {
        // Fit as if every cell's memory were free and plentiful.
        let mut roomy = host.clone();
        for cell in &mut roomy.cells {
            cell.memory = cell.memory.saturating_mul(1000);
            cell.memory_usage = 0;
            for pool in &mut cell.mempages {
                pool.total = pool.total.saturating_mul(1000);
                pool.used = 0;
            }
        }
        return numafit_plugin::fit(&roomy, request, limits).map(|p| prefer_busiest(host, p));
    }
    let mut placement = numafit_plugin::fit(host, request, limits)?;
    match fault {
        Some(Fault::ForeignCell) => {
            if let Some((cell, other)) = placement.cells.iter_mut().find_map(|c| {
                let other = host.cells.iter().find(|h| h.id != c.host_cell).and_then(|h| h.pcpuset.first());
                other.map(|o| (c, o))
            }) {
                if let Some(pin) = cell.pinning.first_mut() {
                    pin.1 = other;
                }
            }
        }
        Some(Fault::DoublePin) => {
            for cell in &mut placement.cells {
                let pinned = host.cells.iter().find(|h| h.id == cell.host_cell).and_then(|h| h.pinned_cpus.first());
                let first = cell.pinning.first().map(|p| p.1);
                match (pinned, cell.pinning.len()) {
                    (Some(taken), n) if n > 0 => cell.pinning[0].1 = taken,
                    (None, n) if n > 1 => cell.pinning[1].1 = first.unwrap_or(0),
                    _ => continue,
                }
                break;
            }
        }
        _ => {}
    }
    Ok(placement)
}

/// The overcommitting placement moved, cell by cell, onto the host cell with the least free memory
/// that still has the CPUs it pinned (the honest fit avoids those cells; this one seeks them).
fn prefer_busiest(host: &HostTopology, mut p: Placement) -> Placement {
    let free = |id: u32| host.cells.iter().find(|c| c.id == id).map_or(0, |c| c.memory.saturating_sub(c.memory_usage));
    if let Some(cell) = p.cells.first_mut() {
        let wanted = cell.memory;
        if free(cell.host_cell) >= wanted {
            // Honest by luck: find a cell that cannot hold it, with CPUs free, and re-pin there.
            if let Some(target) = host.cells.iter().find(|c| free(c.id) < wanted && c.pcpuset.difference(&c.pinned_cpus).len() >= cell.pinning.len()) {
                let free_cpus = target.pcpuset.difference(&target.pinned_cpus);
                let mut cpus = free_cpus.iter();
                for pin in &mut cell.pinning {
                    pin.1 = cpus.next().unwrap_or(pin.1);
                }
                cell.host_cell = target.id;
            }
        }
    }
    p
}

fn invalid(message: String) -> w::AccountingError {
    w::AccountingError { code: w::AccountingCode::InvalidInput, host_cell: None, cpus: Vec::new(), message }
}

fn fit_wit(host: w::Host, request: w::Request, limits: w::Limits) -> Result<w::Placement, w::Rejection> {
    let host = host_from_wit(host).map_err(|e| rejection_to_wit(Rejection::whole(format!("invalid host: {e}"))))?;
    let request = request_from_wit(request).map_err(|e| rejection_to_wit(Rejection::whole(format!("invalid request: {e}"))))?;
    fit_core(&host, &request, &limits_from_wit(limits)).map(placement_to_wit).map_err(rejection_to_wit)
}

fn account(host: w::Host, placement: w::Placement, claim: bool) -> Result<w::Host, w::AccountingError> {
    let host = host_from_wit(host).map_err(|e| invalid(format!("invalid host: {e}")))?;
    let placement = placement_from_wit(placement).map_err(|e| invalid(format!("invalid placement: {e}")))?;
    let after = if claim { accounting::claim(&host, &placement) } else { accounting::release(&host, &placement) };
    after.map(host_to_wit).map_err(accounting_error_to_wit)
}

struct Misbehaving;

/// A loaded host, kept as the core models it.
pub struct LoadedHost(HostTopology);

impl w::GuestHostState for LoadedHost {
    fn load(host: w::Host) -> Result<w::HostState, String> {
        host_from_wit(host).map(|h| w::HostState::new(LoadedHost(h)))
    }

    fn fit(&self, request: w::Request, limits: w::Limits) -> Result<w::Placement, w::Rejection> {
        let request = request_from_wit(request).map_err(|e| rejection_to_wit(Rejection::whole(format!("invalid request: {e}"))))?;
        fit_core(&self.0, &request, &limits_from_wit(limits)).map(placement_to_wit).map_err(rejection_to_wit)
    }
}

impl w::Guest for Misbehaving {
    type HostState = LoadedHost;

    fn info() -> w::PluginInfo {
        w::PluginInfo { name: format!("misbehaving-{FAULT_NAME}"), version: "1".into(), contract: "0.2.0".into() }
    }

    fn request_from_flavor(flavor: w::Flavor) -> Result<w::Request, w::RequestError> {
        let f = numafit_plugin::Flavor {
            vcpus: flavor.vcpus,
            memory_mb: flavor.memory_mb,
            extra_specs: flavor.extra_specs,
            image_props: flavor.image_props,
            pci_requests: flavor.pci_requests.into_iter().map(pci_request_from_wit).collect(),
        };
        numafit_plugin::from_flavor(&f).map(request_to_wit).map_err(|e| w::RequestError { code: e.code, message: e.message })
    }

    fn fit(host: w::Host, request: w::Request, limits: w::Limits) -> Result<w::Placement, w::Rejection> {
        fit_wit(host, request, limits)
    }

    fn fit_many(hosts: Vec<w::Host>, request: w::Request, limits: w::Limits) -> Vec<Result<w::Placement, w::Rejection>> {
        hosts.into_iter().map(|h| fit_wit(h, request.clone(), limits.clone())).collect()
    }

    fn fit_loaded(hosts: Vec<w::HostStateBorrow<'_>>, request: w::Request, limits: w::Limits) -> Vec<Result<w::Placement, w::Rejection>> {
        hosts.iter().map(|h| w::GuestHostState::fit(h.get::<LoadedHost>(), request.clone(), limits.clone())).collect()
    }

    fn claim(host: w::Host, placement: w::Placement) -> Result<w::Host, w::AccountingError> {
        account(host, placement, true)
    }

    fn release(host: w::Host, placement: w::Placement) -> Result<w::Host, w::AccountingError> {
        account(host, placement, false)
    }
}
