//! End-to-end tests of the host runtime driving real components: the embedded `nova` component
//! answers exactly what the same core answers natively on every benchmark case, whether the host
//! crosses with each call or is loaded once (`host-state`); a hostile plugin that loops, bombs
//! memory, panics or lies is contained and named, and the host keeps working; a plugin built
//! against contract 0.1 still loads and answers.

mod support;
use support::*;

use numafit_host::runtime::{placement_rows, wit, FitBatch, Plugin, PluginError, PluginLimits};
use numafit_host::verify;

/// The case read into the core's model, for the native side of comparisons.
fn native_case(dir: &std::path::Path) -> (numafit_plugin::HostTopology, numafit_plugin::GuestTopology, numafit_plugin::Limits) {
    use numafit_host::formats::{self, HostJson, LimitsJson, RequestJson};
    let host = formats::read_json::<HostJson>(&dir.join("host.json")).unwrap().to_record("host.json").unwrap().normalized();
    let guest = formats::read_json::<RequestJson>(&dir.join("request.json")).unwrap().to_guest("request.json").unwrap();
    let limits = if dir.join("limits.json").exists() {
        formats::read_json::<LimitsJson>(&dir.join("limits.json")).unwrap().to_core("limits.json", Default::default()).unwrap()
    } else {
        Default::default()
    };
    (host, guest, limits)
}

/// One placed guest cell as the tests compare it: host cell, pinning, emulator CPUs, page size.
type PlacedCell = (u32, Vec<(u32, u32)>, Vec<u32>, Option<u32>);

fn native(dir: &std::path::Path) -> Result<Vec<PlacedCell>, String> {
    let (host, guest, limits) = native_case(dir);
    numafit_plugin::fit(&host, &guest, &limits)
        .map(|p| p.cells.iter().map(|c| (c.host_cell, c.pinning.clone(), c.emulator.clone(), c.pagesize_kb)).collect())
        .map_err(|r| r.summary)
}

/// A host loaded once, then a request loaded once too, get exactly what the stateless call answered.
fn assert_loaded_answers(
    plugin: &mut Plugin,
    dir: &std::path::Path,
    (host, request, limits): (&wit::Host, &wit::Request, &wit::Limits),
    stateless: &Result<wit::Placement, wit::Rejection>,
) {
    let loaded = plugin.load(host.clone()).expect("no trap").expect("valid host");
    let again = plugin.fit_loaded(&loaded, request, limits).expect("no trap");
    assert_eq!(format!("{again:?}"), format!("{stateless:?}"), "{}: loaded host vs stateless", dir.display());
    let loaded_request = plugin.load_request(request.clone()).expect("no trap").expect("valid request");
    let both = plugin.fit_loaded_request(&loaded, &loaded_request, limits).expect("no trap");
    assert_eq!(format!("{both:?}"), format!("{stateless:?}"), "{}: loaded request vs stateless", dir.display());
    plugin.unload_request(loaded_request).expect("unloads");
    plugin.unload(loaded).expect("unloads");
}

#[test]
fn the_component_answers_what_the_native_core_answers_on_every_bench_case() {
    let mut plugin = Plugin::embedded(PluginLimits::default()).expect("embedded plugin loads");
    let cases = bench_cases();
    assert!(cases.len() >= 14, "bench fixtures present");
    for dir in cases {
        let (host, request, limits) = load_case(&dir);
        let answer = plugin.fit(&host, &request, &limits).expect("no trap");
        let got = match &answer {
            Ok(p) => {
                verify::placement(plugin.name(), &host, &request, p).expect("the host accepts the placement");
                Ok(placement_rows(p).into_iter().map(|c| (c.host_cell, c.pinning, c.emulator_pcpus, c.page_size_kb)).collect())
            }
            Err(r) => Err(r.summary.clone()),
        };
        assert_eq!(got, native(&dir), "{}", dir.display());
        assert_loaded_answers(&mut plugin, &dir, (&host, &request, &limits), &answer);
        // Each fitting placement claims cleanly through the component.
        if let Ok(p) = &answer {
            let after = plugin.claim(&host, p).expect("no trap").expect("claims");
            verify::accounting(plugin.name(), &host, &after, p, true).expect("honest claim");
        }
    }
}

