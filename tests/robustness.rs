//! Whatever a user feeds the readers, they answer with a value or an error, never a panic:
//! kernel list and mask syntax, `numactl --hardware` text, and JSON documents of the CLI's formats
//! with arbitrary values.

use std::path::Path;

use numafit_host::discover;
use numafit_host::formats::{self, HostJson, LimitsJson, PlacementJson, RequestJson};
use proptest::prelude::*;

fn numactl_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "available: [0-9]{1,2} nodes \\([0-9,-]{0,6}\\)",
        "node [0-9]{1,2} cpus:( [0-9]{1,3}){0,6}",
        "node [0-9]{1,2} size: [0-9a-z]{1,6} MB",
        "node [0-9]{1,2} free: [0-9]{1,6} MB",
        Just("node distances:".to_string()),
        "node( +[0-9]{1,2}){0,4}",
        " +[0-9]{1,2}:( +[0-9]{1,3}){0,4}",
        ".{0,20}",
    ];
    prop::collection::vec(line, 0..14).prop_map(|lines| lines.join("\n"))
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (0u32..70000).prop_map(serde_json::Value::from),
        "[a-z_:.]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("cells".to_string()),
                    Just("id".to_string()),
                    Just("cpuset".to_string()),
                    Just("pcpuset".to_string()),
                    Just("memory".to_string()),
                    Just("siblings".to_string()),
                    Just("pinned_cpus".to_string()),
                    Just("mempages".to_string()),
                    Just("size_kb".to_string()),
                    Just("total".to_string()),
                    Just("distances".to_string()),
                    Just("flavor".to_string()),
                    Just("vcpus".to_string()),
                    Just("memory_mb".to_string()),
                    Just("extra_specs".to_string()),
                    Just("pagesize".to_string()),
                    Just("cpu_policy".to_string()),
                    Just("cpu_pinning".to_string()),
                    Just("fits".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn list_and_mask_syntax_never_panic(text in "[0-9,^\\- a-f\\x00\\n]{0,24}") {
        let _ = discover::parse_list(&text);
        let _ = discover::parse_mask(&text);
    }

    #[test]
    fn numactl_text_never_panics(text in numactl_like()) {
        if let Ok(t) = discover::parse_numactl(&text, Path::new("capture.txt")) {
            let _ = t.to_host(&discover::HostConfig::default());
        }
    }

    #[test]
    fn json_documents_never_panic(v in json_value()) {
        let text = v.to_string();
        if let Ok(h) = formats::parse_json::<HostJson>("h.json", &text) {
            let _ = h.to_wit("h.json");
        }
        if let Ok(r) = formats::parse_json::<RequestJson>("r.json", &text) {
            let _ = r.to_input("r.json");
        }
        if let Ok(l) = formats::parse_json::<LimitsJson>("l.json", &text) {
            let _ = l.to_wit("l.json", numafit_host::runtime::wit::Strategy::Spread);
        }
        if let Ok(p) = formats::parse_json::<PlacementJson>("p.json", &text) {
            let _ = p.to_wit("p.json");
        }
    }
}

mod through_the_component {
    use std::sync::{Mutex, OnceLock};

    use numafit_host::formats::{GuestCellJson, HostCellJson, HostJson, PagesJson, RequestInput, RequestJson};
    use numafit_host::runtime::{wit, Plugin, PluginLimits};
    use numafit_host::verify;
    use proptest::prelude::*;

