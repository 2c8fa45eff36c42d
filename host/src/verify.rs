//! The host's own check of what a plugin answered. A policy plugin is untrusted: before numafit
//! prints, records or applies a placement, it confirms here that the placement is one the host can
//! honour — every guest cell placed once on a distinct existing host cell, every dedicated vCPU
//! pinned once to a free pinnable CPU of that cell, no CPU given twice, memory and pages available —
//! and that a claimed or released host differs from the input only in usage, by the placement.

use std::collections::{BTreeMap, BTreeSet};

use numafit_plugin::{CpuSet, HostTopology, Placement};

use crate::contract::latest::convert;
use crate::contract::{cell_ids, cpu_rows, placement_rows, wit, PlacedCellRows};

/// A plugin answer the host refuses to trust.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin} returned an invalid {what}: {problem}")]
pub struct VerifyError {
    pub plugin: String,
    pub what: &'static str,
    pub problem: String,
}

/// What the checks need to know of one host cell's CPUs.
struct CellView {
    /// The cell's position in `host.cells`.
    cell: usize,
    /// Bitmaps, not trees: every fit of a scheduler's batch is checked against them. Only the
    /// host's own CPU numbers go in; a plugin's numbers are only looked up.
    pinnable: CpuSet,
    pinned: CpuSet,
    /// How many shared CPUs the cell has.
    shared: usize,
    cores: BTreeMap<u32, BTreeSet<u32>>,
    core_of: BTreeMap<u32, u32>,
}

/// A host's CPUs by cell, built once per host state: the service checks every fit on the same
/// state against one index rather than rebuilding it per answer.
pub struct HostIndex {
    cells: BTreeMap<u32, CellView>,
}

impl HostIndex {
    pub fn of(host: &wit::Host) -> HostIndex {
        let mut cells: BTreeMap<u32, CellView> = host
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.id,
                    CellView {
                        cell: i,
                        pinnable: CpuSet::new(),
                        pinned: CpuSet::new(),
                        shared: 0,
                        cores: BTreeMap::new(),
                        core_of: BTreeMap::new(),
                    },
                )
            })
            .collect();
        for cpu in cpu_rows(&host.cpus) {
            if let Some(v) = cells.get_mut(&cpu.cell) {
                if cpu.pinnable {
                    v.pinnable.insert(cpu.id);
                }
                if cpu.pinned {
                    v.pinned.insert(cpu.id);
                }
                v.shared += usize::from(cpu.shared);
                v.cores.entry(cpu.core).or_default().insert(cpu.id);
                v.core_of.insert(cpu.id, cpu.core);
            }
        }
        HostIndex { cells }
    }
}

/// Checks a placement against the host and request it answers.
pub fn placement(plugin: &str, host: &wit::Host, request: &wit::Request, p: &wit::Placement) -> Result<(), VerifyError> {
    placement_on(plugin, host, &HostIndex::of(host), request, p)
}