#[test]
fn the_balanced_component_answers_what_the_native_balanced_policy_answers() {
    let mut plugin = Plugin::embedded_named("balanced", PluginLimits::default()).expect("embedded balanced policy");
    assert_eq!(plugin.info().unwrap().name, "balanced");
    for dir in bench_cases() {
        let (host, request, limits) = load_case(&dir);
        let got = plugin
            .fit(&host, &request, &limits)
            .expect("no trap")
            .map(|p| placement_rows(&p).into_iter().map(|c| (c.host_cell, c.pinning)).collect::<Vec<_>>());
        let (nhost, nguest, nlimits) = native_case(&dir);
        let want = numafit_plugin::Policy::Balanced
            .fit(&nhost, &nguest, &nlimits)
            .map(|p| p.cells.iter().map(|c| (c.host_cell, c.pinning.clone())).collect::<Vec<_>>());
        assert_eq!(got.map_err(|r| r.summary), want.map_err(|r| r.summary), "{}", dir.display());
        let stateless = plugin.fit(&host, &request, &limits).unwrap();
        if let Ok(p) = &stateless {
            verify::placement(plugin.name(), &host, &request, p).expect("the host accepts it");
        }
        assert_loaded_answers(&mut plugin, &dir, (&host, &request, &limits), &stateless);
    }
}

#[test]
fn bench_answers_where_nova_is_wrong_or_slow() {
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let answer = |name: &str, plugin: &mut Plugin| {
        let (h, r, l) = load_case(&fixture(&format!("bench/{name}")));
        plugin.fit(&h, &r, &l).expect("no trap")
    };
    // Nova refuses isolate on an SMT host with a dedicated set (bug 1889633); numafit places it.
    assert!(answer("03-8cell-4cell-isolate", &mut plugin).is_ok());
    // Nova wrongly accepts guests whose last cell fits nowhere.
    for case in [
        "08-8cell-4cell-last-fits-nowhere",
        "09-8cell-7cell-last-fits-nowhere",
        "11-16cell-8cell-last-fits-nowhere",
        "12-64cell-16cell-last-fits-nowhere",
    ] {
        let r = answer(case, &mut plugin).expect_err(case);
        assert!(r.summary.contains("fits on no host cell"), "{case}: {}", r.summary);
    }
    // Nova walks 518,918,400 permutations and never answers; numafit refuses at once.
    assert!(answer("14-16cell-8cell-too-big", &mut plugin).is_err());
    let p = answer("13-64cell-16cell-fits", &mut plugin).expect("fits");
    assert_eq!(p.cells.len(), 16);
}

#[test]
fn fit_many_answers_each_host_in_one_call() {
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let (fits, request, limits) = load_case(&fixture("bench/04-8cell-4cell-prefer"));
    let (too_small, _, _) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let answers = plugin.fit_many(&[fits.clone(), too_small, fits], &request, &limits).expect("no trap");
    assert_eq!(answers.len(), 3);
    assert!(answers[0].is_ok() && answers[2].is_ok());
    assert!(answers[1].as_ref().unwrap_err().summary.contains("2 NUMA cells, the guest needs 4"));
}

#[test]
fn fit_loaded_answers_each_loaded_host_in_one_call() {
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let (fits, request, limits) = load_case(&fixture("bench/04-8cell-4cell-prefer"));
    let (too_small, _, _) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let mut bad = fits.clone();
    bad.cpus.cores.pop();
    let mut hosts = Vec::new();
    for h in [fits.clone(), too_small, fits] {
        hosts.push(plugin.load(h).expect("no trap").expect("valid host"));
    }
    let answers = plugin.fit_loaded_many(&hosts, &request, &limits).expect("no trap");
    assert_eq!(answers.len(), 3);
    assert!(answers[0].is_ok() && answers[2].is_ok());
    assert!(answers[1].as_ref().unwrap_err().summary.contains("2 NUMA cells, the guest needs 4"));
    // An invalid request gets, from every host, the rejection a single fit gives it.
    let mut invalid = request.clone();
    invalid.shared_vcpus = wit::CellMembers { cells: vec![0], ids: vec![99] };
    let single = plugin.fit_loaded(&hosts[0], &invalid, &limits).expect("no trap").expect_err("invalid");
    assert!(single.summary.starts_with("invalid request: "), "{}", single.summary);
    let answers = plugin.fit_loaded_many(&hosts, &invalid, &limits).expect("no trap");
    let single = format!("{:?}", Err::<(), _>(&single));
    assert!(answers.iter().all(|a| format!("{:?}", a.as_ref().map(|_| ())) == single), "{answers:?}");
    // An inconsistent host is refused when it is loaded, with the reason.
    let err = plugin.load(bad).expect("no trap").err().expect("refused");
    assert!(err.contains("CPU columns differ in length"), "{err}");
}

