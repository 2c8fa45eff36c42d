//! The contract between policy and host, one module per version (as Zed's extension host does
//! it): each holds that version's `bindgen!` types and its conversions to the latest; `latest` is
//! the one the host speaks. Here too: the contract's column-wise tables read as rows, which
//! formats, verify and the runtime share.

pub mod v0_1;
pub mod v0_2;
pub mod v0_3;
pub mod v0_4;
pub mod v0_5;

pub use v0_5 as latest;

/// The latest contract's types.
pub use latest::wit;
use numafit_plugin::wire::roles;

/// The host of record as a plugin is shown it: normalized (every CPU in one sibling group, page
/// pools by size) and in the contract's tables.
pub fn host_view(record: &numafit_plugin::HostTopology) -> wit::Host {
    latest::convert::host_to_wit(record.clone().normalized())
}

/// One CPU of the contract's column-wise CPU table, as a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuRow {
    pub id: u32,
    pub cell: u32,
    pub core: u32,
    pub shared: bool,
    pub pinnable: bool,
    pub pinned: bool,
}

/// The rows of a host's CPU table (columns shorter than `ids` read as zero).
pub fn cpu_rows(c: &wit::HostCpus) -> impl Iterator<Item = CpuRow> + '_ {
    (0..c.ids.len()).map(move |k| {
        let role = c.roles.get(k).copied().unwrap_or(0);
        CpuRow {
            id: c.ids[k],
            cell: c.cells.get(k).copied().unwrap_or(0),
            core: c.cores.get(k).copied().unwrap_or(0),
            shared: role & roles::SHARED != 0,
            pinnable: role & roles::PINNABLE != 0,
            pinned: role & roles::PINNED != 0,
        }
    })
}

/// The ids a column table assigns to guest cell `cell`, in table order.
pub fn cell_ids(m: &wit::CellMembers, cell: u32) -> Vec<u32> {
    m.cells.iter().zip(&m.ids).filter(|(&c, _)| c == cell).map(|(_, &id)| id).collect()
}

/// One guest cell of a placement with its CPUs gathered from the placement's columns: the shape
/// people (and the JSON formats) think in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedCellRows {
    pub guest_cell: u32,
    pub host_cell: u32,
    pub memory_mb: u64,
    pub page_size_kb: Option<u32>,
    pub shared_vcpus: Vec<u32>,
    /// (vCPU, pCPU) for the dedicated vCPUs.
    pub pinning: Vec<(u32, u32)>,
    pub emulator_pcpus: Vec<u32>,
}

/// The placement's cells with their CPUs (entries naming a guest cell the placement does not list are dropped).
pub fn placement_rows(p: &wit::Placement) -> Vec<PlacedCellRows> {
    p.cells
        .iter()
        .map(|c| {
            let g = c.guest_cell;
            let pinned = &p.pinned;
            PlacedCellRows {
                guest_cell: g,
                host_cell: c.host_cell,
                memory_mb: c.memory_mb,
                page_size_kb: c.page_size_kb,
                shared_vcpus: cell_ids(&p.shared_vcpus, g),
                pinning: pinned
                    .cells
                    .iter()
                    .zip(pinned.vcpus.iter().zip(&pinned.pcpus))
                    .filter(|(&cell, _)| cell == g)
                    .map(|(_, (&v, &c))| (v, c))
                    .collect(),
                emulator_pcpus: cell_ids(&p.emulator_pcpus, g),
            }
        })
        .collect()
}

/// A placement from its cells with their CPUs.
pub fn placement_from_rows(
    policy: String,
    cpu_policy: Option<wit::CpuPolicy>,
    thread_policy: Option<wit::ThreadPolicy>,
    emulator_threads: Option<wit::EmulatorThreadsPolicy>,
    rows: Vec<PlacedCellRows>,
) -> wit::Placement {
    let mut p = wit::Placement {
        policy,
        cpu_policy,
        thread_policy,
        emulator_threads,
        cells: Vec::with_capacity(rows.len()),
        shared_vcpus: wit::CellMembers { cells: Vec::new(), ids: Vec::new() },
        pinned: wit::PinnedVcpus { cells: Vec::new(), vcpus: Vec::new(), pcpus: Vec::new() },
        emulator_pcpus: wit::CellMembers { cells: Vec::new(), ids: Vec::new() },
    };
    for c in rows {
        let g = c.guest_cell;
        p.cells.push(wit::PlacedCell { guest_cell: g, host_cell: c.host_cell, memory_mb: c.memory_mb, page_size_kb: c.page_size_kb });
        for id in c.shared_vcpus {
            p.shared_vcpus.cells.push(g);
            p.shared_vcpus.ids.push(id);
        }
        for (v, pcpu) in c.pinning {
            p.pinned.cells.push(g);
            p.pinned.vcpus.push(v);
            p.pinned.pcpus.push(pcpu);
        }
        for id in c.emulator_pcpus {
            p.emulator_pcpus.cells.push(g);
            p.emulator_pcpus.ids.push(id);
        }
    }
    p
}