/// `placement` against an index already built for `host`.
pub fn placement_on(
    plugin: &str,
    host: &wit::Host,
    index: &HostIndex,
    request: &wit::Request,
    p: &wit::Placement,
) -> Result<(), VerifyError> {
    let fail = |problem: String| VerifyError { plugin: plugin.to_string(), what: "placement", problem };
    if p.cpu_policy != request.cpu_policy || p.thread_policy != request.thread_policy || p.emulator_threads != request.emulator_threads {
        return Err(fail("its CPU, thread or emulator-thread policy differs from the request's".into()));
    }
    if p.cells.len() != request.cells.len() {
        return Err(fail(format!("{} cells placed for a guest of {}", p.cells.len(), request.cells.len())));
    }
    // Every CPU entry must belong to a placed guest cell, and the columns must line up.
    let (sv, pv, ev) = (&p.shared_vcpus, &p.pinned, &p.emulator_pcpus);
    if sv.cells.len() != sv.ids.len()
        || pv.cells.len() != pv.vcpus.len()
        || pv.cells.len() != pv.pcpus.len()
        || ev.cells.len() != ev.ids.len()
    {
        return Err(fail("its CPU columns differ in length".into()));
    }
    let placed_cells: BTreeSet<u32> = p.cells.iter().map(|c| c.guest_cell).collect();
    if let Some(orphan) = sv.cells.iter().chain(&pv.cells).chain(&ev.cells).find(|c| !placed_cells.contains(c)) {
        return Err(fail(format!("it lists CPUs of guest cell {orphan}, which it does not place")));
    }
    let views = &index.cells;
    let pins = matches!(request.cpu_policy, Some(wit::CpuPolicy::Dedicated | wit::CpuPolicy::Mixed));
    let isolate = request.thread_policy == Some(wit::ThreadPolicy::Isolate);
    let mut used_cells = BTreeSet::new();
    let mut used_cpus = CpuSet::new();
    for (g, placed) in placement_rows(p).iter().enumerate() {
        if placed.guest_cell as usize != g {
            return Err(fail(format!("cell {g} is labelled guest cell {}", placed.guest_cell)));
        }
        let view = views
            .get(&placed.host_cell)
            .ok_or_else(|| fail(format!("guest cell {g} is on host cell {}, which does not exist", placed.host_cell)))?;
        if !used_cells.insert(placed.host_cell) {
            return Err(fail(format!("host cell {} holds two guest cells", placed.host_cell)));
        }
        let want = &request.cells[g];
        if placed.memory_mb != want.memory_mb {
            return Err(fail(format!("guest cell {g} got {} MiB, asked for {}", placed.memory_mb, want.memory_mb)));
        }
        let asked = |m: &wit::CellMembers| -> CpuSet { cell_ids(m, g as u32).into_iter().collect() };
        let (shared, dedicated) = (asked(&request.shared_vcpus), asked(&request.dedicated_vcpus));
        if !same_members(placed.shared_vcpus.iter().copied(), &shared) {
            return Err(fail(format!("guest cell {g}'s shared vCPUs differ from the request's")));
        }
        if !same_members(placed.pinning.iter().map(|x| x.0), &dedicated) {
            return Err(fail(format!("guest cell {g} does not pin each dedicated vCPU exactly once")));
        }
        if !pins && (!placed.pinning.is_empty() || !placed.emulator_pcpus.is_empty()) {
            return Err(fail(format!("guest cell {g} pins CPUs for a guest that asked for none")));
        }
        let pcpus: Vec<u32> = placed.pinning.iter().map(|x| x.1).chain(placed.emulator_pcpus.iter().copied()).collect();
        for &cpu in &pcpus {
            if !view.pinnable.contains(cpu) {
                return Err(fail(format!("guest cell {g} pins CPU {cpu}, which host cell {} cannot pin", placed.host_cell)));
            }
            if view.pinned.contains(cpu) {
                return Err(fail(format!("guest cell {g} pins CPU {cpu}, which is already pinned")));
            }
            if !used_cpus.insert(cpu) {
                return Err(fail(format!("CPU {cpu} is given twice")));
            }
            if isolate {
                let core = view.core_of.get(&cpu).and_then(|k| view.cores.get(k));
                if let Some(core) = core {
                    if core.iter().any(|&t| !view.pinnable.contains(t) || view.pinned.contains(t) || (t != cpu && pcpus.contains(&t))) {
                        return Err(fail(format!("guest cell {g} (isolate) uses CPU {cpu} on a core that is not wholly its own")));
                    }
                }
            }
        }
        if let Some(size) = placed.page_size_kb {
            let pool =
                host.pages.iter().find(|pp| pp.cell == placed.host_cell && pp.size_kb == size).ok_or_else(|| {
                    fail(format!("guest cell {g} uses {size} KiB pages, which host cell {} does not have", placed.host_cell))
                })?;
            let kb = placed.memory_mb * 1024;
            let free = pool.total.saturating_sub(pool.used + pool.reserved);
            if kb % u64::from(size) != 0 || kb / u64::from(size) > free {
                return Err(fail(format!(
                    "guest cell {g} needs {} MiB in {size} KiB pages; host cell {} has {free} free",
                    placed.memory_mb, placed.host_cell
                )));
            }
        } else if pins {
            // A pinned guest cell without a page size takes the cell's smallest pages where it
            // has pools (Nova's rule), else its plain memory.
            let smallest = host.pages.iter().filter(|pp| pp.cell == placed.host_cell).min_by_key(|pp| pp.size_kb);
            let short = match smallest {
                Some(pool) => {
                    let free = pool.total.saturating_sub(pool.used + pool.reserved);
                    u128::from(free) < pages_covering(pool.size_kb, placed.memory_mb)
                }
                None => {
                    let cell = &host.cells[view.cell];
                    cell.memory_mb.saturating_sub(cell.memory_used_mb) < placed.memory_mb
                }
            };
            if short {
                return Err(fail(format!("guest cell {g} needs {} MiB; host cell {} has less free", placed.memory_mb, placed.host_cell)));
            }
        }
    }
    Ok(())
}

