//! The WebAssembly face of the core: wit-bindgen types in, core model, wit-bindgen types out.
//! Nothing here decides anything; it only converts, and keeps loaded hosts (`host-state`).

use crate::cores::PreparedHost;
use crate::cpuset::CpuSet;
use crate::fit::{Limits, NetworkNeed, Strategy};
use crate::placement::{PlacedCell, Placement, Rejection};
use crate::refusal::Shortfall;
use crate::request::{self as core_req, CpuPolicy, EmulatorThreads, GuestCell, GuestTopology, PageSizeWish, PciNumaPolicy, ThreadPolicy};
use crate::topology::{CellNetwork, HostCell, HostTopology, PagePool, PciPool};
use crate::{accounting, AccountingCode};

#[cfg(not(feature = "contract-0-2"))]
mod bindings {
    wit_bindgen::generate!({
        world: "placement-policy",
        path: "../wit/0.3.0",
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
use w::Guest;

struct Policy;

bindings::export!(Policy with_types_in bindings);

fn host_in(h: w::Host) -> Result<HostTopology, String> {
    let mut cells: Vec<HostCell> = h
        .cells
        .iter()
        .map(|c| HostCell {
            id: c.id,
            cpuset: CpuSet::new(),
            pcpuset: CpuSet::new(),
            memory: c.memory_mb,
            cpu_usage: c.shared_vcpus_used,
            memory_usage: c.memory_used_mb,
            pinned_cpus: CpuSet::new(),
            siblings: Vec::new(),
            cache_groups: Vec::new(),
            mempages: Vec::new(),
            socket: c.socket,
            network_metadata: None,
        })
        .collect();
    let ids: Vec<u32> = cells.iter().map(|c| c.id).collect();
    let index = |id: u32| ids.iter().position(|&c| c == id);
    let unknown = |what: String, id: u32| format!("{what} names cell {id}, which the host does not list");
    let cpus = &h.cpus;
    let n = cpus.ids.len();
    if cpus.cells.len() != n || cpus.cores.len() != n || cpus.roles.len() != n || !(cpus.l3.is_empty() || cpus.l3.len() == n) {
        return Err(format!(
            "the CPU columns differ in length (ids {n}, cells {}, cores {}, roles {}, l3 {})",
            cpus.cells.len(),
            cpus.cores.len(),
            cpus.roles.len(),
            cpus.l3.len()
        ));
    }
    // (core, cpu) and (l3, cpu) per cell, to build the sibling and cache groups.
    let mut cores: Vec<Vec<(u32, u32)>> = vec![Vec::new(); cells.len()];
    let mut caches: Vec<Vec<(u32, u32)>> = vec![Vec::new(); cells.len()];
    let mut last = (u32::MAX, 0usize);
    for k in 0..n {
        let (id, cell) = (cpus.ids[k], cpus.cells[k]);
        // CPUs come grouped by cell, so the last lookup usually answers.
        let i = if last.0 == cell { last.1 } else { index(cell).ok_or_else(|| unknown(format!("cpu {id}"), cell))? };
        last = (cell, i);
        cores[i].push((cpus.cores[k], id));
        if let Some(&l3) = cpus.l3.get(k) {
            caches[i].push((l3, id));
        }
        let roles = cpus.roles[k];
        let c = &mut cells[i];
        if roles & 1 != 0 {
            c.cpuset.insert(id);
        }
        if roles & 2 != 0 {
            c.pcpuset.insert(id);
        }
        if roles & 4 != 0 {
            c.pinned_cpus.insert(id);
        }
    }
    for pool in &h.pages {
        let i = index(pool.cell).ok_or_else(|| unknown(format!("a {} KiB page pool", pool.size_kb), pool.cell))?;
        cells[i].mempages.push(PagePool { size_kb: pool.size_kb, total: pool.total, used: pool.used, reserved: pool.reserved });
    }
    for net in h.networks {
        let i = index(net.cell).ok_or_else(|| unknown("a network entry".into(), net.cell))?;
        cells[i].network_metadata = Some(CellNetwork { physnets: net.physnets, tunneled: net.tunneled });
    }
    for (cell, mut members) in cells.iter_mut().zip(cores) {
        members.sort_unstable();
        for group in members.chunk_by(|a, b| a.0 == b.0) {
            cell.siblings.push(group.iter().map(|&(_, cpu)| cpu).collect());
        }
    }
    let pci_pools = h.pci_pools.into_iter().map(|p| PciPool { numa_node: p.numa_node, count: p.count, tags: p.tags }).collect();
    let host = HostTopology { cells, distances: h.distances, pci_pools }.normalized();
    host.validate()?;
    Ok(host)
}

fn host_out(h: HostTopology) -> w::Host {
    let mut cpus = w::HostCpus { ids: Vec::new(), cells: Vec::new(), cores: Vec::new(), roles: Vec::new(), l3: Vec::new() };
    let mut pages = Vec::new();
    let mut networks = Vec::new();
    let mut core = 0u32;
    let with_l3 = h.cells.iter().any(|c| !c.cache_groups.is_empty());
    for cell in &h.cells {
        for group in &cell.siblings {
            for cpu in group.iter() {
                cpus.ids.push(cpu);
                cpus.cells.push(cell.id);
                cpus.cores.push(core);
                let role = |set: &CpuSet, bit: u8| if set.contains(cpu) { bit } else { 0 };
                cpus.roles.push(role(&cell.cpuset, 1) | role(&cell.pcpuset, 2) | role(&cell.pinned_cpus, 4));
                if with_l3 {
                    let l3 = cell.cache_groups.iter().position(|g| g.contains(cpu)).map_or(u32::MAX, |p| p as u32 + cell.id * 1024);
                    cpus.l3.push(l3);
                }
            }
            core += 1;
        }
        pages.extend(cell.mempages.iter().map(|p| w::PagePool {
            cell: cell.id,
            size_kb: p.size_kb,
            total: p.total,
            used: p.used,
            reserved: p.reserved,
        }));
        if let Some(net) = &cell.network_metadata {
            networks.push(w::CellNetwork { cell: cell.id, physnets: net.physnets.clone(), tunneled: net.tunneled });
        }
    }
    w::Host {
        cells: h
            .cells
            .iter()
            .map(|c| w::HostCell {
                id: c.id,
                memory_mb: c.memory,
                memory_used_mb: c.memory_usage,
                shared_vcpus_used: c.cpu_usage,
                socket: c.socket,
            })
            .collect(),
        cpus,
        pages,
        distances: h.distances,
        pci_pools: h.pci_pools.into_iter().map(|p| w::PciPool { numa_node: p.numa_node, count: p.count, tags: p.tags }).collect(),
        networks,
    }
}

fn cpu_policy_in(p: w::CpuPolicy) -> CpuPolicy {
    match p {
        w::CpuPolicy::Shared => CpuPolicy::Shared,
        w::CpuPolicy::Dedicated => CpuPolicy::Dedicated,
        w::CpuPolicy::Mixed => CpuPolicy::Mixed,
    }
}

fn cpu_policy_out(p: CpuPolicy) -> w::CpuPolicy {
    match p {
        CpuPolicy::Shared => w::CpuPolicy::Shared,
        CpuPolicy::Dedicated => w::CpuPolicy::Dedicated,
        CpuPolicy::Mixed => w::CpuPolicy::Mixed,
    }
}

fn thread_policy_in(p: w::ThreadPolicy) -> ThreadPolicy {
    match p {
        w::ThreadPolicy::Prefer => ThreadPolicy::Prefer,
        w::ThreadPolicy::Isolate => ThreadPolicy::Isolate,
        w::ThreadPolicy::Require => ThreadPolicy::Require,
    }
}

fn thread_policy_out(p: ThreadPolicy) -> w::ThreadPolicy {
    match p {
        ThreadPolicy::Prefer => w::ThreadPolicy::Prefer,
        ThreadPolicy::Isolate => w::ThreadPolicy::Isolate,
        ThreadPolicy::Require => w::ThreadPolicy::Require,
    }
}

fn emulator_in(p: w::EmulatorThreadsPolicy) -> EmulatorThreads {
    match p {
        w::EmulatorThreadsPolicy::Share => EmulatorThreads::Share,
        w::EmulatorThreadsPolicy::Isolate => EmulatorThreads::Isolate,
    }
}

fn emulator_out(p: EmulatorThreads) -> w::EmulatorThreadsPolicy {
    match p {
        EmulatorThreads::Share => w::EmulatorThreadsPolicy::Share,
        EmulatorThreads::Isolate => w::EmulatorThreadsPolicy::Isolate,
    }
}

fn page_size_in(p: w::PageSize) -> PageSizeWish {
    match p {
        w::PageSize::Small => PageSizeWish::Small,
        w::PageSize::Large => PageSizeWish::Large,
        w::PageSize::Any => PageSizeWish::Any,
        w::PageSize::Kib(k) => PageSizeWish::Kib(k),
    }
}

fn page_size_out(p: PageSizeWish) -> w::PageSize {
    match p {
        PageSizeWish::Small => w::PageSize::Small,
        PageSizeWish::Large => w::PageSize::Large,
        PageSizeWish::Any => w::PageSize::Any,
        PageSizeWish::Kib(k) => w::PageSize::Kib(k),
    }
}

fn pci_in(p: w::PciRequest) -> core_req::PciRequest {
    core_req::PciRequest {
        count: p.count,
        spec: p.spec,
        numa_policy: p.numa_policy.map(|n| match n {
            w::PciNumaPolicy::Required => PciNumaPolicy::Required,
            w::PciNumaPolicy::Legacy => PciNumaPolicy::Legacy,
            w::PciNumaPolicy::Preferred => PciNumaPolicy::Preferred,
            w::PciNumaPolicy::Socket => PciNumaPolicy::Socket,
        }),
    }
}

fn pci_out(p: core_req::PciRequest) -> w::PciRequest {
    w::PciRequest {
        count: p.count,
        spec: p.spec,
        numa_policy: p.numa_policy.map(|n| match n {
            PciNumaPolicy::Required => w::PciNumaPolicy::Required,
            PciNumaPolicy::Legacy => w::PciNumaPolicy::Legacy,
            PciNumaPolicy::Preferred => w::PciNumaPolicy::Preferred,
            PciNumaPolicy::Socket => w::PciNumaPolicy::Socket,
        }),
    }
}

fn request_in(r: w::Request) -> Result<GuestTopology, String> {
    let mut cells: Vec<GuestCell> = r
        .cells
        .iter()
        .map(|c| GuestCell { cpuset: CpuSet::new(), pcpuset: CpuSet::new(), memory: c.memory_mb, pagesize: c.page_size.map(page_size_in) })
        .collect();
    for (members, dedicated) in [(&r.shared_vcpus, false), (&r.dedicated_vcpus, true)] {
        if members.cells.len() != members.ids.len() {
            return Err(format!("the vCPU columns differ in length (cells {}, ids {})", members.cells.len(), members.ids.len()));
        }
        for (&cell, &id) in members.cells.iter().zip(&members.ids) {
            let cell = cells
                .get_mut(cell as usize)
                .ok_or_else(|| format!("vcpu {id} names guest cell {cell}, which the request does not list"))?;
            let fresh = if dedicated { cell.pcpuset.insert(id) } else { cell.cpuset.insert(id) };
            if !fresh {
                return Err(format!("vcpu {id} is listed twice"));
            }
        }
    }
    let pci_requests = r.pci_requests.into_iter().map(pci_in).collect();
    Ok(GuestTopology {
        cells,
        cpu_policy: r.cpu_policy.map(cpu_policy_in),
        thread_policy: r.thread_policy.map(thread_policy_in),
        emulator_threads: r.emulator_threads.map(emulator_in),
        pci_requests,
    })
}

fn members() -> w::CellMembers {
    w::CellMembers { cells: Vec::new(), ids: Vec::new() }
}

fn push_members(m: &mut w::CellMembers, cell: u32, ids: impl IntoIterator<Item = u32>) {
    for id in ids {
        m.cells.push(cell);
        m.ids.push(id);
    }
}

fn request_out(g: GuestTopology) -> w::Request {
    let (mut shared, mut dedicated) = (members(), members());
    for (i, cell) in g.cells.iter().enumerate() {
        push_members(&mut shared, i as u32, cell.cpuset.iter());
        push_members(&mut dedicated, i as u32, cell.pcpuset.iter());
    }
    w::Request {
        cells: g.cells.iter().map(|c| w::GuestCell { memory_mb: c.memory, page_size: c.pagesize.map(page_size_out) }).collect(),
        shared_vcpus: shared,
        dedicated_vcpus: dedicated,
        cpu_policy: g.cpu_policy.map(cpu_policy_out),
        thread_policy: g.thread_policy.map(thread_policy_out),
        emulator_threads: g.emulator_threads.map(emulator_out),
        pci_requests: g.pci_requests.into_iter().map(pci_out).collect(),
    }
}

fn limits_in(l: w::Limits) -> Limits {
    Limits {
        cpu_allocation_ratio: l.cpu_allocation_ratio,
        ram_allocation_ratio: l.ram_allocation_ratio,
        network: l.network.map(|n| NetworkNeed { physnets: n.physnets, tunneled: n.tunneled }),
        strategy: match l.strategy {
            w::Strategy::Spread => Strategy::Spread,
            w::Strategy::Pack => Strategy::Pack,
        },
    }
}

fn placement_out(p: Placement) -> w::Placement {
    let vcpus: usize = p.cells.iter().map(|c| c.pinning.len()).sum();
    let mut pinned =
        w::PinnedVcpus { cells: Vec::with_capacity(vcpus), vcpus: Vec::with_capacity(vcpus), pcpus: Vec::with_capacity(vcpus) };
    let (mut shared, mut emulator) = (members(), members());
    let mut cells = Vec::with_capacity(p.cells.len());
    // By reference: moving each cell out of the vector costs a copy of it in wasm.
    for c in &p.cells {
        push_members(&mut shared, c.guest_cell, c.cpuset.iter());
        push_members(&mut emulator, c.guest_cell, c.emulator.iter().copied());
        for &(vcpu, pcpu) in &c.pinning {
            pinned.cells.push(c.guest_cell);
            pinned.vcpus.push(vcpu);
            pinned.pcpus.push(pcpu);
        }
        cells.push(w::PlacedCell { guest_cell: c.guest_cell, host_cell: c.host_cell, memory_mb: c.memory, page_size_kb: c.pagesize_kb });
    }
    w::Placement {
        policy: p.policy,
        cpu_policy: p.cpu_policy.map(cpu_policy_out),
        thread_policy: p.thread_policy.map(thread_policy_out),
        emulator_threads: p.emulator_threads.map(emulator_out),
        cells,
        shared_vcpus: shared,
        pinned,
        emulator_pcpus: emulator,
    }
}

/// Row numbers of a column table whose guest cell is `g`.
fn rows_of(cells: &[u32], g: u32) -> impl Iterator<Item = usize> + '_ {
    cells.iter().enumerate().filter(move |(_, &c)| c == g).map(|(k, _)| k)
}

fn placement_in(p: w::Placement) -> Result<Placement, String> {
    let of = rows_of;
    let (s, pin, e) = (&p.shared_vcpus, &p.pinned, &p.emulator_pcpus);
    if s.cells.len() != s.ids.len()
        || pin.cells.len() != pin.vcpus.len()
        || pin.cells.len() != pin.pcpus.len()
        || e.cells.len() != e.ids.len()
    {
        return Err("the placement's CPU columns differ in length".into());
    }
    Ok(Placement {
        policy: p.policy,
        cpu_policy: p.cpu_policy.map(cpu_policy_in),
        thread_policy: p.thread_policy.map(thread_policy_in),
        emulator_threads: p.emulator_threads.map(emulator_in),
        cells: p
            .cells
            .iter()
            .map(|c| {
                let g = c.guest_cell;
                let pinning: Vec<(u32, u32)> =
                    of(&p.pinned.cells, g).filter_map(|k| Some((*p.pinned.vcpus.get(k)?, *p.pinned.pcpus.get(k)?))).collect();
                PlacedCell {
                    guest_cell: g,
                    host_cell: c.host_cell,
                    cpuset: of(&p.shared_vcpus.cells, g).filter_map(|k| p.shared_vcpus.ids.get(k).copied()).collect(),
                    memory: c.memory_mb,
                    pagesize_kb: c.page_size_kb,
                    pinning,
                    emulator: of(&p.emulator_pcpus.cells, g).filter_map(|k| p.emulator_pcpus.ids.get(k).copied()).collect(),
                }
            })
            .collect(),
    })
}

fn shortfall_out(s: Shortfall) -> w::Shortfall {
    match s {
        Shortfall::Memory => w::Shortfall::Memory,
        Shortfall::Pages => w::Shortfall::Pages,
        Shortfall::PinnableCpus => w::Shortfall::PinnableCpus,
        Shortfall::SharedCpus => w::Shortfall::SharedCpus,
        Shortfall::FreeCpus => w::Shortfall::FreeCpus,
        Shortfall::FreeCores => w::Shortfall::FreeCores,
        Shortfall::SiblingThreads => w::Shortfall::SiblingThreads,
        Shortfall::EmulatorCpu => w::Shortfall::EmulatorCpu,
        Shortfall::CpuRatio => w::Shortfall::CpuRatio,
        Shortfall::NoCpus => w::Shortfall::NoCpus,
    }
}

fn rejection_out(r: Rejection) -> w::Rejection {
    w::Rejection {
        summary: r.summary,
        refusals: r
            .refusals
            .into_iter()
            .map(|c| w::CellRefusal {
                guest_cell: c.guest_cell,
                host_cell: c.host_cell,
                shortfall: shortfall_out(c.refusal.shortfall),
                needed: c.refusal.needed,
                available: c.refusal.available,
                detail: c.detail,
            })
            .collect(),
        reasons: r.reasons,
    }
}

fn accounting_error_out(e: accounting::AccountingError) -> w::AccountingError {
    w::AccountingError {
        code: match e.code {
            AccountingCode::CpuPinningUnknown => w::AccountingCode::CpuPinningUnknown,
            AccountingCode::CpuPinningInvalid => w::AccountingCode::CpuPinningInvalid,
            AccountingCode::CpuUnpinningUnknown => w::AccountingCode::CpuUnpinningUnknown,
            AccountingCode::CpuUnpinningInvalid => w::AccountingCode::CpuUnpinningInvalid,
            AccountingCode::UnknownCell => w::AccountingCode::UnknownCell,
            AccountingCode::UnknownPageSize => w::AccountingCode::UnknownPageSize,
            AccountingCode::OverRelease => w::AccountingCode::OverRelease,
            AccountingCode::InvalidInput => w::AccountingCode::InvalidInput,
        },
        host_cell: e.host_cell,
        cpus: e.cpus.to_vec(),
        message: e.message,
    }
}

fn invalid(message: String) -> w::AccountingError {
    w::AccountingError { code: w::AccountingCode::InvalidInput, host_cell: None, cpus: Vec::new(), message }
}

fn fit_one(host: w::Host, request: &GuestTopology, limits: &Limits) -> Result<w::Placement, w::Rejection> {
    let host = host_in(host).map_err(|e| rejection_out(Rejection::whole(format!("invalid host: {e}"))))?;
    crate::POLICY.fit(&host, request, limits).map(placement_out).map_err(rejection_out)
}

type Account = fn(&HostTopology, &Placement) -> Result<HostTopology, accounting::AccountingError>;

fn account(host: w::Host, placement: w::Placement, op: Account) -> Result<w::Host, w::AccountingError> {
    let host = host_in(host).map_err(|e| invalid(format!("invalid host: {e}")))?;
    let placement = placement_in(placement).map_err(|e| invalid(format!("invalid placement: {e}")))?;
    op(&host, &placement).map(host_out).map_err(accounting_error_out)
}

/// A host checked and modelled once (`host-state`), so later fits only cross the request.
struct LoadedHost(PreparedHost<'static>);

impl w::GuestHostState for LoadedHost {
    fn load(host: w::Host) -> Result<w::HostState, String> {
        // The model outlives this call, so nothing of it may live in the per-call arena: not even
        // the lists it takes over from the (arena-allocated) argument, hence the copy.
        crate::arena::persistent(|| host_in(host.clone()).map(|h| w::HostState::new(LoadedHost(PreparedHost::owned(h)))))
    }

    fn fit(&self, request: w::Request, limits: w::Limits) -> Result<w::Placement, w::Rejection> {
        let request = request_in(request).map_err(|e| rejection_out(Rejection::whole(format!("invalid request: {e}"))))?;
        crate::POLICY.fit_prepared(&self.0, &request, &limits_in(limits)).map(placement_out).map_err(rejection_out)
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
            let request = crate::ValidRequest::owned(request_in(request.clone())?).map_err(|e| e.to_string())?;
            Ok(wr::RequestState::new(LoadedRequest(request)))
        })
    }

    fn fit(&self, host: w::HostStateBorrow<'_>, limits: w::Limits) -> Result<w::Placement, w::Rejection> {
        crate::POLICY.fit_valid(&host.get::<LoadedHost>().0, &self.0, &limits_in(limits)).map(placement_out).map_err(rejection_out)
    }
}

#[cfg(not(feature = "contract-0-2"))]
impl wr::Guest for Policy {
    type RequestState = LoadedRequest;
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
            pci_requests: flavor.pci_requests.into_iter().map(pci_in).collect(),
        };
        crate::flavor::from_flavor(&f).map(request_out).map_err(|e| w::RequestError { code: e.code, message: e.message })
    }

    fn fit(host: w::Host, request: w::Request, limits: w::Limits) -> Result<w::Placement, w::Rejection> {
        let request = request_in(request).map_err(|e| rejection_out(Rejection::whole(format!("invalid request: {e}"))))?;
        fit_one(host, &request, &limits_in(limits))
    }

    fn fit_many(hosts: Vec<w::Host>, request: w::Request, limits: w::Limits) -> Vec<Result<w::Placement, w::Rejection>> {
        let limits = limits_in(limits);
        match request_in(request) {
            Ok(request) => hosts.into_iter().map(|h| fit_one(h, &request, &limits)).collect(),
            Err(e) => hosts.iter().map(|_| Err(rejection_out(Rejection::whole(format!("invalid request: {e}"))))).collect(),
        }
    }

    fn fit_loaded(hosts: Vec<w::HostStateBorrow<'_>>, request: w::Request, limits: w::Limits) -> Vec<Result<w::Placement, w::Rejection>> {
        let limits = limits_in(limits);
        // Loaded hosts are valid already, so the request is the only thing to check: once, not per host.
        let request = request_in(request);
        let valid = request.as_ref().map_err(Clone::clone).and_then(|r| crate::ValidRequest::borrowed(r).map_err(|e| e.to_string()));
        match valid {
            Ok(request) => hosts
                .iter()
                .map(|h| crate::POLICY.fit_valid(&h.get::<LoadedHost>().0, &request, &limits).map(placement_out).map_err(rejection_out))
                .collect(),
            Err(e) => hosts.iter().map(|_| Err(rejection_out(Rejection::whole(format!("invalid request: {e}"))))).collect(),
        }
    }

    fn claim(host: w::Host, placement: w::Placement) -> Result<w::Host, w::AccountingError> {
        account(host, placement, accounting::claim)
    }

    fn release(host: w::Host, placement: w::Placement) -> Result<w::Host, w::AccountingError> {
        account(host, placement, accounting::release)
    }
}