#[test]
fn the_host_refuses_placements_whose_cpu_columns_do_not_line_up() {
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let (host, request, limits) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let good = plugin.fit(&host, &request, &limits).expect("no trap").expect("fits");
    verify::placement("nova", &host, &request, &good).expect("the plugin's own answer passes");
    let mut orphan = good.clone();
    orphan.emulator_pcpus.cells.push(7);
    orphan.emulator_pcpus.ids.push(15);
    let e = verify::placement("nova", &host, &request, &orphan).expect_err("a CPU of an unplaced guest cell");
    assert!(e.to_string().contains("guest cell 7"), "{e}");
    let mut ragged = good.clone();
    ragged.pinned.pcpus.pop();
    let e = verify::placement("nova", &host, &request, &ragged).expect_err("columns of different lengths");
    assert!(e.to_string().contains("columns"), "{e}");
    let mut unpinned = good;
    unpinned.pinned.cells.pop();
    unpinned.pinned.vcpus.pop();
    unpinned.pinned.pcpus.pop();
    let e = verify::placement("nova", &host, &request, &unpinned).expect_err("a dedicated vCPU left unpinned");
    assert!(e.to_string().contains("exactly once"), "{e}");
}

#[test]
fn the_component_refuses_requests_whose_vcpu_columns_are_inconsistent() {
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let (host, request, limits) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let mut ragged = request.clone();
    ragged.dedicated_vcpus.cells.pop();
    let r = plugin.fit(&host, &ragged, &limits).expect("no trap").expect_err("refused");
    assert!(r.summary.contains("vCPU columns differ in length"), "{}", r.summary);
    let mut twice = request.clone();
    twice.dedicated_vcpus.cells.push(0);
    twice.dedicated_vcpus.ids.push(twice.dedicated_vcpus.ids[0]);
    let loaded = plugin.load(host).expect("no trap").expect("valid host");
    let r = plugin.fit_loaded(&loaded, &twice, &limits).expect("no trap").expect_err("refused");
    assert!(r.summary.contains("listed twice"), "{}", r.summary);
    let mut elsewhere = request;
    elsewhere.dedicated_vcpus.cells[0] = 9;
    let r = plugin.fit_loaded(&loaded, &elsewhere, &limits).expect("no trap").expect_err("refused");
    assert!(r.summary.contains("guest cell 9"), "{}", r.summary);
}

#[test]
fn an_invalid_request_is_refused_when_loaded_with_the_reason_a_fit_gives() {
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let (host, request, limits) = load_case(&fixture("bench/04-8cell-4cell-prefer"));
    // Shared vCPUs in a dedicated guest (Nova: the cell asks for both policies at once).
    let mut mixed_up = request.clone();
    mixed_up.shared_vcpus = wit::CellMembers { cells: vec![0], ids: vec![99] };
    // A vCPU in a guest cell the request does not list.
    let mut elsewhere = request.clone();
    elsewhere.dedicated_vcpus.cells[0] = 9;
    for bad in [mixed_up, elsewhere] {
        let reason = plugin.load_request(bad.clone()).expect("no trap").err().expect("refused when loaded");
        let stateless = plugin.fit(&host, &bad, &limits).expect("no trap").expect_err("refused by fit");
        assert_eq!(format!("invalid request: {reason}"), stateless.summary);
    }
}

#[test]
fn a_loaded_request_survives_a_trap_of_its_plugin() {
    // Fuel for an 8-cell host and request (well under 0.3M each), not for modelling and searching
    // the 64-cell host in one stateless call (well over 2M).
    let mut plugin = Plugin::embedded(PluginLimits { fuel: 1_000_000, ..PluginLimits::default() }).unwrap();
    let (host, request, limits) = load_case(&fixture("bench/02-8cell-legacy-4cell-isolate"));
    let (big, hard, hard_limits) = load_case(&fixture("bench/12-64cell-16cell-last-fits-nowhere"));
    let loaded = plugin.load(host).expect("no trap").expect("valid host");
    let loaded_request = plugin.load_request(request).expect("no trap").expect("valid request");
    let before = plugin.fit_loaded_request(&loaded, &loaded_request, &limits).expect("no trap");
    assert!(before.is_ok());
    let err = plugin.fit(&big, &hard, &hard_limits).expect_err("runs out of fuel");
    assert!(matches!(err.downcast_ref::<PluginError>(), Some(PluginError::OutOfFuel { .. })), "{err}");
    // Both handles were in the instance that trapped: host and request are loaded again, transparently.
    let after = plugin.fit_loaded_request(&loaded, &loaded_request, &limits).expect("fresh instance answers");
    assert_eq!(format!("{after:?}"), format!("{before:?}"));
    plugin.unload_request(loaded_request).expect("unloads");
    plugin.unload(loaded).expect("unloads");
}

