//! Loaded hosts and requests in a long-running caller: bound to the plugin that made them, freed
//! when dropped, and shared by the workers that serve threads in parallel.

mod support;
use support::*;

use numafit_host::runtime::{Plugin, PluginLimits, PluginPool};

#[test]
fn a_handle_is_refused_by_another_plugin_and_never_used_in_a_replaced_instance() {
    let (host, request, limits) = load_case(&fixture("bench/04-8cell-4cell-prefer"));
    let mut a = Plugin::embedded(PluginLimits::default()).unwrap();
    let mut b = Plugin::embedded(PluginLimits::default()).unwrap();
    // Both plugins made exactly one instance: once, their handles looked alike.
    let ha = a.load(host.clone()).unwrap().unwrap();
    let ra = a.load_request(request.clone()).unwrap().unwrap();
    let _hb = b.load(host.clone()).unwrap().unwrap();
    let err = b.fit_loaded(&ha, &request, &limits).expect_err("another plugin's handle is refused");
    assert!(format!("{err:#}").contains("was offered to plugin"), "{err:#}");
    let err = b.fit_loaded_request(&_hb, &ra, &limits).expect_err("another plugin's request is refused");
    assert!(format!("{err:#}").contains("loaded request"), "{err:#}");
    assert!(b.unload(ha).is_err(), "nor may another plugin unload it");
    // A replaced instance (here: the plugin's worker for another thread has its own) never enters
    // a resource of the instance that made the handle: it loads the host into its own instance.
    let ha = a.load(host.clone()).unwrap().unwrap();
    let want = a.fit_loaded(&ha, &request, &limits).unwrap();
    let mut worker = a.worker();
    assert_eq!(format!("{:?}", worker.fit_loaded(&ha, &request, &limits).unwrap()), format!("{want:?}"));
    assert_eq!(format!("{:?}", worker.fit_loaded_request(&ha, &ra, &limits).unwrap()), format!("{want:?}"));
}

#[test]
fn dropping_handles_keeps_the_guests_memory_flat() {
    let (host, request, _) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let cycle = |plugin: &mut Plugin| {
        // Dropped, not unloaded: a caller that forgets to unload leaks nothing.
        let _h = plugin.load(host.clone()).unwrap().unwrap();
        let _r = plugin.load_request(request.clone()).unwrap().unwrap();
    };
    for _ in 0..1_000 {
        cycle(&mut plugin);
    }
    let warm = plugin.memory_bytes().expect("live instance");
    for _ in 0..100_000 {
        cycle(&mut plugin);
    }
    assert_eq!(plugin.memory_bytes(), Some(warm), "100,000 load/drop cycles leave the guest's memory where it was");
}

#[test]
fn four_threads_share_one_policy_and_get_the_serial_answers() {
    let cases: Vec<_> = bench_cases().iter().map(|d| load_case(d)).collect();
    let pool = PluginPool::new(Plugin::embedded(PluginLimits::default()).unwrap());
    // Hosts loaded once, by the pool's plugin, shared by every thread.
    let mut loader = pool.plugin().worker();
    let loaded: Vec<_> = cases.iter().map(|(h, _, _)| loader.load(h.clone()).unwrap().unwrap()).collect();
    let serial: Vec<String> =
        cases.iter().zip(&loaded).map(|((_, r, l), h)| format!("{:?}", loader.fit_loaded(h, r, l).unwrap())).collect();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (pool, cases, loaded, serial) = (&pool, &cases, &loaded, &serial);
                s.spawn(move || {
                    for round in 0..25 {
                        // Mixed: each thread walks the cases in its own order.
                        for k in 0..cases.len() {
                            let i = (k * (t + 1) + round) % cases.len();
                            let mut worker = pool.take();
                            let (_, r, l) = &cases[i];
                            let got = format!("{:?}", worker.fit_loaded(&loaded[i], r, l).unwrap());
                            assert_eq!(got, serial[i], "thread {t}, case {i}");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no thread panicked");
        }
    });
}
