//! Table-driven placement tests over named topologies: each row is a host, a request and the
//! placement Nova's algorithm gives (or the refusal numafit gives where Nova is wrong).

mod common;
use common::*;

use numafit_plugin::{
    fit, CpuPolicy, CpuSet, EmulatorThreads, GuestCell, GuestTopology, Limits, PagePool, PageSizeWish, Rejection, Shortfall, Strategy,
    ThreadPolicy,
};

type Cells = Vec<(u32, Vec<(u32, u32)>, Vec<u32>)>;

enum Expect {
    /// Per guest cell: host cell, (vCPU, pCPU) pinning, emulator pCPUs.
    Fits(Cells),
    /// Summary contains this text, and every per-cell refusal has this shortfall.
    Refused(&'static str, Option<Shortfall>),
}

struct Case {
    name: &'static str,
    host: numafit_plugin::HostTopology,
    guest: GuestTopology,
    limits: Limits,
    expect: Expect,
}

fn pins(pairs: &[(u32, u32)]) -> Vec<(u32, u32)> {
    pairs.to_vec()
}

fn pack() -> Limits {
    Limits { strategy: Strategy::Pack, ..Default::default() }
}

fn with_emulator(mut g: GuestTopology) -> GuestTopology {
    g.emulator_threads = Some(EmulatorThreads::Isolate);
    g
}

fn pinned(mut h: numafit_plugin::HostTopology, cell: usize, cpus: &[u32]) -> numafit_plugin::HostTopology {
    h.cells[cell].pinned_cpus = set(cpus);
    h
}

fn uneven_host() -> numafit_plugin::HostTopology {
    // h0: 8 single-thread cores; h1..h3: 4 each. Same memory, so free CPUs decide the order.
    let mut cells = vec![cell(0, &[&[0], &[1], &[2], &[3], &[4], &[5], &[6], &[7]], 8192)];
    for n in 1..4u32 {
        let base = 4 + n * 4;
        cells.push(cell(n, &[&[base], &[base + 1], &[base + 2], &[base + 3]], 8192));
    }
    host(cells)
}

fn page_leak_host() -> numafit_plugin::HostTopology {
    // h0 has 1 GiB pages, h1 only 2 MiB ones and a single shared CPU.
    let mut h = legacy(host(vec![cell(0, &[&[0], &[1], &[2], &[3]], 8192), cell(1, &[&[4]], 8192)]));
    h.cells[0].mempages =
        vec![PagePool { size_kb: 4, total: 2097152, used: 0, reserved: 0 }, PagePool { size_kb: 1048576, total: 2, used: 0, reserved: 0 }];
    h.cells[1].mempages =
        vec![PagePool { size_kb: 4, total: 2097152, used: 0, reserved: 0 }, PagePool { size_kb: 2048, total: 1024, used: 0, reserved: 0 }];
    h
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        Case {
            name: "prefer packs sibling threads, emptiest cell first",
            host: dual_socket_ht(),
            guest: dedicated(&[(4, 1024)], None),
            limits: Limits::default(),
            expect: Expect::Fits(vec![(0, pins(&[(0, 0), (1, 8), (2, 1), (3, 9)]), vec![])]),
        },
        Case {
            name: "spread tries the cell with more free memory and CPUs first",
            host: used_dual_socket(),
            guest: dedicated(&[(4, 1024)], None),
            limits: Limits::default(),
            expect: Expect::Fits(vec![(1, pins(&[(0, 4), (1, 12), (2, 5), (3, 13)]), vec![])]),
        },
        Case {
            name: "pack tries the fuller cell first and skips its busy core",
            host: used_dual_socket(),
            guest: dedicated(&[(4, 1024)], None),
            limits: pack(),
            expect: Expect::Fits(vec![(0, pins(&[(0, 1), (1, 9), (2, 2), (3, 10)]), vec![])]),
        },
        Case {
            name: "prefer takes whole free pairs before a lone thread",
            host: pinned(dual_socket_ht(), 0, &[0]),
            guest: dedicated(&[(3, 1024)], Some(ThreadPolicy::Prefer)),
            limits: pack(),
            expect: Expect::Fits(vec![(0, pins(&[(0, 1), (1, 9), (2, 2)]), vec![])]),
        },
        Case {
            name: "prefer falls back to single threads in core order",
            host: pinned(dual_socket_ht(), 0, &[0]),
            guest: dedicated(&[(7, 1024)], None),
            limits: pack(),
            expect: Expect::Fits(vec![(0, pins(&[(0, 8), (1, 1), (2, 9), (3, 2), (4, 10), (5, 3), (6, 11)]), vec![])]),
        },
        Case {
            name: "isolate takes one thread of each wholly free core",
            host: dual_socket_ht(),
            guest: dedicated(&[(3, 1024)], Some(ThreadPolicy::Isolate)),
            limits: Limits::default(),
            expect: Expect::Fits(vec![(0, pins(&[(0, 0), (1, 1), (2, 2)]), vec![])]),
        },
        Case {
            name: "isolate skips cores with a pinned sibling",
            host: pinned(dual_socket_ht(), 0, &[0, 8, 9]),
            guest: dedicated(&[(2, 1024)], Some(ThreadPolicy::Isolate)),
            limits: pack(),
            expect: Expect::Fits(vec![(0, pins(&[(0, 2), (1, 3)]), vec![])]),
        },
        Case {
            name: "isolate works on an SMT host with a dedicated CPU set (Nova bug 1889633)",
            host: dual_socket_ht(),
            guest: dedicated(&[(4, 1024), (4, 1024)], Some(ThreadPolicy::Isolate)),
            limits: Limits::default(),
            expect: Expect::Fits(vec![
                (0, pins(&[(0, 0), (1, 1), (2, 2), (3, 3)]), vec![]),
                (1, pins(&[(4, 4), (5, 5), (6, 6), (7, 7)]), vec![]),
            ]),
        },
        Case {
            name: "isolate with too few free cores is refused with the count",
            host: pinned(dual_socket_ht(), 0, &[0]),
            guest: dedicated(&[(4, 1024), (4, 1024)], Some(ThreadPolicy::Isolate)),
            limits: Limits::default(),
            expect: Expect::Refused("no 2 distinct host cells", Some(Shortfall::FreeCores)),
        },
        Case {
            name: "emulator threads isolate under thread isolate get a core of their own",
            host: dual_socket_ht(),
            guest: with_emulator(dedicated(&[(2, 1024)], Some(ThreadPolicy::Isolate))),
            limits: Limits::default(),
            expect: Expect::Fits(vec![(0, pins(&[(0, 0), (1, 1)]), vec![2])]),
        },
        Case {
            name: "emulator threads isolate under prefer take the next free thread",
            host: dual_socket_ht(),
            guest: with_emulator(dedicated(&[(2, 1024)], None)),
            limits: Limits::default(),
            expect: Expect::Fits(vec![(0, pins(&[(0, 0), (1, 8)]), vec![1])]),
        },
        Case {
            name: "emulator CPU is charged to the host cell of guest cell 0 only",
            host: host(vec![cell(0, &[&[0], &[1]], 8192), cell(1, &[&[2], &[3], &[4]], 8192)]),
            guest: with_emulator(dedicated(&[(2, 1024), (2, 1024)], None)),
            limits: Limits::default(),
            expect: Expect::Fits(vec![(1, pins(&[(0, 2), (1, 3)]), vec![4]), (0, pins(&[(2, 0), (3, 1)]), vec![])]),
        },
        Case {
            name: "require packs sibling pairs",
            host: dual_socket_ht(),
            guest: dedicated(&[(3, 1024)], Some(ThreadPolicy::Require)),
            limits: Limits::default(),
            expect: Expect::Fits(vec![(0, pins(&[(0, 0), (1, 8), (2, 1)]), vec![])]),
        },
        Case {
            name: "require on a host without SMT is refused",
            host: four_node(),
            guest: dedicated(&[(2, 1024)], Some(ThreadPolicy::Require)),
            limits: Limits::default(),
            expect: Expect::Refused("fits on no host cell", Some(Shortfall::SiblingThreads)),
        },
        Case {
            name: "the first assignment in Nova's order, found without permutations",
            host: uneven_host(),
            guest: dedicated(&[(4, 1024), (6, 1024), (2, 1024)], None),
            limits: Limits::default(),
            expect: Expect::Fits(vec![
                (1, pins(&[(0, 8), (1, 9), (2, 10), (3, 11)]), vec![]),
                (0, pins(&[(4, 0), (5, 1), (6, 2), (7, 3), (8, 4), (9, 5)]), vec![]),
                (2, pins(&[(10, 12), (11, 13)]), vec![]),
            ]),
        },
        Case {
            name: "a last guest cell that fits nowhere is refused (Nova bug B1 accepts it)",
            host: four_node(),
            guest: dedicated(&[(2, 1024), (2, 1024), (2, 1024), (5, 1024)], None),
            limits: Limits::default(),
            expect: Expect::Refused("guest cell 3 fits on no host cell", Some(Shortfall::PinnableCpus)),
        },
        Case {
            name: "each guest cell fits somewhere but not on distinct cells",
            host: pinned(pinned(pinned(four_node(), 1, &[4, 5]), 2, &[8, 9]), 3, &[12, 13]),
            guest: dedicated(&[(3, 1024), (3, 1024)], None),
            limits: Limits::default(),
            expect: Expect::Refused("no 2 distinct host cells", Some(Shortfall::FreeCpus)),
        },
        Case {
            name: "a pinned guest needs free small pages",
            host: used_dual_socket(),
            guest: dedicated(&[(2, 10000)], None),
            limits: pack(),
            expect: Expect::Fits(vec![(1, pins(&[(0, 4), (1, 12)]), vec![])]),
        },
        Case {
            name: "floating guest larger than any cell's memory",
            host: legacy(four_node()),
            guest: shared(&[(2, 10000)]),
            limits: Limits::default(),
            expect: Expect::Refused("fits on no host cell", Some(Shortfall::Memory)),
        },
        Case {
            name: "a cell with no CPUs never holds guest vCPUs, however much memory it has",
            host: {
                let mut h = legacy(four_node());
                h.cells.push(numafit_plugin::HostCell { id: 9, memory: 1 << 20, ..cell(9, &[], 1 << 20) });
                h.normalized()
            },
            guest: shared(&[(2, 1024)]),
            limits: Limits::default(),
            expect: Expect::Fits(vec![(0, vec![], vec![])]),
        },
        Case {
            name: "a page size is chosen per attempt (Nova leaks it and rejects this)",
            host: page_leak_host(),
            guest: {
                let mut g = shared(&[(1, 1024), (2, 1024)]);
                g.cells.iter_mut().for_each(|c| c.pagesize = Some(PageSizeWish::Large));
                g
            },
            limits: Limits::default(),
            expect: Expect::Fits(vec![(1, vec![], vec![]), (0, vec![], vec![])]),
        },
        Case {
            name: "an explicit page size the cells lack is refused",
            host: dual_socket_ht(),
            guest: {
                let mut g = dedicated(&[(2, 1024)], None);
                g.cells[0].pagesize = Some(PageSizeWish::Kib(1048576));
                g
            },
            limits: Limits::default(),
            expect: Expect::Refused("fits on no host cell", Some(Shortfall::Pages)),
        },
        Case {
            name: "mixed pins the dedicated part and floats the rest",
            host: legacy(dual_socket_ht()),
            guest: GuestTopology {
                cells: vec![GuestCell { cpuset: set(&[0, 1]), pcpuset: set(&[2, 3]), memory: 1024, pagesize: None }],
                cpu_policy: Some(CpuPolicy::Mixed),
                ..Default::default()
            },
            limits: Limits::default(),
            expect: Expect::Fits(vec![(0, pins(&[(2, 0), (3, 8)]), vec![])]),
        },
    ];
    // Ratios: the least used cell first; a cell over its CPU allocation limit refuses.
    let mut ratio_host = legacy(four_node());
    for (i, usage) in [1, 1, 0, 1].into_iter().enumerate() {
        ratio_host.cells[i].cpu_usage = usage;
    }
    v.push(Case {
        name: "spread floats a shared guest on the least used cell",
        host: ratio_host.clone(),
        guest: shared(&[(4, 1024)]),
        limits: Limits { cpu_allocation_ratio: Some(1.0), ram_allocation_ratio: Some(1.0), ..Default::default() },
        expect: Expect::Fits(vec![(2, vec![], vec![])]),
    });
    ratio_host.cells[2].cpu_usage = 1;
    v.push(Case {
        name: "the CPU allocation ratio refuses over-subscribed cells",
        host: ratio_host,
        guest: shared(&[(4, 1024)]),
        limits: Limits { cpu_allocation_ratio: Some(1.0), ram_allocation_ratio: Some(1.0), ..Default::default() },
        expect: Expect::Refused("fits on no host cell", Some(Shortfall::CpuRatio)),
    });
    // A cell that lists page pools but no 4 KiB one: its smallest pool backs guests that ask for
    // no page size (Nova's `_get_smallest_pagesize`), whole pages only, total pages for floating
    // guests and free pages for pinned ones.
    let mut hugepage_only = legacy(four_node());
    for c in &mut hugepage_only.cells {
        c.mempages = vec![PagePool { size_kb: 2048, total: 1024, used: 0, reserved: 0 }];
    }
    hugepage_only.cells[0].mempages[0].used = 1024;
    v.push(Case {
        name: "smallest pool only: a floating guest within the pool's total fits, even on used pages",
        host: hugepage_only.clone(),
        guest: shared(&[(2, 2048)]),
        limits: pack(),
        expect: Expect::Fits(vec![(0, vec![], vec![])]),
    });
    v.push(Case {
        name: "smallest pool only: memory beyond the pool's total is refused though the cell has more",
        host: hugepage_only.clone(),
        guest: shared(&[(2, 4096)]),
        limits: Limits::default(),
        expect: Expect::Refused("fits on no host cell", Some(Shortfall::Memory)),
    });
    v.push(Case {
        name: "smallest pool only: memory that is not a whole number of 2 MiB pages is refused",
        host: hugepage_only.clone(),
        guest: shared(&[(2, 1023)]),
        limits: Limits::default(),
        expect: Expect::Refused("fits on no host cell", Some(Shortfall::Pages)),
    });
    v.push(Case {
        name: "smallest pool only: a pinned guest needs free pages",
        host: hugepage_only,
        guest: dedicated(&[(2, 2048)], None),
        limits: pack(),
        expect: Expect::Fits(vec![(1, pins(&[(0, 4), (1, 5)]), vec![])]),
    });
    // A mixed cell without dedicated vCPUs has nothing to isolate, and nothing to put isolated
    // emulator threads beside: Nova refuses it.
    let no_dedicated = |thread: Option<ThreadPolicy>| GuestTopology {
        cells: vec![
            GuestCell { cpuset: set(&[0, 1]), pcpuset: CpuSet::new(), memory: 1024, pagesize: None },
            GuestCell { cpuset: set(&[2]), pcpuset: set(&[3]), memory: 1024, pagesize: None },
        ],
        cpu_policy: Some(CpuPolicy::Mixed),
        thread_policy: thread,
        ..Default::default()
    };
    v.push(Case {
        name: "mixed cell without dedicated vCPUs under isolate is refused",
        host: legacy(four_node()),
        guest: no_dedicated(Some(ThreadPolicy::Isolate)),
        limits: Limits::default(),
        expect: Expect::Refused("guest cell 0 fits on no host cell", Some(Shortfall::PinnableCpus)),
    });
    v.push(Case {
        name: "mixed cell 0 without dedicated vCPUs under emulator threads isolate is refused",
        host: legacy(four_node()),
        guest: with_emulator(no_dedicated(None)),
        limits: Limits::default(),
        expect: Expect::Refused("guest cell 0 fits on no host cell", Some(Shortfall::PinnableCpus)),
    });
    v.push(Case {
        name: "mixed cell without dedicated vCPUs under prefer floats",
        host: legacy(four_node()),
        guest: no_dedicated(None),
        limits: Limits::default(),
        expect: Expect::Fits(vec![(0, vec![], vec![]), (1, pins(&[(3, 4)]), vec![])]),
    });
    // Cores of different widths (a 1-thread core first, then 2-thread cores): Nova's isolate puts
    // vCPUs only on wholly free cores of the cell's full width, and the emulator thread on the
    // first wholly free core left, of any width.
    let mixed_width = host(vec![cell(0, &[&[0], &[1, 5], &[2, 6], &[3, 7]], 8192)]);
    v.push(Case {
        name: "isolate with isolated emulator on cores of mixed width follows Nova's order",
        host: mixed_width.clone(),
        guest: with_emulator(dedicated(&[(2, 1024)], Some(ThreadPolicy::Isolate))),
        limits: Limits::default(),
        expect: Expect::Fits(vec![(0, pins(&[(0, 1), (1, 2)]), vec![0])]),
    });
    v.push(Case {
        name: "isolate never puts a vCPU on a narrower core",
        host: mixed_width,
        guest: dedicated(&[(4, 1024)], Some(ThreadPolicy::Isolate)),
        limits: Limits::default(),
        expect: Expect::Refused("fits on no host cell", Some(Shortfall::FreeCores)),
    });
    v
}

