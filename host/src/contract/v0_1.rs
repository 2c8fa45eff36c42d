//! Contract 0.1 (`wit/0.1.0`), kept so plugins built against it keep loading. Only its requests
//! and placements differ from the latest (a record per vCPU instead of columns), so only those, and
//! the enums inside them, are converted.

use super::wit;
use super::{placement_from_rows, placement_rows, PlacedCellRows};

wasmtime::component::bindgen!({
    world: "placement-policy",
    path: "../wit/0.1.0",
});

// Each enum both ways between 0.1 (`$core` side: this module's types) and the latest (`w`).
use super::wit as w;
numafit_plugin::__same_cases!(cpu_from_0_1, cpu_to_0_1, CpuPolicy, CpuPolicy, [Shared, Dedicated, Mixed]);
numafit_plugin::__same_cases!(thread_from_0_1, thread_to_0_1, ThreadPolicy, ThreadPolicy, [Prefer, Isolate, Require]);
numafit_plugin::__same_cases!(emulator_from_0_1, emulator_to_0_1, EmulatorThreadsPolicy, EmulatorThreadsPolicy, [Share, Isolate]);
numafit_plugin::__same_cases!(pci_numa_from_0_1, pci_numa_to_0_1, PciNumaPolicy, PciNumaPolicy, [Required, Legacy, Preferred, Socket]);

pub fn request_to_0_1(r: &wit::Request) -> Request {
    let mut vcpus = Vec::new();
    for (m, dedicated) in [(&r.shared_vcpus, false), (&r.dedicated_vcpus, true)] {
        vcpus.extend(m.cells.iter().zip(&m.ids).map(|(&cell, &id)| GuestVcpu { id, cell, dedicated }));
    }
    vcpus.sort_by_key(|v| v.id);
    Request {
        cells: r.cells.iter().map(|c| GuestCell { memory_mb: c.memory_mb, page_size: c.page_size.map(page_size_to_0_1) }).collect(),
        vcpus,
        cpu_policy: r.cpu_policy.map(cpu_to_0_1),
        thread_policy: r.thread_policy.map(thread_to_0_1),
        emulator_threads: r.emulator_threads.map(emulator_to_0_1),
        pci_requests: r
            .pci_requests
            .iter()
            .map(|p| PciRequest { count: p.count, spec: p.spec.clone(), numa_policy: p.numa_policy.map(pci_numa_to_0_1) })
            .collect(),
    }
}

pub fn page_size_to_0_1(p: wit::PageSize) -> PageSize {
    match p {
        wit::PageSize::Small => PageSize::Small,
        wit::PageSize::Large => PageSize::Large,
        wit::PageSize::Any => PageSize::Any,
        wit::PageSize::Kib(k) => PageSize::Kib(k),
    }
}

pub fn page_size_from_0_1(p: PageSize) -> wit::PageSize {
    match p {
        PageSize::Small => wit::PageSize::Small,
        PageSize::Large => wit::PageSize::Large,
        PageSize::Any => wit::PageSize::Any,
        PageSize::Kib(k) => wit::PageSize::Kib(k),
    }
}

pub fn request_from_0_1(r: Request) -> wit::Request {
    let mut shared = wit::CellMembers { cells: Vec::new(), ids: Vec::new() };
    let mut dedicated = wit::CellMembers { cells: Vec::new(), ids: Vec::new() };
    for v in &r.vcpus {
        let m = if v.dedicated { &mut dedicated } else { &mut shared };
        m.cells.push(v.cell);
        m.ids.push(v.id);
    }
    wit::Request {
        cells: r.cells.iter().map(|c| wit::GuestCell { memory_mb: c.memory_mb, page_size: c.page_size.map(page_size_from_0_1) }).collect(),
        shared_vcpus: shared,
        dedicated_vcpus: dedicated,
        cpu_policy: r.cpu_policy.map(cpu_from_0_1),
        thread_policy: r.thread_policy.map(thread_from_0_1),
        emulator_threads: r.emulator_threads.map(emulator_from_0_1),
        pci_requests: r
            .pci_requests
            .into_iter()
            .map(|p| wit::PciRequest { count: p.count, spec: p.spec, numa_policy: p.numa_policy.map(pci_numa_from_0_1) })
            .collect(),
    }
}

pub fn placement_to_0_1(p: &wit::Placement) -> Placement {
    let placement = placement_rows(p);
    Placement {
        policy: p.policy.clone(),
        cpu_policy: p.cpu_policy.map(cpu_to_0_1),
        thread_policy: p.thread_policy.map(thread_to_0_1),
        emulator_threads: p.emulator_threads.map(emulator_to_0_1),
        cells: placement
            .into_iter()
            .map(|c| PlacedCell {
                guest_cell: c.guest_cell,
                host_cell: c.host_cell,
                dedicated_vcpus: c.pinning.iter().map(|&(v, _)| v).collect(),
                pinning: c.pinning.iter().map(|&(vcpu, pcpu)| PinnedVcpu { vcpu, pcpu }).collect(),
                shared_vcpus: c.shared_vcpus,
                memory_mb: c.memory_mb,
                page_size_kb: c.page_size_kb,
                emulator_pcpus: c.emulator_pcpus,
            })
            .collect(),
    }
}

pub fn placement_from_0_1(p: Placement) -> wit::Placement {
    let rows = p
        .cells
        .iter()
        .map(|c| PlacedCellRows {
            guest_cell: c.guest_cell,
            host_cell: c.host_cell,
            memory_mb: c.memory_mb,
            page_size_kb: c.page_size_kb,
            shared_vcpus: c.shared_vcpus.clone(),
            pinning: c.pinning.iter().map(|x| (x.vcpu, x.pcpu)).collect(),
            emulator_pcpus: c.emulator_pcpus.clone(),
        })
        .collect();
    placement_from_rows(
        p.policy,
        p.cpu_policy.map(cpu_from_0_1),
        p.thread_policy.map(thread_from_0_1),
        p.emulator_threads.map(emulator_from_0_1),
        rows,
    )
}
