//! Property tests on random hosts and requests (1,000 cases each): the search gives exactly the
//! answer of Nova's permutation walk; a placement never pins a CPU twice or outside its cell's free
//! pinnable set, never exceeds a cell's memory, and always claims cleanly; release undoes claim;
//! a pinning plan decided from a cell's counts always has the CPUs it promised; a batch's columns
//! read back as each host's own fit, for both policies; every refusal of a rejection is its own
//! cell check's, in its own words. Half the guests ask the same of every cell, as flavors do.

use numafit_plugin::cores::FreeCores;
use numafit_plugin::fit::fit_cell;
use numafit_plugin::pinning::{self, Packing};
use numafit_plugin::placement::describe_refusal;
use numafit_plugin::scoring::cell_order;
use numafit_plugin::{
    claim, fit, release, CpuPolicy, CpuSet, EmulatorThreads, GuestCell, GuestTopology, HostCell, HostTopology, Limits, Named,
    PackedPlacements, PagePool, PageSizeWish, Placement, Policy, PreparedHost, Strategy as CellOrder, ThreadPolicy, ValidRequest,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct CellSpec {
    cores: u32,
    threads: u32,
    memory: u64,
    pinnable_mask: u64,
    pinned_mask: u64,
    legacy: bool,
    used_frac: u8,
    huge_total: u64,
    huge_used: u64,
    cpu_usage: u32,
}

fn cell_spec() -> impl Strategy<Value = CellSpec> {
    (1u32..=5, 1u32..=4, 1u64..=16, any::<u64>(), any::<u64>(), any::<bool>(), 0u8..=4, 0u64..=8, 0u64..=8, 0u32..=8).prop_map(
        |(cores, threads, gib, pinnable_mask, pinned_mask, legacy, used_frac, huge_total, huge_used, cpu_usage)| CellSpec {
            cores,
            threads: if threads == 3 { 2 } else { threads },
            memory: gib * 1024,
            // Most CPUs pinnable, some pinned: masks thinned by AND-ing with rotations.
            pinnable_mask: pinnable_mask | pinnable_mask.rotate_left(7),
            pinned_mask: pinned_mask & pinned_mask.rotate_left(13) & pinned_mask.rotate_left(29),
            legacy,
            used_frac,
            huge_total: huge_total * 256,
            huge_used: huge_used.min(huge_total) * 256,
            cpu_usage,
        },
    )
}

fn build_host(specs: &[CellSpec]) -> HostTopology {
    let mut next = 0u32;
    let cells = specs
        .iter()
        .enumerate()
        .map(|(id, s)| {
            let mut siblings = Vec::new();
            let mut pcpuset = CpuSet::new();
            let mut pinned = CpuSet::new();
            let mut all = CpuSet::new();
            for _ in 0..s.cores {
                let core: CpuSet = (next..next + s.threads).collect();
                for cpu in core.iter() {
                    let bit = (cpu - next + siblings.len() as u32 * s.threads) % 64;
                    all.insert(cpu);
                    if s.pinnable_mask >> bit & 1 == 1 {
                        pcpuset.insert(cpu);
                        if s.pinned_mask >> bit & 1 == 1 {
                            pinned.insert(cpu);
                        }
                    }
                }
                next += s.threads;
                siblings.push(core);
            }
            // Hugepages are carved out of the cell's memory; small pages are the rest.
            let huge_total = s.huge_total.min(s.memory / 2 / 2);
            let huge_used = s.huge_used.min(huge_total);
            let small_mb = s.memory - huge_total * 2;
            let used_mb = small_mb * u64::from(s.used_frac) / 4;
            HostCell {
                id: id as u32,
                cpuset: if s.legacy { all } else { CpuSet::new() },
                pcpuset,
                memory: s.memory,
                cpu_usage: s.cpu_usage,
                memory_usage: used_mb,
                pinned_cpus: pinned,
                host_cpus: CpuSet::new(),
                siblings,
                cache_groups: vec![],
                mempages: vec![
                    PagePool { size_kb: 4, total: small_mb * 256, used: used_mb * 256, reserved: 0 },
                    PagePool { size_kb: 2048, total: huge_total, used: huge_used, reserved: 0 },
                ],
                socket: Some(id as u32 / 2),
                network_metadata: None,
            }
        })
        .collect();
    HostTopology { cells, distances: vec![], pci_pools: vec![] }.normalized()
}

#[derive(Clone, Debug)]
struct GuestSpec {
    cells: Vec<(u32, u32, u64)>,
    policy: u8,
    thread: u8,
    emulator: bool,
    pagesize: u8,
}

fn guest_spec() -> impl Strategy<Value = GuestSpec> {
    // `even`: every cell asks what the first asks, as a flavor split evenly over its cells does.
    (prop::collection::vec((1u32..=4, 0u32..=2, 1u64..=8), 1..=3), 0u8..3, 0u8..4, any::<bool>(), 0u8..5, any::<bool>()).prop_map(
        |(cells, policy, thread, emulator, pagesize, even)| GuestSpec {
            cells: cells.iter().map(|&(d, s, m)| if even { cells[0] } else { (d, s, m) }).map(|(d, s, m)| (d, s, m * 512)).collect(),
            policy,
            thread,
            emulator,
            pagesize,
        },
    )
}

fn build_guest(s: &GuestSpec) -> GuestTopology {
    let policy = [CpuPolicy::Dedicated, CpuPolicy::Shared, CpuPolicy::Mixed][s.policy as usize];
    let mut next = 0;
    let cells = s
        .cells
        .iter()
        .map(|&(dedicated, extra_shared, memory)| {
            let (d, sh) = match policy {
                CpuPolicy::Dedicated => (dedicated, 0),
                CpuPolicy::Shared => (0, dedicated),
                CpuPolicy::Mixed => (dedicated, extra_shared.max(1)),
            };
            let pcpuset: CpuSet = (next..next + d).collect();
            let cpuset: CpuSet = (next + d..next + d + sh).collect();
            next += d + sh;
            let pagesize =
                [None, Some(PageSizeWish::Small), Some(PageSizeWish::Large), Some(PageSizeWish::Any), Some(PageSizeWish::Kib(2048))]
                    [s.pagesize as usize];
            GuestCell { cpuset, pcpuset, memory, pagesize }
        })
        .collect();
    let pins = policy != CpuPolicy::Shared;
    GuestTopology {
        cells,
        cpu_policy: Some(policy),
        thread_policy: if pins {
            [None, Some(ThreadPolicy::Prefer), Some(ThreadPolicy::Isolate), Some(ThreadPolicy::Require)][s.thread as usize]
        } else {
            None
        },
        emulator_threads: (pins && s.emulator).then_some(EmulatorThreads::Isolate),
        pci_requests: vec![],
    }
}

fn limits_for(ratios: bool, pack: bool) -> Limits {
    Limits {
        cpu_allocation_ratio: ratios.then_some(2.0),
        ram_allocation_ratio: ratios.then_some(1.0),
        network: None,
        strategy: if pack { CellOrder::Pack } else { CellOrder::Spread },
    }
}

/// Per placed cell: host cell, (vCPU, pCPU) pairs, emulator CPUs, page size.
type Summary = Vec<(u32, Vec<(u32, u32)>, Vec<u32>, Option<u32>)>;

/// Nova's walk, literally: every permutation of the ordered host cells, first one where all fit.
fn brute_force(host: &HostTopology, guest: &GuestTopology, limits: &Limits) -> Option<Summary> {
    let prepared = numafit_plugin::PreparedHost::borrowed(host);
    let order = cell_order(&prepared, guest, limits.strategy);
    let k = guest.cells.len();
    fn perms(items: &[usize], k: usize, prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if prefix.len() == k {
            out.push(prefix.clone());
            return;
        }
        for &i in items {
            if !prefix.contains(&i) {
                prefix.push(i);
                perms(items, k, prefix, out);
                prefix.pop();
            }
        }
    }
    let mut all = Vec::new();
    perms(order, k, &mut Vec::new(), &mut all);
    'perm: for perm in all {
        let mut cells = Vec::new();
        for (g, &h) in perm.iter().enumerate() {
            let emulator = usize::from(g == 0 && guest.emulator_isolated());
            match fit_cell(&host.cells[h], &guest.cells[g], guest, limits, emulator) {
                Ok((f, pinning)) => cells.push((f.host_cell, pinning.pairs, pinning.emulator, f.pagesize_kb)),
                Err(_) => continue 'perm,
            }
        }
        return Some(cells);
    }
    None
}