/// Contract 0.5's packed fit against 0.3's record on every bench case: the host fills in the
/// request's part of a packed placement, and the answer is the record's, to the letter.
#[test]
fn a_plugin_built_against_contract_0_4_keeps_loading_and_a_packed_fit_reads_back_as_its_record() {
    let mut mid = Plugin::from_bytes("nova-0.4.wasm", nova_built_against_contract_0_4(), PluginLimits::default()).expect("loads");
    assert_eq!(mid.contract(), "0.4.0");
    assert_eq!(mid.info().unwrap().contract, "0.4.0");
    let mut new = Plugin::embedded(PluginLimits::default()).unwrap();
    let mut answers = Vec::new();
    for dir in bench_cases() {
        let (host, request, limits) = load_case(&dir);
        for plugin in [&mut mid, &mut new] {
            let loaded_host = plugin.load(host.clone()).expect("no trap").expect("valid host");
            let loaded_request = plugin.load_request(request.clone()).expect("no trap").expect("valid request");
            answers.push(format!("{:?}", plugin.fit_loaded_request(&loaded_host, &loaded_request, &limits).expect("no trap")));
            plugin.unload_request(loaded_request).unwrap();
            plugin.unload(loaded_host).unwrap();
        }
        assert_eq!(answers[answers.len() - 2], answers[answers.len() - 1], "{}", dir.display());
    }
    assert!(answers.iter().any(|a| a.contains("pcpus: [") && !a.contains("pcpus: []")), "some answers pin");
}

#[test]
fn a_plugin_built_against_contract_0_2_keeps_loading() {
    let mut old = Plugin::from_bytes("nova-0.2.wasm", nova_built_against_contract_0_2(), PluginLimits::default()).expect("loads");
    assert_eq!(old.contract(), "0.2.0");
    assert_eq!(old.info().unwrap().contract, "0.2.0");
    let mut new = Plugin::embedded(PluginLimits::default()).unwrap();
    for dir in bench_cases() {
        let (host, request, limits) = load_case(&dir);
        // No request-state in 0.2: the host keeps the request and sends it with each fit.
        let old_host = old.load(host.clone()).expect("no trap").expect("valid host");
        let old_request = old.load_request(request.clone()).expect("no trap").expect("kept on the host side");
        let old_answer = old.fit_loaded_request(&old_host, &old_request, &limits).expect("no trap");
        let new_host = new.load(host.clone()).expect("no trap").expect("valid host");
        let new_request = new.load_request(request.clone()).expect("no trap").expect("valid request");
        let new_answer = new.fit_loaded_request(&new_host, &new_request, &limits).expect("no trap");
        assert_eq!(format!("{old_answer:?}"), format!("{new_answer:?}"), "{}", dir.display());
        old.unload_request(old_request).unwrap();
        old.unload(old_host).unwrap();
        new.unload_request(new_request).unwrap();
        new.unload(new_host).unwrap();
    }
    // An invalid request is only found out when it is fitted, with the reason 0.3 gives on loading.
    let (host, request, limits) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let mut bad = request;
    bad.dedicated_vcpus.cells[0] = 9;
    let reason = new.load_request(bad.clone()).expect("no trap").err().expect("0.3 refuses it when loaded");
    let kept = old.load_request(bad).expect("no trap").expect("0.2: nothing to check yet");
    let old_host = old.load(host).expect("no trap").expect("valid host");
    let refused = old.fit_loaded_request(&old_host, &kept, &limits).expect("no trap").expect_err("refused");
    assert_eq!(refused.summary, format!("invalid request: {reason}"));
}