fn summary(r: &Rejection) -> String {
    let mut s = r.summary.clone();
    for c in &r.refusals {
        s.push_str("\n  ");
        s.push_str(&c.detail);
    }
    s
}

#[test]
fn placements_match_the_table() {
    let mut failures = Vec::new();
    for case in cases() {
        let got = fit(&case.host, &case.guest, &case.limits);
        let ok = match (&case.expect, &got) {
            (Expect::Fits(want), Ok(p)) => {
                let have: Cells = p.cells.iter().map(|c| (c.host_cell, c.pinning.clone(), c.emulator.clone())).collect();
                if &have != want {
                    failures.push(format!("{}: expected {want:?}, got {have:?}", case.name));
                }
                true
            }
            (Expect::Refused(text, shortfall), Err(r)) => {
                if !r.summary.contains(text) {
                    failures.push(format!("{}: summary {:?} lacks {text:?}", case.name, r.summary));
                }
                if let Some(s) = shortfall {
                    if !r.refusals.iter().any(|c| c.refusal.shortfall == *s) {
                        failures.push(format!("{}: no refusal with {s:?}:\n{}", case.name, summary(r)));
                    }
                }
                true
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: unexpected answer {:?}", case.name, got.map_err(|r| summary(&r))));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn rejections_carry_numbers_and_name_the_busy_cores() {
    let h = pinned(dual_socket_ht(), 0, &[1, 2]);
    let g = dedicated(&[(3, 1024)], Some(ThreadPolicy::Isolate));
    let mut h1 = h.clone();
    h1.cells[1].pinned_cpus = set(&[4, 13]);
    let r = fit(&h1, &g, &Limits::default()).unwrap_err();
    let on0 = r.refusals.iter().find(|c| c.host_cell == 0).expect("a refusal for host cell 0");
    assert_eq!((on0.refusal.shortfall, on0.refusal.needed, on0.refusal.available), (Shortfall::FreeCores, 3, 2));
    assert!(
        on0.detail.contains("guest cell 0 (3 dedicated vCPUs, isolate, 1024 MiB) on host cell 0: 2 fully free cores, needs 3"),
        "{}",
        on0.detail
    );
    assert!(on0.detail.contains("{1,9}") && on0.detail.contains("{2,10}"), "{}", on0.detail);
}

#[test]
fn every_host_passes_a_request_without_numa_constraint() {
    let p = fit(&dual_socket_ht(), &GuestTopology::default(), &Limits::default()).expect("no constraint fits");
    assert!(p.cells.is_empty());
}

#[test]
fn a_host_with_fewer_cells_than_the_guest_is_refused() {
    let r = fit(&host(vec![cell(0, &[&[0], &[1]], 4096)]), &dedicated(&[(1, 512), (1, 512)], None), &Limits::default()).unwrap_err();
    assert!(r.summary.contains("1 NUMA cells, the guest needs 2"), "{}", r.summary);
}

#[test]
fn invalid_hosts_are_refused_not_trusted() {
    let mut h = dual_socket_ht();
    h.cells[1].pcpuset.insert(0);
    let e = h.validate().unwrap_err();
    assert!(e.contains("CPUs {0} also belong to another cell"), "{e}");
    let _ = CpuSet::new();
}