fn summary(p: &Placement) -> Summary {
    p.cells.iter().map(|c| (c.host_cell, c.pinning.clone(), c.emulator.clone(), c.pagesize_kb)).collect()
}

fn scenario() -> impl Strategy<Value = (HostTopology, GuestTopology, Limits)> {
    (prop::collection::vec(cell_spec(), 2..=5), guest_spec(), any::<bool>(), any::<bool>())
        .prop_map(|(cells, guest, ratios, pack)| (build_host(&cells), build_guest(&guest), limits_for(ratios, pack)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn search_equals_the_permutation_walk((host, guest, limits) in scenario()) {
        let got = fit(&host, &guest, &limits).ok().map(|p| summary(&p));
        let want = if host.cells.len() < guest.cells.len() { None } else { brute_force(&host, &guest, &limits) };
        prop_assert_eq!(got, want);
    }

    #[test]
    fn placements_are_sound_and_claim_cleanly((host, guest, limits) in scenario()) {
        if let Ok(p) = fit(&host, &guest, &limits) {
            let mut seen = CpuSet::new();
            let mut cells_seen = Vec::new();
            for c in &p.cells {
                prop_assert!(!cells_seen.contains(&c.host_cell), "host cell {} used twice", c.host_cell);
                cells_seen.push(c.host_cell);
                let cell = host.cell(c.host_cell).expect("placed on an existing cell");
                prop_assert!(c.memory <= cell.memory, "memory {} over cell {}", c.memory, cell.memory);
                for cpu in c.pinned_pcpus().iter() {
                    prop_assert!(seen.insert(cpu), "pCPU {} pinned twice", cpu);
                    prop_assert!(cell.free_pcpus().contains(cpu), "pCPU {} not free and pinnable on cell {}", cpu, cell.id);
                }
                prop_assert_eq!(c.pcpuset(), guest.cells[c.guest_cell as usize].pcpuset.clone());
            }
            let claimed = claim(&host, &p);
            prop_assert!(claimed.is_ok(), "fit's placement must claim: {:?}", claimed.err());
        }
    }

    #[test]
    fn release_undoes_claim((host, guest, limits) in scenario()) {
        if let Ok(p) = fit(&host, &guest, &limits) {
            let claimed = claim(&host, &p).expect("claims");
            prop_assert_eq!(release(&claimed, &p).expect("releases"), host.clone());
            // Claiming the same placement twice always collides when it pins anything.
            if p.pins() && p.cells.iter().any(|c| !c.pinning.is_empty()) {
                prop_assert!(claim(&claimed, &p).is_err());
            }
        }
    }

    #[test]
    fn balanced_fits_exactly_when_nova_does_and_its_placements_claim((host, guest, limits) in scenario()) {
        let nova = fit(&host, &guest, &limits);
        let balanced = Policy::Balanced.fit(&host, &guest, &limits);
        prop_assert_eq!(nova.is_ok(), balanced.is_ok(), "the same per-cell rules admit the same hosts");
        if let Ok(p) = balanced {
            let claimed = claim(&host, &p);
            prop_assert!(claimed.is_ok(), "balanced placement must claim: {:?}", claimed.err());
            prop_assert_eq!(release(&claimed.unwrap(), &p).unwrap(), host.clone());
        }
    }

    #[test]
    fn a_batch_reads_back_as_each_hosts_own_fit(
        hosts in prop::collection::vec(prop::collection::vec(cell_spec(), 2..=5), 1..=4),
        guest in guest_spec(),
        ratios in any::<bool>(),
        pack in any::<bool>(),
    ) {
        let (guest, limits) = (build_guest(&guest), limits_for(ratios, pack));
        let guest = ValidRequest::owned(guest).expect("the generator makes valid requests");
        let hosts: Vec<PreparedHost> = hosts.iter().map(|h| PreparedHost::owned(build_host(h))).collect();
        for policy in [Policy::Nova, Policy::Balanced] {
            // A refusal's page size is not an answer's (the contract has no field for it; its
            // sentence names it): a batch, being the contract's shape, does not keep it.
            let each: Vec<_> = hosts
                .iter()
                .map(|h| {
                    policy.fit_valid(h, &guest, &limits).map_err(|mut r| {
                        r.refusals.iter_mut().for_each(|c| c.refusal.page_size_kb = None);
                        r
                    })
                })
                .collect();
            prop_assert_eq!(policy.fit_batch(&hosts, &guest, &limits).answers(), Ok(each.clone()));
            // Packed (contract 0.5): the placements read back by the request they leave out.
            prop_assert_eq!(policy.fit_batch_packed(&hosts, &guest, &limits).answers(guest.get(), policy.name()), Ok(each));
            for h in &hosts {
                let mut packed = PackedPlacements::default();
                let answer = policy.fit_packed(h, &guest, &limits, &mut packed);
                let read = packed.read(guest.get(), policy.name());
                match policy.fit_valid(h, &guest, &limits) {
                    Ok(p) => prop_assert_eq!((answer, read), (Ok(()), Ok(vec![p]))),
                    Err(r) => prop_assert_eq!((answer, read), (Err(r), Ok(vec![]))),
                }
            }
        }
    }

    #[test]
    fn each_refusal_is_the_cell_checks_own_in_its_own_words((host, guest, limits) in scenario()) {
        // Guest cells that ask alike share their checks and sentences inside a search: each
        // refusal must still be what checking that pair alone gives, worded for that guest cell.
        for policy in [Policy::Nova, Policy::Balanced] {
            let Err(rejection) = policy.fit(&host, &guest, &limits) else { continue };
            for r in &rejection.refusals {
                let (g, cell) = (r.guest_cell as usize, host.cell(r.host_cell).expect("a refusal names a host cell"));
                let emulator = usize::from(g == 0 && guest.emulator_isolated());
                let packing = if policy == Policy::Nova { Packing::Nova } else { Packing::KeepCoresWhole };
                let alone = numafit_plugin::fit::fit_cell_packed(
                    cell, &FreeCores::of(cell), &guest.cells[g], &guest, &limits, emulator, packing,
                );
                prop_assert_eq!(alone.as_ref().err(), Some(&r.refusal), "guest cell {} on host cell {}", g, r.host_cell);
                prop_assert_eq!(&r.detail, &describe_refusal(g, &guest.cells[g], &guest, cell, &r.refusal));
            }
        }
    }

    #[test]
    fn a_plan_from_counts_has_the_cpus_it_promised(
        spec in cell_spec(),
        vcpus in 0usize..=12,
        emulator in 0usize..=1,
        policy in 0usize..3,
        keep_whole in any::<bool>(),
    ) {
        let host = build_host(&[spec]);
        let cell = &host.cells[0];
        let cores = FreeCores::of(cell);
        let policy = [ThreadPolicy::Prefer, ThreadPolicy::Isolate, ThreadPolicy::Require][policy];
        let packing = if keep_whole { Packing::KeepCoresWhole } else { Packing::Nova };
        let guest: CpuSet = (0..vcpus as u32).collect();
        if let Ok(plan) = pinning::plan(&cores, vcpus, emulator, policy, packing) {
            let pinned = pinning::pin(plan, cell, &cores, &guest.to_vec(), emulator);
            prop_assert_eq!(pinned.pairs.iter().map(|&(v, _)| v).collect::<Vec<_>>(), guest.iter().collect::<Vec<_>>());
            prop_assert_eq!(pinned.emulator.len(), emulator);
            let free = cell.free_pcpus();
            let used: Vec<u32> = pinned.pairs.iter().map(|&(_, p)| p).chain(pinned.emulator.iter().copied()).collect();
            let distinct: CpuSet = used.iter().copied().collect();
            prop_assert_eq!(distinct.len(), used.len(), "a CPU taken twice: {:?}", used);
            prop_assert!(distinct.is_subset(&free), "{:?} outside the free pinnable {}", used, free);
            if policy == ThreadPolicy::Isolate {
                // Every vCPU on a wholly free core of its own.
                for &(_, p) in &pinned.pairs {
                    let core = cell.siblings.iter().find(|c| c.contains(p)).expect("every CPU has a core");
                    prop_assert!(core.is_subset(&free));
                }
            }
        }
    }
}