/// Contract 0.5's packed `fit-batch` and 0.4's: every bench case's request on every bench case's
/// host (2 to 64 cells, placements with pinned, shared, emulator and page-sized cells, rejections
/// with refusals and reasons) in one call, the placements crossing packed (0.5) or as columns
/// (0.4); read back, each host's answer is exactly what `fit-loaded` gives it. A plugin without
/// `fit-batch` (0.2) answers the same batch one record per host, with the same answers.
#[test]
fn a_batch_crosses_packed_or_as_columns_and_reads_back_as_each_hosts_answer() {
    let mut new = Plugin::embedded(PluginLimits::default()).unwrap();
    let mut mid = Plugin::from_bytes("nova-0.4.wasm", nova_built_against_contract_0_4(), PluginLimits::default()).expect("loads");
    let mut old = Plugin::from_bytes("nova-0.2.wasm", nova_built_against_contract_0_2(), PluginLimits::default()).expect("loads");
    let cases: Vec<_> = bench_cases().iter().map(|d| load_case(d)).collect();
    let new_hosts: Vec<_> = cases.iter().map(|(h, _, _)| new.load(h.clone()).expect("no trap").expect("valid host")).collect();
    let mid_hosts: Vec<_> = cases.iter().map(|(h, _, _)| mid.load(h.clone()).expect("no trap").expect("valid host")).collect();
    let old_hosts: Vec<_> = cases.iter().map(|(h, _, _)| old.load(h.clone()).expect("no trap").expect("valid host")).collect();
    let (mut placed, mut rejected) = (0, 0);
    for (_, request, limits) in &cases {
        let loaded = new.load_request(request.clone()).expect("no trap").expect("valid request");
        let batch = new.fit_batch(&new_hosts, &loaded, limits).expect("no trap");
        assert!(matches!(batch, FitBatch::Packed { .. }), "the embedded policy packs its placements");
        assert_eq!(batch.len(), cases.len());
        let rows = batch.into_rows().expect("packed placements that hold together");
        let each = new.fit_loaded_many(&new_hosts, request, limits).expect("no trap");
        assert_eq!(format!("{rows:?}"), format!("{each:?}"));
        placed += rows.iter().filter(|a| a.is_ok()).count();
        rejected += rows.iter().filter(|a| a.is_err()).count();

        let kept = mid.load_request(request.clone()).expect("no trap").expect("valid request");
        let batch = mid.fit_batch(&mid_hosts, &kept, limits).expect("no trap");
        assert!(matches!(batch, FitBatch::Columns(_)), "a 0.4 plugin answers in columns");
        assert_eq!(format!("{:?}", batch.into_rows().expect("columns that hold together")), format!("{each:?}"));

        let kept = old.load_request(request.clone()).expect("no trap").expect("kept on the host side");
        let batch = old.fit_batch(&old_hosts, &kept, limits).expect("no trap");
        assert!(matches!(batch, FitBatch::Rows(_)), "a 0.2 plugin answers one record per host");
        assert_eq!(format!("{:?}", batch.into_rows().unwrap()), format!("{each:?}"));
    }
    assert!(placed > 20 && rejected > 20, "both kinds of answer crossed: {placed} placed, {rejected} rejected");
}

#[test]
fn a_loaded_host_survives_a_trap_of_its_plugin() {
    let (host, hard, hard_limits) = load_case(&fixture("bench/12-64cell-16cell-last-fits-nowhere"));
    let (_, easy, easy_limits) = load_case(&fixture("bench/13-64cell-16cell-fits"));
    // Enough fuel to load the 64-cell host and answer the easy request on it, not to model the host
    // and search it exhaustively in one stateless call: measured with an ample budget first, so
    // the test follows the policy's speed.
    let mut measure = Plugin::embedded(PluginLimits::default()).unwrap();
    let probe = measure.load(host.clone()).expect("no trap").expect("valid host");
    let load_fuel = measure.fuel_used().expect("live");
    measure.fit_loaded(&probe, &easy, &easy_limits).expect("no trap").expect("fits");
    let easy_fuel = measure.fuel_used().expect("live");
    measure.fit(&host, &hard, &hard_limits).expect("no trap").expect_err("fits nowhere");
    let hard_fuel = measure.fuel_used().expect("live");
    let enough = load_fuel.max(easy_fuel);
    assert!(hard_fuel > enough + enough / 5, "the hard call ({hard_fuel} fuel) must need clearly more than {enough}");
    let budget = (enough + hard_fuel) / 2;
    let mut plugin = Plugin::embedded(PluginLimits { fuel: budget, ..PluginLimits::default() }).unwrap();
    let loaded = plugin.load(host.clone()).expect("no trap").expect("valid host");
    let before = plugin.fit_loaded(&loaded, &easy, &easy_limits).expect("no trap");
    let err = plugin.fit(&host, &hard, &hard_limits).expect_err("runs out of fuel");
    assert!(matches!(err.downcast_ref::<PluginError>(), Some(PluginError::OutOfFuel { .. })), "{err}");
    // The trapped instance is gone with the loaded host in it; the host is loaded again transparently.
    let after = plugin.fit_loaded(&loaded, &easy, &easy_limits).expect("fresh instance answers");
    assert_eq!(format!("{after:?}"), format!("{before:?}"));
    plugin.unload(loaded).expect("unloading a host of a dropped instance is a no-op");
}