/// Whether `ids` (a plugin's) name each member of `want` exactly once and nothing else: checked
/// member by member before any of them goes into a set, so a hostile number allocates nothing.
fn same_members(ids: impl ExactSizeIterator<Item = u32>, want: &CpuSet) -> bool {
    if ids.len() != want.len() {
        return false;
    }
    let mut seen = CpuSet::new();
    ids.into_iter().all(|id| want.contains(id) && seen.insert(id))
}

/// A host's shape as `accounting` compares it: cells (id, memory, socket), CPUs (id, cell, core,
/// shared, pinnable) and page pools (cell, size, total, reserved).
type Layout = (Vec<(u32, u64, Option<u32>)>, Vec<(u32, u32, u32, bool, bool)>, Vec<(u32, u32, u64, u64)>);

fn layout(host: &wit::Host) -> Layout {
    let cells = host.cells.iter().map(|c| (c.id, c.memory_mb, c.socket)).collect();
    let cpus = cpu_rows(&host.cpus).map(|c| (c.id, c.cell, c.core, c.shared, c.pinnable)).collect();
    let pages = host.pages.iter().map(|p| (p.cell, p.size_kb, p.total, p.reserved)).collect();
    (cells, cpus, pages)
}

/// Checks a host a plugin returned from claim (`sign` +1) or release (−1): same layout and
/// capacity, usage moved by exactly the placement's memory and vCPUs, pins only on its cells.
pub fn accounting(plugin: &str, before: &wit::Host, after: &wit::Host, p: &wit::Placement, claim: bool) -> Result<(), VerifyError> {
    let fail = |problem: String| VerifyError { plugin: plugin.to_string(), what: if claim { "claim" } else { "release" }, problem };
    let (mut bl, mut al) = (layout(before), layout(after));
    for l in [&mut bl, &mut al] {
        l.1.sort_unstable_by_key(|c| c.0);
    }
    if (bl.0, bl.2) != (al.0, al.2) || bl.1.iter().map(|c| (c.0, c.1, c.3, c.4)).ne(al.1.iter().map(|c| (c.0, c.1, c.3, c.4))) {
        return Err(fail("the host's cells, CPUs or page pools changed, not just their usage".into()));
    }
    let pinned =
        |h: &wit::Host, cell: u32| -> BTreeSet<u32> { cpu_rows(&h.cpus).filter(|c| c.cell == cell && c.pinned).map(|c| c.id).collect() };
    let rows = placement_rows(p);
    for (b, a) in before.cells.iter().zip(&after.cells) {
        let placed: Vec<&PlacedCellRows> = rows.iter().filter(|c| c.host_cell == b.id).collect();
        let mem: u64 = placed.iter().map(|c| c.memory_mb).sum();
        let vcpus: u32 = placed.iter().map(|c| c.shared_vcpus.len() as u32).sum();
        let (want_mem, want_vcpus) = if claim {
            (b.memory_used_mb.checked_add(mem), b.shared_vcpus_used.checked_add(vcpus))
        } else {
            (b.memory_used_mb.checked_sub(mem), b.shared_vcpus_used.checked_sub(vcpus))
        };
        if Some(a.memory_used_mb) != want_mem || Some(a.shared_vcpus_used) != want_vcpus {
            return Err(fail(format!("host cell {}'s memory or vCPU usage moved by other than the placement", b.id)));
        }
        let (pb, pa) = (pinned(before, b.id), pinned(after, b.id));
        let moved: BTreeSet<u32> = if claim { pa.difference(&pb).copied().collect() } else { pb.difference(&pa).copied().collect() };
        let kept = if claim { pb.is_subset(&pa) } else { pa.is_subset(&pb) };
        let mine: BTreeSet<u32> =
            placed.iter().flat_map(|c| c.pinning.iter().map(|x| x.1).chain(c.emulator_pcpus.iter().copied())).collect();
        // Isolate takes whole cores: the siblings of its CPUs may move too, nothing else.
        let allowed: BTreeSet<u32> = if p.thread_policy == Some(wit::ThreadPolicy::Isolate) {
            let cores: BTreeSet<u32> = cpu_rows(&before.cpus).filter(|c| c.cell == b.id && mine.contains(&c.id)).map(|c| c.core).collect();
            cpu_rows(&before.cpus).filter(|c| c.cell == b.id && cores.contains(&c.core)).map(|c| c.id).collect()
        } else {
            mine.clone()
        };
        if !kept || !mine.is_subset(&moved) || !moved.is_subset(&allowed) {
            return Err(fail(format!("host cell {}'s pinned CPUs changed by other than the placement", b.id)));
        }
    }
    Ok(())
}

