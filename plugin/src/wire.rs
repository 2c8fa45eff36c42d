//! The conversions between the contract's types and the core model, written once for both sides
//! of the boundary: the component (wit-bindgen's types) and the host (wasmtime's `bindgen!` types)
//! generate the same Rust shapes from one WIT, so each side expands this macro over its own
//! bindings. The contract's encodings live here and nowhere else: the CPU role bits, the L3
//! domain numbers, the column tables of vCPUs.

/// Role bits of the contract's CPU table (`host-cpus.roles`).
pub mod roles {
    /// May run floating vCPUs (`cpuset`).
    pub const SHARED: u8 = 1;
    /// May be pinned (`pcpuset`).
    pub const PINNABLE: u8 = 2;
    /// Pinned by a claim (`pinned_cpus`).
    pub const PINNED: u8 = 4;
}

/// Both directions between a core enum and the contract's enum of the same cases.
#[doc(hidden)]
#[macro_export]
macro_rules! __same_cases {
    ($to:ident, $from:ident, $core:ident, $wit:ident, [$($case:ident),+]) => {
        pub fn $to(x: $core) -> w::$wit {
            match x {
                $($core::$case => w::$wit::$case,)+
            }
        }

        pub fn $from(x: w::$wit) -> $core {
            match x {
                $(w::$wit::$case => $core::$case,)+
            }
        }
    };
}