#[test]
fn the_guests_memory_does_not_grow_across_loads() {
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let (host, request, limits) = load_case(&fixture("bench/11-16cell-8cell-last-fits-nowhere"));
    let (fits, freq, flimits) = load_case(&fixture("bench/04-8cell-4cell-prefer"));
    let cycle = |plugin: &mut Plugin| {
        let a = plugin.load(host.clone()).unwrap().unwrap();
        let b = plugin.load(fits.clone()).unwrap().unwrap();
        let r = plugin.load_request(freq.clone()).unwrap().unwrap();
        for _ in 0..5 {
            plugin.fit_loaded(&a, &request, &limits).unwrap().unwrap_err();
            plugin.fit_loaded(&b, &freq, &flimits).unwrap().unwrap();
            plugin.fit_loaded_request(&b, &r, &flimits).unwrap().unwrap();
        }
        plugin.unload_request(r).unwrap();
        plugin.unload(a).unwrap();
        plugin.unload(b).unwrap();
    };
    for _ in 0..20 {
        cycle(&mut plugin);
    }
    let warm = plugin.memory_bytes().expect("live instance");
    for _ in 0..300 {
        cycle(&mut plugin);
    }
    assert_eq!(plugin.memory_bytes(), Some(warm), "loaded hosts and requests are freed when unloaded, and calls reuse the arena");
}

#[test]
fn fits_on_a_loaded_host_reuse_the_arena() {
    // A 16-cell host with distances: lists the loaded model takes over from the call's argument.
    // Were they left in the per-call arena, it would never empty again: every later call's memory
    // would pile up behind it, and unloading would then ask for all of it at once.
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let (host, request, limits) = load_case(&fixture("bench/14-16cell-8cell-too-big"));
    assert!(!host.distances.is_empty());
    let loaded = plugin.load(host.clone()).unwrap().unwrap();
    plugin.fit_loaded(&loaded, &request, &limits).unwrap().unwrap_err();
    let warm = plugin.memory_bytes().expect("live instance");
    for _ in 0..800 {
        plugin.fit_loaded(&loaded, &request, &limits).unwrap().unwrap_err();
    }
    plugin.unload(loaded).expect("unloads");
    plugin.info().expect("still answers");
    assert!(
        plugin.memory_bytes().expect("live instance") <= warm + (1 << 20),
        "memory grew from {warm} to {:?} bytes",
        plugin.memory_bytes()
    );
}

#[test]
fn a_plugin_built_against_contract_0_1_keeps_loading() {
    let mut plugin = Plugin::from_bytes("hostile.wasm", hostile_plugin(), small_limits()).expect("loads");
    assert_eq!(plugin.contract(), "0.1.0");
    assert_eq!(plugin.info().unwrap().contract, "0.1.0");
    assert_eq!(Plugin::embedded(PluginLimits::default()).unwrap().contract(), "0.5.0");
    // No host-state in 0.1: the host keeps the loaded tables and sends them with each fit.
    let (host, _, limits) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let mut loaded = plugin.load(host).expect("no trap").expect("kept on the host side");
    let polite = plugin.fit_loaded(&loaded, &hostile_request(5), &limits).expect("no trap");
    assert!(polite.is_err(), "the hostile plugin refuses ordinary requests");
    let lie = plugin.fit_loaded(&loaded, &hostile_request(4), &limits).expect("no trap").expect("its lying placement");
    assert!(!lie.cells.is_empty());
    let many = plugin.fit_loaded_many(std::slice::from_mut(&mut loaded), &hostile_request(5), &limits).expect("no trap");
    assert_eq!(many.len(), 1);
}

fn hostile_request(memory_mb: u64) -> wit::Request {
    wit::Request {
        cells: vec![wit::GuestCell { memory_mb, page_size: None }],
        shared_vcpus: wit::CellMembers { cells: vec![], ids: vec![] },
        dedicated_vcpus: wit::CellMembers { cells: vec![0, 0], ids: vec![0, 1] },
        cpu_policy: Some(wit::CpuPolicy::Dedicated),
        thread_policy: None,
        emulator_threads: None,
        pci_requests: vec![],
    }
}

fn small_limits() -> PluginLimits {
    PluginLimits { fuel: 50_000_000, memory_bytes: 32 << 20, ..PluginLimits::default() }
}

#[test]
fn a_plugin_that_loops_forever_runs_out_of_fuel() {
    let mut plugin = Plugin::from_bytes("hostile.wasm", hostile_plugin(), small_limits()).expect("loads");
    let (host, _, limits) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let err = plugin.fit(&host, &hostile_request(1), &limits).expect_err("must not return");
    let e = err.downcast_ref::<PluginError>().expect("a plugin error");
    assert!(matches!(e, PluginError::OutOfFuel { .. }), "{e}");
    assert!(e.to_string().contains("hostile.wasm"), "{e}");
    // The host survives and the plugin is usable again with a fresh instance.
    let again = plugin.fit(&host, &hostile_request(5), &limits).expect("fresh instance answers");
    assert!(again.is_err());
}