    fn plugin() -> &'static Mutex<Plugin> {
        static P: OnceLock<Mutex<Plugin>> = OnceLock::new();
        P.get_or_init(|| Mutex::new(Plugin::embedded(PluginLimits::default()).expect("embedded plugin")))
    }

    /// Hosts the host's reader accepts, with odd but legal usage: memory used beyond the cell,
    /// pages used beyond their total, huge shared-vCPU counts, cells without CPUs or pages.
    fn host() -> impl Strategy<Value = HostJson> {
        prop::collection::vec(
            (
                1u32..9,
                any::<bool>(),
                any::<u16>(),
                any::<u16>(),
                0u64..65536,
                0u64..20000,
                0u32..24,
                prop::option::of((0u64..4096, 0u64..3000)),
            ),
            1..5,
        )
        .prop_map(|cells| {
            let mut next = 0u32;
            let cells = cells
                .into_iter()
                .enumerate()
                .map(|(i, (cores, smt, pin_mask, pinned_mask, memory, used, cpu_usage, huge))| {
                    let threads = if smt { 2 } else { 1 };
                    let cpus: Vec<u32> = (next..next + cores * threads).collect();
                    next += cores * threads;
                    let pcpuset: Vec<u32> = cpus.iter().copied().filter(|c| (pin_mask | pin_mask >> 3) >> (c % 16) & 1 == 1).collect();
                    let pinned: Vec<u32> =
                        pcpuset.iter().copied().filter(|c| (pinned_mask & pinned_mask >> 5) >> (c % 16) & 1 == 1).collect();
                    let siblings = cpus.chunks(threads as usize).map(|c| c.to_vec()).collect();
                    HostCellJson {
                        id: i as u32 * 2,
                        cpuset: cpus.iter().copied().filter(|c| !pcpuset.contains(c)).collect(),
                        pcpuset,
                        memory,
                        cpu_usage,
                        memory_usage: used,
                        pinned_cpus: pinned,
                        siblings,
                        host_cpus: vec![],
                        l3_groups: None,
                        mempages: huge.map(|(total, used)| {
                            vec![
                                PagesJson { size_kb: 4, total: memory * 256, used: 0, reserved: 0 },
                                PagesJson { size_kb: 2048, total, used, reserved: 0 },
                            ]
                        }),
                        socket: Some(i as u32 / 2),
                        distances: None,
                        network_metadata: None,
                    }
                })
                .collect();
            HostJson { cells, pci_pools: vec![] }
        })
    }

    fn request() -> impl Strategy<Value = RequestJson> {
        (prop::collection::vec((1u32..5, 0u32..3, 1u64..4096, 0u8..5), 1..3), 0u8..3, 0u8..4, any::<bool>()).prop_map(
            |(cells, policy, thread, emulator)| {
                let policy_name = ["shared", "dedicated", "mixed"][policy as usize];
                let mut next = 0;
                let cells = cells
                    .into_iter()
                    .map(|(d, s, memory, page)| {
                        let (ded, sh) = match policy {
                            0 => (0, d),
                            1 => (d, 0),
                            _ => (d, s.max(1)),
                        };
                        let pcpuset: Vec<u32> = (next..next + ded).collect();
                        let cpuset: Vec<u32> = (next + ded..next + ded + sh).collect();
                        next += ded + sh;
                        let pagesize = match page {
                            0 => None,
                            1 => Some(numafit_host::formats::PageSizeJson::Text("small".into())),
                            2 => Some(numafit_host::formats::PageSizeJson::Text("large".into())),
                            3 => Some(numafit_host::formats::PageSizeJson::Text("any".into())),
                            _ => Some(numafit_host::formats::PageSizeJson::Kib(2048)),
                        };
                        GuestCellJson { cpuset, pcpuset, memory, pagesize, id: None }
                    })
                    .collect();
                let pins = policy != 0;
                RequestJson {
                    cells: Some(cells),
                    cpu_policy: Some(policy_name.to_string()),
                    cpu_thread_policy: if pins {
                        [None, Some("prefer"), Some("isolate"), Some("require")][thread as usize].map(String::from)
                    } else {
                        None
                    },
                    emulator_threads_policy: (pins && emulator).then(|| "isolate".to_string()),
                    ..Default::default()
                }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Any host and request the host's readers accept reaches the component and comes back
        /// as an answer (never a trap), and every placement passes the host's own checks and claims.
        #[test]
        fn the_component_answers_every_accepted_input(h in host(), r in request(), pack in any::<bool>()) {
            let Ok(whost) = h.to_wit("h.json") else { return Ok(()) };
            let Ok(RequestInput::Explicit(wreq)) = r.to_input("r.json") else { return Ok(()) };
            let limits = wit::Limits { cpu_allocation_ratio: Some(4.0), ram_allocation_ratio: Some(1.5), network: None, strategy: if pack { wit::Strategy::Pack } else { wit::Strategy::Spread } };
            let mut p = plugin().lock().expect("plugin lock");
            let answer = p.fit(&whost, &wreq, &limits);
            prop_assert!(answer.is_ok(), "the plugin trapped: {:?}", answer.err());
            if let Ok(Ok(placement)) = answer {
                let checked = verify::placement(p.name(), &whost, &wreq, &placement);
                prop_assert!(checked.is_ok(), "{:?}", checked.err());
                let claimed = p.claim(&whost, &placement);
                prop_assert!(matches!(claimed, Ok(Ok(_))), "{:?}", claimed);
            }
        }
    }
}