/// Why the host refuses to record a claim: Nova's exception name where Nova has one
/// (`CPUPinningUnknown`, `CPUPinningInvalid`, `MemoryPageSizeNotSupported`; a claim that does not
/// fit is Nova's `ComputeResourcesUnavailable`, as its resource tracker's claim test raises).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub code: &'static str,
    pub host_cell: Option<u32>,
    pub cpus: Vec<u32>,
    pub message: String,
}

impl Conflict {
    fn at(code: &'static str, cell: u32, cpus: Vec<u32>, message: String) -> Conflict {
        Conflict { code, host_cell: Some(cell), cpus, message: format!("host cell {cell}: {message}") }
    }
}

/// Pages of `size_kb` covering `memory_mb`, the last one whole.
fn pages_covering(size_kb: u32, memory_mb: u64) -> u128 {
    (u128::from(memory_mb) * 1024).div_ceil(u128::from(size_kb.max(1)))
}

/// Checks, before anything is recorded, that a placement is one a fit on this host could have
/// produced (Nova's `_numa_fit_instance_cell` rules): its CPUs pinnable and free (whole cores
/// under isolate), hugepages within the free ones of their pool, the smallest pages and memory
/// past the cell only as Nova allows it — pinned guests never overcommit, floating ones only up
/// to the RAM allocation ratio when limits are given (per instance within the cell without
/// them) — and floating vCPUs within the shared CPUs and the CPU allocation ratio.
pub fn claimable(host: &wit::Host, p: &wit::Placement, limits: Option<&wit::Limits>) -> Result<(), Conflict> {
    claimable_on(host, &HostIndex::of(host), p, limits)
}