#[test]
fn a_plugin_that_bombs_memory_hits_its_cap() {
    let mut plugin = Plugin::from_bytes("hostile.wasm", hostile_plugin(), small_limits()).expect("loads");
    let (host, _, limits) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let err = plugin.fit(&host, &hostile_request(2), &limits).expect_err("must not return");
    let e = err.downcast_ref::<PluginError>().expect("a plugin error");
    assert!(matches!(e, PluginError::MemoryCap { mib: 32, .. }), "{e}");
}

#[test]
fn a_plugin_that_panics_is_a_named_trap() {
    let mut plugin = Plugin::from_bytes("hostile.wasm", hostile_plugin(), small_limits()).expect("loads");
    let (host, _, limits) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let err = plugin.fit(&host, &hostile_request(3), &limits).expect_err("must not return");
    let e = err.downcast_ref::<PluginError>().expect("a plugin error");
    assert!(matches!(e, PluginError::Trap { .. }) && e.to_string().contains("hostile.wasm"), "{e}");
}

#[test]
fn a_plugin_reaching_past_its_memory_traps_and_the_host_goes_on() {
    // Linear memory is the host's own mapping (huge pages): only the memory's size is accessible,
    // so a read or a write just past it is the guest's trap, not a look at the host's memory.
    let mut plugin = Plugin::from_bytes("hostile.wasm", hostile_plugin(), small_limits()).expect("loads");
    let (host, _, limits) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    for (memory_mb, what) in [(6, "read"), (7, "write")] {
        let err = plugin.fit(&host, &hostile_request(memory_mb), &limits).expect_err(what);
        let e = err.downcast_ref::<PluginError>().expect("a plugin error");
        assert!(matches!(e, PluginError::Trap { .. }) && e.to_string().contains("out of bounds"), "{what}: {e}");
        let again = plugin.fit(&host, &hostile_request(5), &limits).expect("a fresh instance answers");
        assert!(again.is_err(), "it refuses politely");
    }
}

#[test]
fn the_cli_traps_a_plugin_reaching_past_its_memory_with_either_mapping() {
    let dir = scratch("hostile-bounds");
    let wasm = dir.join("hostile.wasm");
    std::fs::write(&wasm, hostile_plugin()).unwrap();
    let host = fixture("bench/01-2cell-host-2cell-dedicated/host.json");
    for (memory_mb, huge_pages) in [(6, "on"), (7, "on"), (6, "off"), (7, "off")] {
        let req = dir.join(format!("r{memory_mb}.json"));
        std::fs::write(
            &req,
            format!(r#"{{"cells": [{{"cpuset": [], "pcpuset": [0, 1], "memory": {memory_mb}}}], "cpu_policy": "dedicated"}}"#),
        )
        .unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_numafit"))
            .args(["fit", "--host", host.to_str().unwrap(), "--request", req.to_str().unwrap(), "--plugin", wasm.to_str().unwrap()])
            .env("NUMAFIT_CACHE_DIR", dir.join("cache"))
            .env("NUMAFIT_HUGE_PAGES", huge_pages)
            .output()
            .expect("numafit runs");
        let why = format!("{memory_mb} MiB, huge pages {huge_pages}: {}", stderr(&o));
        assert_eq!(o.status.code(), Some(3), "{why}");
        assert!(stderr(&o).contains("hostile.wasm") && stderr(&o).contains("out of bounds"), "{why}");
    }
    // A value that is neither is the operator's mistake, named, before any plugin runs.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_numafit"))
        .args(["fit", "--host", host.to_str().unwrap(), "--request", dir.join("r6.json").to_str().unwrap()])
        .env("NUMAFIT_HUGE_PAGES", "maybe")
        .output()
        .expect("numafit runs");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("NUMAFIT_HUGE_PAGES=\"maybe\""), "{}", stderr(&o));
}

#[test]
fn a_lying_plugin_is_caught_by_the_hosts_own_checks() {
    let mut plugin = Plugin::from_bytes("hostile.wasm", hostile_plugin(), small_limits()).expect("loads");
    let (host, _, limits) = load_case(&fixture("bench/01-2cell-host-2cell-dedicated"));
    let request = hostile_request(4);
    let p = plugin.fit(&host, &request, &limits).expect("no trap").expect("it claims a fit");
    let err = verify::placement(plugin.name(), &host, &request, &p).expect_err("one CPU for two vCPUs is refused");
    assert!(err.to_string().contains("hostile.wasm") && err.to_string().contains("twice"), "{err}");
    // Its claim changes the host's capacity: refused as well.
    let after = plugin.claim(&host, &p).expect("no trap").expect("it says ok");
    assert!(verify::accounting(plugin.name(), &host, &after, &p, true).is_err());
}

