//! Contract 0.1 (`wit/0.1.0`), kept so plugins built against it keep loading. Only its requests
//! and placements differ from the latest (a record per vCPU instead of columns), so only those, and
//! the enums inside them, are converted.

use super::wit;
use super::{placement_from_rows, placement_rows, PlacedCellRows};

wasmtime::component::bindgen!({
    world: "placement-policy",
    path: "../wit/0.1.0",
});

pub fn cpu_to_0_1(p: wit::CpuPolicy) -> CpuPolicy {
    match p {
        wit::CpuPolicy::Shared => CpuPolicy::Shared,
        wit::CpuPolicy::Dedicated => CpuPolicy::Dedicated,
        wit::CpuPolicy::Mixed => CpuPolicy::Mixed,
    }
}

pub fn cpu_from_0_1(p: CpuPolicy) -> wit::CpuPolicy {
    match p {
        CpuPolicy::Shared => wit::CpuPolicy::Shared,
        CpuPolicy::Dedicated => wit::CpuPolicy::Dedicated,
        CpuPolicy::Mixed => wit::CpuPolicy::Mixed,
    }
}

pub fn thread_to_0_1(p: wit::ThreadPolicy) -> ThreadPolicy {
    match p {
        wit::ThreadPolicy::Prefer => ThreadPolicy::Prefer,
        wit::ThreadPolicy::Isolate => ThreadPolicy::Isolate,
        wit::ThreadPolicy::Require => ThreadPolicy::Require,
    }
}

pub fn thread_from_0_1(p: ThreadPolicy) -> wit::ThreadPolicy {
    match p {
        ThreadPolicy::Prefer => wit::ThreadPolicy::Prefer,
        ThreadPolicy::Isolate => wit::ThreadPolicy::Isolate,
        ThreadPolicy::Require => wit::ThreadPolicy::Require,
    }
}

pub fn emulator_to_0_1(p: wit::EmulatorThreadsPolicy) -> EmulatorThreadsPolicy {
    match p {
        wit::EmulatorThreadsPolicy::Share => EmulatorThreadsPolicy::Share,
        wit::EmulatorThreadsPolicy::Isolate => EmulatorThreadsPolicy::Isolate,
    }
}

pub fn emulator_from_0_1(p: EmulatorThreadsPolicy) -> wit::EmulatorThreadsPolicy {
    match p {
        EmulatorThreadsPolicy::Share => wit::EmulatorThreadsPolicy::Share,
        EmulatorThreadsPolicy::Isolate => wit::EmulatorThreadsPolicy::Isolate,
    }
}

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
            .map(|p| PciRequest {
                count: p.count,
                spec: p.spec.clone(),
                numa_policy: p.numa_policy.map(|n| match n {
                    wit::PciNumaPolicy::Required => PciNumaPolicy::Required,
                    wit::PciNumaPolicy::Legacy => PciNumaPolicy::Legacy,
                    wit::PciNumaPolicy::Preferred => PciNumaPolicy::Preferred,
                    wit::PciNumaPolicy::Socket => PciNumaPolicy::Socket,
                }),
            })
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

pub fn request_from_0_1(r: Request) -> wit::Request {
    let mut shared = wit::CellMembers { cells: Vec::new(), ids: Vec::new() };
    let mut dedicated = wit::CellMembers { cells: Vec::new(), ids: Vec::new() };
    for v in &r.vcpus {
        let m = if v.dedicated { &mut dedicated } else { &mut shared };
        m.cells.push(v.cell);
        m.ids.push(v.id);
    }
    wit::Request {
        cells: r
            .cells
            .iter()
            .map(|c| wit::GuestCell {
                memory_mb: c.memory_mb,
                page_size: c.page_size.map(|p| match p {
                    PageSize::Small => wit::PageSize::Small,
                    PageSize::Large => wit::PageSize::Large,
                    PageSize::Any => wit::PageSize::Any,
                    PageSize::Kib(k) => wit::PageSize::Kib(k),
                }),
            })
            .collect(),
        shared_vcpus: shared,
        dedicated_vcpus: dedicated,
        cpu_policy: r.cpu_policy.map(cpu_from_0_1),
        thread_policy: r.thread_policy.map(thread_from_0_1),
        emulator_threads: r.emulator_threads.map(emulator_from_0_1),
        pci_requests: r
            .pci_requests
            .into_iter()
            .map(|p| wit::PciRequest {
                count: p.count,
                spec: p.spec,
                numa_policy: p.numa_policy.map(|n| match n {
                    PciNumaPolicy::Required => wit::PciNumaPolicy::Required,
                    PciNumaPolicy::Legacy => wit::PciNumaPolicy::Legacy,
                    PciNumaPolicy::Preferred => wit::PciNumaPolicy::Preferred,
                    PciNumaPolicy::Socket => wit::PciNumaPolicy::Socket,
                }),
            })
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