/// `claimable` against an index already built for `host`.
pub fn claimable_on(host: &wit::Host, index: &HostIndex, p: &wit::Placement, limits: Option<&wit::Limits>) -> Result<(), Conflict> {
    let views = &index.cells;
    let pins = matches!(p.cpu_policy, Some(wit::CpuPolicy::Dedicated | wit::CpuPolicy::Mixed));
    let floats = p.cpu_policy != Some(wit::CpuPolicy::Dedicated);
    let isolate = p.thread_policy == Some(wit::ThreadPolicy::Isolate);
    let unavailable = "ComputeResourcesUnavailable";
    for placed in placement_rows(p) {
        let id = placed.host_cell;
        let Some(view) = views.get(&id) else {
            return Err(Conflict {
                code: "UnknownHostCell",
                host_cell: Some(id),
                cpus: vec![],
                message: format!("guest cell {} is placed on host cell {id}, which the host does not have", placed.guest_cell),
            });
        };
        let mut cpus: BTreeSet<u32> = placed.pinning.iter().map(|x| x.1).chain(placed.emulator_pcpus.iter().copied()).collect();
        if isolate {
            let cores: BTreeSet<u32> = cpus.iter().filter_map(|c| view.core_of.get(c)).copied().collect();
            cpus.extend(cores.iter().filter_map(|k| view.cores.get(k)).flatten());
        }
        let unknown: Vec<u32> = cpus.iter().copied().filter(|&c| !view.pinnable.contains(c)).collect();
        if !unknown.is_empty() {
            return Err(Conflict::at(
                "CPUPinningUnknown",
                id,
                unknown.clone(),
                format!("CPUs {} are not pinnable here", crate::cpulist::text(&unknown)),
            ));
        }
        let taken: Vec<u32> = cpus.iter().copied().filter(|&c| view.pinned.contains(c)).collect();
        if !taken.is_empty() {
            return Err(Conflict::at(
                "CPUPinningInvalid",
                id,
                taken.clone(),
                format!("CPUs {} are already pinned", crate::cpulist::text(&taken)),
            ));
        }
        let cell = &host.cells[view.cell];
        let shared_cpus = view.shared as u64;
        let vcpus = placed.shared_vcpus.len() as u64;
        if vcpus > shared_cpus {
            return Err(Conflict::at(unavailable, id, vec![], format!("{vcpus} shared vCPUs, but the cell has {shared_cpus} shared CPUs")));
        }
        let mem = placed.memory_mb;
        let pools: Vec<&wit::PagePool> = host.pages.iter().filter(|pp| pp.cell == id).collect();
        let smallest = pools.iter().min_by_key(|pp| pp.size_kb).copied();
        let (pool, use_free) = match placed.page_size_kb {
            Some(size) => match pools.iter().find(|pp| pp.size_kb == size) {
                Some(pool) => (Some(*pool), true),
                None => {
                    return Err(Conflict::at("MemoryPageSizeNotSupported", id, vec![], format!("no {size} KiB page pool")));
                }
            },
            None => (smallest, pins),
        };
        match pool {
            Some(pool) => {
                let pages = pages_covering(pool.size_kb, mem);
                if (u128::from(mem) * 1024) % u128::from(pool.size_kb) != 0 {
                    return Err(Conflict::at(
                        unavailable,
                        id,
                        vec![],
                        format!("{mem} MiB is not a whole number of {} KiB pages", pool.size_kb),
                    ));
                }
                let free = pool.total.saturating_sub(pool.used.saturating_add(pool.reserved));
                if use_free && pages > u128::from(free) {
                    return Err(Conflict::at(
                        unavailable,
                        id,
                        vec![],
                        format!(
                            "{mem} MiB needs {pages} {} KiB pages; {free} are free (total {}, used {}, reserved {})",
                            pool.size_kb, pool.total, pool.used, pool.reserved
                        ),
                    ));
                }
                if !use_free && pages > u128::from(pool.total) {
                    return Err(Conflict::at(
                        unavailable,
                        id,
                        vec![],
                        format!("{mem} MiB needs {pages} {} KiB pages; the pool has {}", pool.size_kb, pool.total),
                    ));
                }
            }
            None if pins && mem > cell.memory_mb.saturating_sub(cell.memory_used_mb) => {
                let free = cell.memory_mb.saturating_sub(cell.memory_used_mb);
                return Err(Conflict::at(unavailable, id, vec![], format!("{mem} MiB for a pinned guest; {free} MiB are free")));
            }
            None if mem > cell.memory_mb => {
                return Err(Conflict::at(unavailable, id, vec![], format!("{mem} MiB; the cell has {} MiB", cell.memory_mb)));
            }
            None => {}
        }
        if let (true, Some(limits)) = (floats, limits) {
            if let Some(ratio) = limits.cpu_allocation_ratio {
                let usage = u64::from(cell.shared_vcpus_used) + vcpus;
                if usage as f64 > shared_cpus as f64 * ratio {
                    return Err(Conflict::at(
                        unavailable,
                        id,
                        vec![],
                        format!("shared vCPU usage would be {usage}, over {shared_cpus} shared CPUs x cpu_allocation_ratio {ratio}"),
                    ));
                }
            }
            if let Some(ratio) = limits.ram_allocation_ratio {
                let usage = u128::from(cell.memory_used_mb) + u128::from(mem);
                if usage as f64 > cell.memory_mb as f64 * ratio {
                    return Err(Conflict::at(
                        unavailable,
                        id,
                        vec![],
                        format!("memory usage would be {usage} MiB, over {} MiB x ram_allocation_ratio {ratio}", cell.memory_mb),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The host's own admission of a placement onto a host of record, before it is recorded: the
/// checks of `claimable`, then the core's accounting of it (the host after the claim).
pub fn admit(host: &HostTopology, p: &Placement, limits: Option<&wit::Limits>) -> Result<HostTopology, String> {
    let wp = convert::placement_to_wit(p.clone());
    claimable(&crate::contract::host_view(host), &wp, limits).map_err(|c| format!("{}: {}", c.code, c.message))?;
    numafit_plugin::claim(host, p).map_err(|e| e.to_string())
}

/// What `admit` checks, with the host as a plugin is shown it (`shown`, indexed by `index`) and
/// the placement in both forms already at hand: the cells the claim uses as it leaves them, the
/// rest of the host neither validated again nor copied (a fleet judgement scores thousands of
/// hosts it validated when it read them).
pub fn admit_cells_on(
    host: &HostTopology,
    shown: &wit::Host,
    index: &HostIndex,
    wp: &wit::Placement,
    p: &Placement,
    limits: Option<&wit::Limits>,
) -> Result<Vec<numafit_plugin::HostCell>, String> {
    claimable_on(shown, index, wp, limits).map_err(|c| format!("{}: {}", c.code, c.message))?;
    numafit_plugin::claimed_cells(host, p).map_err(|e| e.to_string())
}