#[test]
fn the_cli_reports_a_trapping_plugin_by_name_with_exit_3() {
    let dir = scratch("hostile-cli");
    let wasm = dir.join("hostile.wasm");
    std::fs::write(&wasm, hostile_plugin()).unwrap();
    let req = dir.join("r.json");
    std::fs::write(&req, r#"{"cells": [{"cpuset": [], "pcpuset": [0, 1], "memory": 1}], "cpu_policy": "dedicated"}"#).unwrap();
    let host = fixture("bench/01-2cell-host-2cell-dedicated/host.json");
    let o = numafit(&[
        "fit",
        "--host",
        host.to_str().unwrap(),
        "--request",
        req.to_str().unwrap(),
        "--plugin",
        wasm.to_str().unwrap(),
        "--fuel",
        "10000000",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("hostile.wasm") && stderr(&o).contains("fuel"), "{}", stderr(&o));
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = scratch("cache");
    // Empty, though an earlier run of another build may have had this process id.
    std::fs::remove_dir_all(&dir).and_then(|()| std::fs::create_dir_all(&dir)).expect("an empty cache directory");
    let load = || Plugin::from_bytes_cached("nova", numafit_host::runtime::EMBEDDED_NOVA, PluginLimits::default(), Some(&dir));
    load().expect("compiles");
    let cached: Vec<_> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "cwasm")).collect();
    assert_eq!(cached.len(), 1, "one artifact for the embedded plugin");
    let mut again = load().expect("loads from cache");
    assert_eq!(again.info().unwrap().name, "nova");
}

#[test]
fn the_guests_memory_does_not_grow_across_calls() {
    let mut plugin = Plugin::embedded(PluginLimits::default()).unwrap();
    let (host, request, limits) = load_case(&fixture("bench/11-16cell-8cell-last-fits-nowhere"));
    let (fits, freq, flimits) = load_case(&fixture("bench/04-8cell-4cell-prefer"));
    for _ in 0..20 {
        plugin.fit(&host, &request, &limits).unwrap().unwrap_err();
        plugin.fit(&fits, &freq, &flimits).unwrap().unwrap();
    }
    let burned = plugin.fuel_used().expect("live instance");
    assert!(burned > 0 && burned < PluginLimits::default().fuel, "a fit burns some fuel, not the budget: {burned}");
    let warm = plugin.memory_bytes().expect("live instance");
    assert!(warm > 0);
    for _ in 0..500 {
        plugin.fit(&host, &request, &limits).unwrap().unwrap_err();
        plugin.fit(&fits, &freq, &flimits).unwrap().unwrap();
    }
    assert_eq!(plugin.memory_bytes(), Some(warm), "every call frees all it allocates, so the arena starts over");
}

#[test]
fn the_component_checks_a_host_by_the_same_rules_as_the_json_reader() {
    // A host built by hand in the contract's types (no HOST.json, no host-side check): the
    // component refuses it with the field the reader would name, because both call the core.
    let mut plugin = Plugin::embedded(PluginLimits::default()).expect("embedded plugin");
    let (mut host, request, limits) = load_case(&bench_cases()[0]);
    let huge = host.pages.iter_mut().find(|p| p.size_kb > 4).expect("a hugepage pool");
    huge.used = huge.total + 1;
    let e = plugin.load(host.clone()).expect("no trap").err().expect("refused");
    assert!(e.contains("mempages[") && e.contains(".used") && e.contains("used and 0 reserved"), "{e}");
    let r = plugin.fit(&host, &request, &limits).expect("no trap").expect_err("refused");
    assert!(r.summary.contains("invalid host") && r.summary.contains(".used"), "{}", r.summary);
}

/// The misbehaving builds load and name themselves; they are also written to
/// `target/test-policies/FAULT.wasm`, where the Nova filter's tests (integrations/nova, run after
/// `cargo test`) take the components they hot-swap to.
#[test]
fn misbehaving_builds_load_and_are_written_for_the_python_tests() {
    let dir = root().join("target/test-policies");
    std::fs::create_dir_all(&dir).expect("target/test-policies");
    for fault in ["on-request", "panic", "endless-loop", "memory-bomb"] {
        let bytes = misbehaving(fault);
        let mut plugin = Plugin::from_bytes(fault, bytes, PluginLimits::default()).expect("the build loads");
        assert_eq!(plugin.info().expect("info answers").name, format!("misbehaving-{fault}"));
        std::fs::write(dir.join(format!("{fault}.wasm")), bytes).expect("written");
    }
}
