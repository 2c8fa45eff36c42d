//! The sentence `fit` gives a person for each refusal, one row per shortfall: the wording operators
//! read (and grep) stays put, numbers, plurals and all.

mod common;
use common::*;

use numafit_plugin::placement::describe_refusal;
use numafit_plugin::{EmulatorThreads, Refusal, Shortfall, ThreadPolicy};

#[test]
fn every_shortfall_reads_as_a_sentence_with_its_numbers() {
    // Host cell 3: cores {0,4} {1,5} {2,6} {3,7}; CPUs 0 and 5 pinned.
    let mut host = cell(3, &[&[0, 4], &[1, 5], &[2, 6], &[3, 7]], 4096);
    host.pinned_cpus = set(&[0, 5]);
    let pinned = dedicated(&[(2, 1024)], None);
    let isolate = dedicated(&[(3, 1024)], Some(ThreadPolicy::Isolate));
    let mut emulator = dedicated(&[(2, 1024)], None);
    emulator.emulator_threads = Some(EmulatorThreads::Isolate);
    let floating = shared(&[(4, 2048)]);
    let odd = dedicated(&[(2, 1023)], None);
    let pages = |r: Refusal, kb: u32| r.with_page_size(kb);
    let cases: Vec<(&str, &numafit_plugin::GuestTopology, Refusal, &str)> = vec![
        ("no cpus", &pinned, Refusal::new(Shortfall::NoCpus, 2, 0), "the cell has no CPUs"),
        (
            "memory over ratio",
            &floating,
            Refusal::new(Shortfall::Memory, 6144, 4096),
            "memory usage would be 6144 MiB, over the allocation limit of 4096 MiB",
        ),
        ("memory", &pinned, Refusal::new(Shortfall::Memory, 1024, 512), "512 MiB available, needs 1024 MiB"),
        ("no pool", &pinned, pages(Refusal::new(Shortfall::Pages, 512, 0), 1048576), "no 1048576 KiB page pool"),
        (
            "not whole pages",
            &odd,
            // `needed` counts pages (the last one whole) in every pages refusal.
            pages(Refusal::new(Shortfall::Pages, 512, 1024), 2048),
            "1023 MiB is not a whole number of 2048 KiB pages",
        ),
        ("free pages", &pinned, pages(Refusal::new(Shortfall::Pages, 512, 10), 2048), "10 free 2048 KiB pages, needs 512"),
        ("any pool", &pinned, Refusal::new(Shortfall::Pages, 512, 0), "no page pool of a suitable size"),
        ("pinnable", &pinned, Refusal::new(Shortfall::PinnableCpus, 2, 1), "1 CPU pinnable, needs 2"),
        (
            "pinnable with emulator",
            &emulator,
            Refusal::new(Shortfall::PinnableCpus, 3, 2),
            "2 CPUs pinnable, needs 3 incl. 1 for emulator threads",
        ),
        ("shared", &floating, Refusal::new(Shortfall::SharedCpus, 4, 1), "1 shared CPU for floating vCPUs, needs 4"),
        ("free", &pinned, Refusal::new(Shortfall::FreeCpus, 8, 6), "6 CPUs free pinnable, needs 8 (pinned: {0,5})"),
        (
            "free cores",
            &isolate,
            Refusal::new(Shortfall::FreeCores, 3, 2),
            "2 fully free cores, needs 3 (cores {0,4},{1,5} hold pinned or unpinnable CPUs)",
        ),
        ("no smt", &pinned, Refusal::new(Shortfall::SiblingThreads, 2, 1), "the cell has no hyperthread siblings (thread policy require)"),
        (
            "siblings",
            &pinned,
            Refusal::new(Shortfall::SiblingThreads, 4, 3),
            "3 free threads on cores with 2 or more free siblings, needs 4",
        ),
        (
            "emulator",
            &emulator,
            Refusal::new(Shortfall::EmulatorCpu, 3, 6),
            "no CPU left for the emulator threads after the vCPUs (6 free)",
        ),
        ("ratio", &floating, Refusal::new(Shortfall::CpuRatio, 40, 32), "shared vCPU usage would be 40, over the allocation limit of 32"),
    ];
    for (name, guest, refusal, why) in cases {
        let asks = match name {
            "memory over ratio" | "shared" | "ratio" => "4 shared vCPUs, 2048 MiB",
            "free cores" => "3 dedicated vCPUs, isolate, 1024 MiB",
            "not whole pages" => "2 dedicated vCPUs, 1023 MiB",
            _ => "2 dedicated vCPUs, 1024 MiB",
        };
        let want = format!("guest cell 0 ({asks}) on host cell 3: {why}");
        assert_eq!(describe_refusal(0, &guest.cells[0], guest, &host, &refusal), want, "{name}");
    }
}