/// Expands to `pub mod convert`, the conversions between the contract 0.2 types at `$w` (a path
/// that resolves from inside that module, such as `super::wit`) and the core model.
#[macro_export]
macro_rules! contract_conversions {
    ($w:path) => {
        /// Conversions between the contract's types and the core model (`numafit_plugin::wire`).
        #[allow(dead_code)]
        pub mod convert {
            use $crate::accounting;
            use $crate::cpuset::CpuSet;
            use $crate::fit::{Limits, NetworkNeed, Strategy};
            use $crate::placement::{PlacedCell, Placement, Rejection};
            use $crate::refusal::Shortfall;
            use $crate::request::{
                self as core_req, CpuPolicy, EmulatorThreads, GuestCell, GuestTopology, PageSizeWish, PciNumaPolicy, ThreadPolicy,
            };
            use $crate::topology::{CellNetwork, HostCell, HostTopology, PagePool, PciPool};
            use $crate::wire::roles;
            use $crate::AccountingCode;
            use $w as w;

            pub fn host_from_wit(h: w::Host) -> Result<HostTopology, String> {
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
                        host_cpus: CpuSet::new(),
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
                    let role = cpus.roles[k];
                    let c = &mut cells[i];
                    if role & roles::SHARED != 0 {
                        c.cpuset.insert(id);
                    }
                    if role & roles::PINNABLE != 0 {
                        c.pcpuset.insert(id);
                    }
                    if role & roles::PINNED != 0 {
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

            pub fn host_to_wit(h: HostTopology) -> w::Host {
                let mut cpus = w::HostCpus { ids: Vec::new(), cells: Vec::new(), cores: Vec::new(), roles: Vec::new(), l3: Vec::new() };
                let mut pages = Vec::new();
                let mut networks = Vec::new();
                let mut core = 0u32;
                let with_l3 = h.cells.iter().any(|c| !c.cache_groups.is_empty());
                for (pos, cell) in h.cells.iter().enumerate() {
                    for group in &cell.siblings {
                        for cpu in group.iter() {
                            cpus.ids.push(cpu);
                            cpus.cells.push(cell.id);
                            cpus.cores.push(core);
                            let role = |set: &CpuSet, bit: u8| if set.contains(cpu) { bit } else { 0 };
                            cpus.roles.push(
                                role(&cell.cpuset, roles::SHARED)
                                    | role(&cell.pcpuset, roles::PINNABLE)
                                    | role(&cell.pinned_cpus, roles::PINNED),
                            );
                            if with_l3 {
                                // L3 domains numbered host-wide: cell position * 4096 + group; u32::MAX for none.
                                let l3 = cell
                                    .cache_groups
                                    .iter()
                                    .position(|g| g.contains(cpu))
                                    .map_or(u32::MAX, |g| pos as u32 * 4096 + g as u32);
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
                    pci_pools: h
                        .pci_pools
                        .into_iter()
                        .map(|p| w::PciPool { numa_node: p.numa_node, count: p.count, tags: p.tags })
                        .collect(),
                    networks,
                }
            }

            $crate::__same_cases!(cpu_policy_to_wit, cpu_policy_from_wit, CpuPolicy, CpuPolicy, [Shared, Dedicated, Mixed]);
            $crate::__same_cases!(thread_policy_to_wit, thread_policy_from_wit, ThreadPolicy, ThreadPolicy, [Prefer, Isolate, Require]);
            $crate::__same_cases!(emulator_to_wit, emulator_from_wit, EmulatorThreads, EmulatorThreadsPolicy, [Share, Isolate]);
            $crate::__same_cases!(
                pci_numa_policy_to_wit,
                pci_numa_policy_from_wit,
                PciNumaPolicy,
                PciNumaPolicy,
                [Required, Legacy, Preferred, Socket]
            );
            $crate::__same_cases!(strategy_to_wit, strategy_from_wit, Strategy, Strategy, [Spread, Pack]);
            $crate::__same_cases!(
                shortfall_to_wit,
                shortfall_from_wit,
                Shortfall,
                Shortfall,
                [Memory, Pages, PinnableCpus, SharedCpus, FreeCpus, FreeCores, SiblingThreads, EmulatorCpu, CpuRatio, NoCpus]
            );
            $crate::__same_cases!(
                accounting_code_to_wit,
                accounting_code_from_wit,
                AccountingCode,
                AccountingCode,
                [
                    CpuPinningUnknown,
                    CpuPinningInvalid,
                    CpuUnpinningUnknown,
                    CpuUnpinningInvalid,
                    UnknownCell,
                    UnknownPageSize,
                    OverRelease,
                    InvalidInput
                ]
            );

            pub fn page_size_from_wit(p: w::PageSize) -> PageSizeWish {
                match p {
                    w::PageSize::Small => PageSizeWish::Small,
                    w::PageSize::Large => PageSizeWish::Large,
                    w::PageSize::Any => PageSizeWish::Any,
                    w::PageSize::Kib(k) => PageSizeWish::Kib(k),
                }
            }

            pub fn page_size_to_wit(p: PageSizeWish) -> w::PageSize {
                match p {
                    PageSizeWish::Small => w::PageSize::Small,
                    PageSizeWish::Large => w::PageSize::Large,
                    PageSizeWish::Any => w::PageSize::Any,
                    PageSizeWish::Kib(k) => w::PageSize::Kib(k),
                }
            }

            pub fn pci_request_from_wit(p: w::PciRequest) -> core_req::PciRequest {
                core_req::PciRequest { count: p.count, spec: p.spec, numa_policy: p.numa_policy.map(pci_numa_policy_from_wit) }
            }

            pub fn pci_request_to_wit(p: core_req::PciRequest) -> w::PciRequest {
                w::PciRequest { count: p.count, spec: p.spec, numa_policy: p.numa_policy.map(pci_numa_policy_to_wit) }
            }

            pub fn request_from_wit(r: w::Request) -> Result<GuestTopology, String> {
                let mut cells: Vec<GuestCell> = r
                    .cells
                    .iter()
                    .map(|c| GuestCell {
                        cpuset: CpuSet::new(),
                        pcpuset: CpuSet::new(),
                        memory: c.memory_mb,
                        pagesize: c.page_size.map(page_size_from_wit),
                    })
                    .collect();
                for (members, dedicated) in [(&r.shared_vcpus, false), (&r.dedicated_vcpus, true)] {
                    if members.cells.len() != members.ids.len() {
                        return Err(format!(
                            "the vCPU columns differ in length (cells {}, ids {})",
                            members.cells.len(),
                            members.ids.len()
                        ));
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
                let pci_requests = r.pci_requests.into_iter().map(pci_request_from_wit).collect();
                Ok(GuestTopology {
                    cells,
                    cpu_policy: r.cpu_policy.map(cpu_policy_from_wit),
                    thread_policy: r.thread_policy.map(thread_policy_from_wit),
                    emulator_threads: r.emulator_threads.map(emulator_from_wit),
                    pci_requests,
                })
            }

            pub fn members() -> w::CellMembers {
                w::CellMembers { cells: Vec::new(), ids: Vec::new() }
            }

            pub fn push_members(m: &mut w::CellMembers, cell: u32, ids: impl IntoIterator<Item = u32>) {
                for id in ids {
                    m.cells.push(cell);
                    m.ids.push(id);
                }
            }

            pub fn request_to_wit(g: GuestTopology) -> w::Request {
                let (mut shared, mut dedicated) = (members(), members());
                for (i, cell) in g.cells.iter().enumerate() {
                    push_members(&mut shared, i as u32, cell.cpuset.iter());
                    push_members(&mut dedicated, i as u32, cell.pcpuset.iter());
                }
                w::Request {
                    cells: g
                        .cells
                        .iter()
                        .map(|c| w::GuestCell { memory_mb: c.memory, page_size: c.pagesize.map(page_size_to_wit) })
                        .collect(),
                    shared_vcpus: shared,
                    dedicated_vcpus: dedicated,
                    cpu_policy: g.cpu_policy.map(cpu_policy_to_wit),
                    thread_policy: g.thread_policy.map(thread_policy_to_wit),
                    emulator_threads: g.emulator_threads.map(emulator_to_wit),
                    pci_requests: g.pci_requests.into_iter().map(pci_request_to_wit).collect(),
                }
            }

            pub fn limits_from_wit(l: w::Limits) -> Limits {
                Limits {
                    cpu_allocation_ratio: l.cpu_allocation_ratio,
                    ram_allocation_ratio: l.ram_allocation_ratio,
                    network: l.network.map(|n| NetworkNeed { physnets: n.physnets, tunneled: n.tunneled }),
                    strategy: strategy_from_wit(l.strategy),
                }
            }

            pub fn limits_to_wit(l: Limits) -> w::Limits {
                w::Limits {
                    cpu_allocation_ratio: l.cpu_allocation_ratio,
                    ram_allocation_ratio: l.ram_allocation_ratio,
                    network: l.network.map(|n| w::NetworkNeed { physnets: n.physnets, tunneled: n.tunneled }),
                    strategy: strategy_to_wit(l.strategy),
                }
            }

            pub fn placement_to_wit(p: Placement) -> w::Placement {
                let vcpus: usize = p.cells.iter().map(|c| c.pinning.len()).sum();
                let mut pinned =
                    w::PinnedVcpus { cells: Vec::with_capacity(vcpus), vcpus: Vec::with_capacity(vcpus), pcpus: Vec::with_capacity(vcpus) };
                // Every column sized once, as `pinned` is: no growing in the guest's allocator.
                let floating: usize = p.cells.iter().map(|c| c.cpuset.len()).sum();
                let extra: usize = p.cells.iter().map(|c| c.emulator.len()).sum();
                let mut shared = w::CellMembers { cells: Vec::with_capacity(floating), ids: Vec::with_capacity(floating) };
                let mut emulator = w::CellMembers { cells: Vec::with_capacity(extra), ids: Vec::with_capacity(extra) };
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
                    cells.push(w::PlacedCell {
                        guest_cell: c.guest_cell,
                        host_cell: c.host_cell,
                        memory_mb: c.memory,
                        page_size_kb: c.pagesize_kb,
                    });
                }
                w::Placement {
                    policy: p.policy,
                    cpu_policy: p.cpu_policy.map(cpu_policy_to_wit),
                    thread_policy: p.thread_policy.map(thread_policy_to_wit),
                    emulator_threads: p.emulator_threads.map(emulator_to_wit),
                    cells,
                    shared_vcpus: shared,
                    pinned,
                    emulator_pcpus: emulator,
                }
            }

            /// Row numbers of a column table whose guest cell is `g`.
            pub fn rows_of(cells: &[u32], g: u32) -> impl Iterator<Item = usize> + '_ {
                cells.iter().enumerate().filter(move |(_, &c)| c == g).map(|(k, _)| k)
            }

            pub fn placement_from_wit(p: w::Placement) -> Result<Placement, String> {
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
                    cpu_policy: p.cpu_policy.map(cpu_policy_from_wit),
                    thread_policy: p.thread_policy.map(thread_policy_from_wit),
                    emulator_threads: p.emulator_threads.map(emulator_from_wit),
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

            pub fn rejection_to_wit(r: Rejection) -> w::Rejection {
                w::Rejection {
                    summary: r.summary,
                    refusals: r
                        .refusals
                        .into_iter()
                        .map(|c| w::CellRefusal {
                            guest_cell: c.guest_cell,
                            host_cell: c.host_cell,
                            shortfall: shortfall_to_wit(c.refusal.shortfall),
                            needed: c.refusal.needed,
                            available: c.refusal.available,
                            detail: c.detail,
                        })
                        .collect(),
                    reasons: r.reasons,
                }
            }

            pub fn accounting_error_to_wit(e: accounting::AccountingError) -> w::AccountingError {
                w::AccountingError {
                    code: accounting_code_to_wit(e.code),
                    host_cell: e.host_cell,
                    cpus: e.cpus.to_vec(),
                    message: e.message,
                }
            }
        }
    };
}

/// Expands to `pub mod convert_batch`, the conversions between contract 0.4's batch columns (the
/// `batch` interface's types at `$b`, whose enums are 0.2's) and the core's `Batch`, next to
/// `convert` (whose enum conversions it uses). Columns are moved across, not copied.
#[macro_export]
macro_rules! batch_conversions {
    ($b:path) => {
        /// Conversions between contract 0.4's batch columns and the core's `Batch`.
        #[allow(dead_code)]
        pub mod convert_batch {
            use super::convert::{
                cpu_policy_from_wit, cpu_policy_to_wit, emulator_from_wit, emulator_to_wit, shortfall_from_wit, shortfall_to_wit,
                thread_policy_from_wit, thread_policy_to_wit,
            };
            use $b as b;
            use $crate::batch::{Batch, PlacedColumns, RejectedColumns};

            pub fn batch_to_wit(x: Batch) -> b::BatchAnswers {
                let (p, r) = (x.placed, x.rejected);
                b::BatchAnswers {
                    fits: x.fits,
                    placed: b::PlacedColumns {
                        policy: p.policy,
                        cpu_policy: p.cpu_policy.map(cpu_policy_to_wit),
                        thread_policy: p.thread_policy.map(thread_policy_to_wit),
                        emulator_threads: p.emulator_threads.map(emulator_to_wit),
                        cells_ends: p.cells_ends,
                        guest_cell: p.guest_cell,
                        host_cell: p.host_cell,
                        memory_mb: p.memory_mb,
                        page_size_kb: p.page_size_kb,
                        shared_ends: p.shared_ends,
                        shared_vcpus: p.shared_vcpus,
                        pinned_ends: p.pinned_ends,
                        pinned_vcpus: p.pinned_vcpus,
                        pinned_pcpus: p.pinned_pcpus,
                        emulator_ends: p.emulator_ends,
                        emulator_pcpus: p.emulator_pcpus,
                    },
                    rejected: rejected_to_wit(r),
                }
            }

            pub fn rejected_to_wit(r: RejectedColumns) -> b::RejectedColumns {
                b::RejectedColumns {
                    summary_ends: r.summary_ends,
                    summaries: r.summaries,
                    refusals_ends: r.refusals_ends,
                    guest_cell: r.guest_cell,
                    host_cell: r.host_cell,
                    shortfall: r.shortfall.into_iter().map(shortfall_to_wit).collect(),
                    needed: r.needed,
                    available: r.available,
                    detail_ends: r.detail_ends,
                    details: r.details,
                    reasons_ends: r.reasons_ends,
                    reason_ends: r.reason_ends,
                    reasons: r.reasons,
                }
            }

            pub fn batch_from_wit(x: b::BatchAnswers) -> Batch {
                let (p, r) = (x.placed, x.rejected);
                Batch {
                    fits: x.fits,
                    placed: PlacedColumns {
                        policy: p.policy,
                        cpu_policy: p.cpu_policy.map(cpu_policy_from_wit),
                        thread_policy: p.thread_policy.map(thread_policy_from_wit),
                        emulator_threads: p.emulator_threads.map(emulator_from_wit),
                        cells_ends: p.cells_ends,
                        guest_cell: p.guest_cell,
                        host_cell: p.host_cell,
                        memory_mb: p.memory_mb,
                        page_size_kb: p.page_size_kb,
                        shared_ends: p.shared_ends,
                        shared_vcpus: p.shared_vcpus,
                        pinned_ends: p.pinned_ends,
                        pinned_vcpus: p.pinned_vcpus,
                        pinned_pcpus: p.pinned_pcpus,
                        emulator_ends: p.emulator_ends,
                        emulator_pcpus: p.emulator_pcpus,
                    },
                    rejected: rejected_from_wit(r),
                }
            }

            pub fn rejected_from_wit(r: b::RejectedColumns) -> RejectedColumns {
                RejectedColumns {
                    summary_ends: r.summary_ends,
                    summaries: r.summaries,
                    refusals_ends: r.refusals_ends,
                    guest_cell: r.guest_cell,
                    host_cell: r.host_cell,
                    shortfall: r.shortfall.into_iter().map(shortfall_from_wit).collect(),
                    needed: r.needed,
                    available: r.available,
                    detail_ends: r.detail_ends,
                    details: r.details,
                    reasons_ends: r.reasons_ends,
                    reason_ends: r.reason_ends,
                    reasons: r.reasons,
                }
            }
        }
    };
}