/// A loaded request as the host reads its packed placements (contract 0.5) back: the core's
/// model, and what every placement of it repeats, worked out once at load rather than per answer.
#[derive(Clone, Debug)]
pub struct RequestModel {
    pub guest: numafit_plugin::GuestTopology,
    /// Per guest cell, its floating and its dedicated vCPUs, ascending.
    vcpus: Vec<CellVcpus>,
    shared_total: usize,
    dedicated_total: usize,
    cpu_policy: Option<wit::CpuPolicy>,
    thread_policy: Option<wit::ThreadPolicy>,
    emulator_threads: Option<wit::EmulatorThreadsPolicy>,
}

#[derive(Clone, Debug)]
struct CellVcpus {
    shared: Vec<u32>,
    dedicated: Vec<u32>,
}

impl RequestModel {
    /// The model of a request, or why the core refuses it.
    pub fn of(request: wit::Request) -> Result<Self, String> {
        use latest::convert::{cpu_policy_to_wit, emulator_to_wit, request_from_wit, thread_policy_to_wit};
        let guest = request_from_wit(request)?;
        let vcpus: Vec<CellVcpus> =
            guest.cells.iter().map(|c| CellVcpus { shared: c.cpuset.to_vec(), dedicated: c.pcpuset.to_vec() }).collect();
        Ok(RequestModel {
            shared_total: vcpus.iter().map(|c| c.shared.len()).sum(),
            dedicated_total: vcpus.iter().map(|c| c.dedicated.len()).sum(),
            vcpus,
            cpu_policy: guest.cpu_policy.map(cpu_policy_to_wit),
            thread_policy: guest.thread_policy.map(thread_policy_to_wit),
            emulator_threads: guest.emulator_threads.map(emulator_to_wit),
            guest,
        })
    }
}

/// A packed placement (contract 0.5) at the start of `words` as the contract's record, by
/// `policy`: its memory, floating and dedicated vCPUs and CPU policies are the request's the
/// host loaded (`model`). Also the words after it. Built straight into the record's columns.
pub fn placement_from_packed<'a>(words: &'a [u32], model: &RequestModel, policy: &str) -> Result<(wit::Placement, &'a [u32]), String> {
    let cells = words.first().map_or(0, |&n| (n as usize).min(model.vcpus.len()));
    let (shared, pinned) = (model.shared_total, model.dedicated_total);
    let mut p = wit::Placement {
        policy: policy.to_string(),
        cpu_policy: model.cpu_policy,
        thread_policy: model.thread_policy,
        emulator_threads: model.emulator_threads,
        cells: Vec::with_capacity(cells),
        shared_vcpus: wit::CellMembers { cells: Vec::with_capacity(shared), ids: Vec::with_capacity(shared) },
        pinned: wit::PinnedVcpus {
            cells: Vec::with_capacity(pinned),
            vcpus: Vec::with_capacity(pinned),
            pcpus: Vec::with_capacity(pinned),
        },
        emulator_pcpus: wit::CellMembers { cells: Vec::new(), ids: Vec::new() },
    };
    let rest = numafit_plugin::packed::read_guest_cells(words, &model.guest, |c, g| {
        let n = c.guest_cell;
        // read_guest_cells checked the guest cell exists.
        let Some(vcpus) = model.vcpus.get(n as usize) else { return };
        p.cells.push(wit::PlacedCell { guest_cell: n, host_cell: c.host_cell, memory_mb: g.memory, page_size_kb: c.page_size_kb });
        p.shared_vcpus.cells.extend(std::iter::repeat_n(n, vcpus.shared.len()));
        p.shared_vcpus.ids.extend_from_slice(&vcpus.shared);
        let pins = c.pinned.len();
        p.pinned.cells.extend(std::iter::repeat_n(n, pins));
        p.pinned.vcpus.extend_from_slice(&vcpus.dedicated[..pins.min(vcpus.dedicated.len())]);
        p.pinned.pcpus.extend_from_slice(c.pinned);
        p.emulator_pcpus.cells.extend(std::iter::repeat_n(n, c.emulator.len()));
        p.emulator_pcpus.ids.extend_from_slice(c.emulator);
    })?;
    Ok((p, rest))
}
