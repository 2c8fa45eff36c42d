//! Table-driven tests of `from_flavor`: the guest topology a flavor and image imply, and Nova's
//! exception name for every invalid combination.

use numafit_plugin::{from_flavor, CpuPolicy, Flavor, GuestTopology, PageSizeWish, ThreadPolicy};

fn flavor(vcpus: u32, memory_mb: u64, specs: &[(&str, &str)], props: &[(&str, &str)]) -> Flavor {
    let kv = |l: &[(&str, &str)]| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Flavor { vcpus, memory_mb, extra_specs: kv(specs), image_props: kv(props), pci_requests: vec![] }
}

/// (shared vCPUs, dedicated vCPUs, MiB) per cell.
fn cells(g: &GuestTopology) -> Vec<(Vec<u32>, Vec<u32>, u64)> {
    g.cells.iter().map(|c| (c.cpuset.to_vec(), c.pcpuset.to_vec(), c.memory)).collect()
}

#[test]
fn flavors_give_nova_topologies() {
    type Want = Vec<(Vec<u32>, Vec<u32>, u64)>;
    let rows: Vec<(&str, Flavor, Want, Option<CpuPolicy>)> = vec![
        ("no NUMA constraint", flavor(4, 4096, &[], &[]), vec![], None),
        ("even split", flavor(4, 4096, &[("hw:numa_nodes", "2")], &[]), vec![(vec![0, 1], vec![], 2048), (vec![2, 3], vec![], 2048)], None),
        (
            "image numa nodes",
            flavor(4, 4096, &[], &[("hw_numa_nodes", "2")]),
            vec![(vec![0, 1], vec![], 2048), (vec![2, 3], vec![], 2048)],
            None,
        ),
        (
            "manual cells",
            flavor(
                4,
                4096,
                &[
                    ("hw:numa_nodes", "2"),
                    ("hw:numa_cpus.0", "0,2"),
                    ("hw:numa_cpus.1", "1,3"),
                    ("hw:numa_mem.0", "1024"),
                    ("hw:numa_mem.1", "3072"),
                ],
                &[],
            ),
            vec![(vec![0, 2], vec![], 1024), (vec![1, 3], vec![], 3072)],
            None,
        ),
        (
            "dedicated implies one cell",
            flavor(2, 2048, &[("hw:cpu_policy", "dedicated")], &[]),
            vec![(vec![], vec![0, 1], 2048)],
            Some(CpuPolicy::Dedicated),
        ),
        (
            "image dedicated with no flavor policy",
            flavor(2, 2048, &[], &[("hw_cpu_policy", "dedicated")]),
            vec![(vec![], vec![0, 1], 2048)],
            Some(CpuPolicy::Dedicated),
        ),
        (
            "resources:PCPU means dedicated",
            flavor(2, 2048, &[("resources:PCPU", "2")], &[]),
            vec![(vec![], vec![0, 1], 2048)],
            Some(CpuPolicy::Dedicated),
        ),
        (
            "mixed with a ^ mask",
            flavor(4, 4096, &[("hw:cpu_policy", "mixed"), ("hw:cpu_dedicated_mask", "^0")], &[]),
            vec![(vec![0], vec![1, 2, 3], 4096)],
            Some(CpuPolicy::Mixed),
        ),
        (
            "mixed takes realtime vCPUs as dedicated",
            flavor(4, 4096, &[("hw:cpu_policy", "mixed"), ("hw:cpu_realtime", "yes"), ("hw:cpu_realtime_mask", "^0-1")], &[]),
            vec![(vec![0, 1], vec![2, 3], 4096)],
            Some(CpuPolicy::Mixed),
        ),
        (
            "mixed over two cells splits each",
            flavor(4, 4096, &[("hw:cpu_policy", "mixed"), ("hw:cpu_dedicated_mask", "1,3"), ("hw:numa_nodes", "2")], &[]),
            vec![(vec![0], vec![1], 2048), (vec![2], vec![3], 2048)],
            Some(CpuPolicy::Mixed),
        ),
        ("page size implies one cell", flavor(2, 2048, &[("hw:mem_page_size", "large")], &[]), vec![(vec![0, 1], vec![], 2048)], None),
    ];
    for (name, f, want, policy) in rows {
        let g = from_flavor(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cells(&g), want, "{name}");
        assert_eq!(g.cpu_policy, policy, "{name}");
    }
}

#[test]
fn invalid_flavors_name_novas_exception() {
    let rows: Vec<(Flavor, &str)> = vec![
        (flavor(4, 4096, &[("hw:numa_nodes", "3")], &[]), "ImageNUMATopologyAsymmetric"),
        (flavor(4, 4095, &[("hw:numa_nodes", "2")], &[]), "ImageNUMATopologyAsymmetric"),
        (flavor(4, 4096, &[("hw:numa_nodes", "0")], &[]), "InvalidNUMANodesNumber"),
        (flavor(4, 4096, &[("hw:numa_nodes", "two")], &[]), "InvalidNUMANodesNumber"),
        (flavor(4, 4096, &[("hw:numa_nodes", "2")], &[("hw_numa_nodes", "2")]), "ImageNUMATopologyForbidden"),
        (
            flavor(
                4,
                4096,
                &[
                    ("hw:numa_nodes", "2"),
                    ("hw:numa_cpus.0", "0-4"),
                    ("hw:numa_cpus.1", "1"),
                    ("hw:numa_mem.0", "2048"),
                    ("hw:numa_mem.1", "2048"),
                ],
                &[],
            ),
            "ImageNUMATopologyCPUOutOfRange",
        ),
        (
            flavor(
                4,
                4096,
                &[
                    ("hw:numa_nodes", "2"),
                    ("hw:numa_cpus.0", "0,1"),
                    ("hw:numa_cpus.1", "1-3"),
                    ("hw:numa_mem.0", "2048"),
                    ("hw:numa_mem.1", "2048"),
                ],
                &[],
            ),
            "ImageNUMATopologyCPUDuplicates",
        ),
        (
            flavor(
                4,
                4096,
                &[
                    ("hw:numa_nodes", "2"),
                    ("hw:numa_cpus.0", "0"),
                    ("hw:numa_cpus.1", "1"),
                    ("hw:numa_mem.0", "2048"),
                    ("hw:numa_mem.1", "2048"),
                ],
                &[],
            ),
            "ImageNUMATopologyCPUsUnassigned",
        ),
        (
            flavor(
                4,
                4096,
                &[
                    ("hw:numa_nodes", "2"),
                    ("hw:numa_cpus.0", "0,1"),
                    ("hw:numa_cpus.1", "2,3"),
                    ("hw:numa_mem.0", "2048"),
                    ("hw:numa_mem.1", "1024"),
                ],
                &[],
            ),
            "ImageNUMATopologyMemoryOutOfRange",
        ),
        (
            flavor(4, 4096, &[("hw:numa_nodes", "2"), ("hw:numa_cpus.0", "0,1"), ("hw:numa_cpus.1", "2,3")], &[]),
            "ImageNUMATopologyIncomplete",
        ),
        (flavor(2, 2048, &[("hw:cpu_policy", "shared")], &[("hw_cpu_policy", "dedicated")]), "ImageCPUPinningForbidden"),
        (
            flavor(2, 2048, &[("hw:cpu_policy", "mixed"), ("hw:cpu_dedicated_mask", "1")], &[("hw_cpu_policy", "dedicated")]),
            "ImageCPUPinningForbidden",
        ),
        (flavor(2, 2048, &[("hw:cpu_policy", "pinned")], &[]), "InvalidCPUAllocationPolicy"),
        (flavor(2, 2048, &[("hw:cpu_thread_policy", "isolate")], &[]), "CPUThreadPolicyConfigurationInvalid"),
        (
            flavor(2, 2048, &[("hw:cpu_policy", "dedicated"), ("hw:cpu_thread_policy", "isolate")], &[("hw_cpu_thread_policy", "require")]),
            "ImageCPUThreadPolicyForbidden",
        ),
        (
            flavor(2, 2048, &[("hw:cpu_policy", "dedicated"), ("hw:cpu_thread_policy", "sometimes")], &[]),
            "InvalidCPUThreadAllocationPolicy",
        ),
        (flavor(2, 2048, &[("hw:emulator_threads_policy", "isolate")], &[]), "BadRequirementEmulatorThreadsPolicy"),
        (flavor(2, 2048, &[("hw:cpu_policy", "dedicated"), ("hw:emulator_threads_policy", "own")], &[]), "InvalidEmulatorThreadsPolicy"),
        (flavor(4, 4096, &[("hw:cpu_policy", "mixed")], &[]), "RequiredMixedOrRealtimeCPUMask"),
        (flavor(4, 4096, &[("hw:cpu_policy", "dedicated"), ("hw:cpu_dedicated_mask", "0")], &[]), "RequiredMixedInstancePolicy"),
        (flavor(4, 4096, &[("hw:cpu_policy", "mixed"), ("hw:cpu_dedicated_mask", "0-3")], &[]), "InvalidMixedInstanceDedicatedMask"),
        (flavor(4, 4096, &[("hw:cpu_policy", "mixed"), ("hw:cpu_dedicated_mask", "0,7")], &[]), "InvalidMixedInstanceDedicatedMask"),
        (flavor(4, 4096, &[("hw:cpu_policy", "dedicated"), ("hw:cpu_realtime", "yes")], &[]), "RealtimeMaskNotFoundOrInvalid"),
        (flavor(4, 4096, &[("hw:cpu_realtime", "yes"), ("hw:cpu_realtime_mask", "^0")], &[]), "RealtimeConfigurationInvalid"),
        (flavor(2, 2048, &[], &[("hw_mem_page_size", "large")]), "MemoryPageSizeForbidden"),
        (flavor(2, 2048, &[("hw:mem_page_size", "small")], &[("hw_mem_page_size", "large")]), "MemoryPageSizeForbidden"),
        (flavor(2, 2048, &[("hw:mem_page_size", "huge")], &[]), "MemoryPageSizeInvalid"),
        (flavor(2, 2048, &[("hw:cpu_policy", "dedicated"), ("resources:PCPU", "2")], &[]), "InvalidRequest"),
        (flavor(2, 2048, &[("resources:PCPU", "3")], &[]), "InvalidRequest"),
        (flavor(2, 2048, &[("resources:PCPU", "2"), ("resources:VCPU", "2")], &[]), "InvalidRequest"),
        (
            flavor(
                2,
                2048,
                &[("hw:cpu_policy", "dedicated"), ("hw:cpu_thread_policy", "isolate"), ("trait:HW_CPU_HYPERTHREADING", "forbidden")],
                &[],
            ),
            "InvalidRequest",
        ),
        (flavor(2, 2048, &[("hw:cpu_policy", "mixed"), ("hw:cpu_dedicated_mask", "1-x")], &[]), "Invalid"),
        (flavor(2, 2048, &[("hw:pci_numa_affinity_policy", "sometimes")], &[]), "InvalidPCINUMAAffinity"),
        (
            flavor(2, 2048, &[("hw:pci_numa_affinity_policy", "required")], &[("hw_pci_numa_affinity_policy", "legacy")]),
            "ImagePCINUMAPolicyForbidden",
        ),
        // Invalid input that once passed: no memory, per-node memory whose sum wraps, typos.
        (flavor(2, 0, &[], &[]), "InvalidRequest"),
        (flavor(2, 0, &[("hw:numa_nodes", "1")], &[]), "InvalidRequest"),
        (
            flavor(
                2,
                1024,
                &[
                    ("hw:numa_nodes", "2"),
                    ("hw:numa_cpus.0", "0"),
                    ("hw:numa_cpus.1", "1"),
                    ("hw:numa_mem.0", "18446744073709551615"),
                    ("hw:numa_mem.1", "1025"),
                ],
                &[],
            ),
            "ImageNUMATopologyMemoryOutOfRange",
        ),
        (
            flavor(
                2,
                1024,
                &[
                    ("hw:numa_nodes", "2"),
                    ("hw:numa_cpus.0", "0"),
                    ("hw:numa_cpus.1", "1"),
                    ("hw:numa_mem.0", "0"),
                    ("hw:numa_mem.1", "1024"),
                ],
                &[],
            ),
            "ImageNUMATopologyMemoryOutOfRange",
        ),
        (flavor(2, 2048, &[("hw:cpu_polcy", "dedicated")], &[]), "ValidationError"),
        (flavor(2, 2048, &[("hw:numa_nodez", "2")], &[]), "ValidationError"),
        (flavor(2, 2048, &[("hw:numa_mempolicy", "bind")], &[]), "ValidationError"),
    ];
    for (f, code) in rows {
        let e = from_flavor(&f).map(|g| cells(&g)).expect_err(&format!("{code} expected for {:?}", f.extra_specs));
        assert_eq!(e.code, code, "{:?} / {:?}: {}", f.extra_specs, f.image_props, e.message);
        assert!(!e.message.is_empty());
    }
}

#[test]
fn nova_keys_that_do_not_place_and_numafits_mempolicy_are_accepted() {
    let specs = [
        ("hw:cpu_sockets", "2"),
        ("hw:watchdog_action", "reset"),
        ("hw:boot_menu", "true"),
        ("hw:numa_mempolicy", "interleave"),
        ("hw_rng:allowed", "true"),
        ("quota:cpu_shares", "1024"),
    ];
    let g = from_flavor(&flavor(2, 2048, &specs, &[("hw_numa_mempolicy", "preferred")])).expect("valid keys");
    assert!(g.cells.is_empty());
}

#[test]
fn policies_and_page_sizes_follow_nova_precedence() {
    let g = from_flavor(&flavor(
        2,
        2048,
        &[("hw:cpu_policy", "dedicated"), ("hw:cpu_thread_policy", "prefer")],
        &[("hw_cpu_thread_policy", "isolate")],
    ))
    .unwrap();
    assert_eq!(g.thread_policy, Some(ThreadPolicy::Prefer), "a flavor's prefer wins over the image");
    let g = from_flavor(&flavor(2, 2048, &[("hw:cpu_policy", "dedicated")], &[("hw_cpu_thread_policy", "isolate")])).unwrap();
    assert_eq!(g.thread_policy, Some(ThreadPolicy::Isolate), "an unset flavor takes the image's");
    let g = from_flavor(&flavor(2, 2048, &[("hw:cpu_policy", "dedicated"), ("trait:HW_CPU_HYPERTHREADING", "forbidden")], &[])).unwrap();
    assert_eq!(g.thread_policy, Some(ThreadPolicy::Isolate));
    let g = from_flavor(&flavor(
        2,
        2048,
        &[("hw:cpu_policy", "dedicated"), ("resources1:PCPU", "3"), ("hw:emulator_threads_policy", "isolate")],
        &[],
    ));
    assert!(g.is_err(), "hw:cpu_policy and resources:PCPU together are refused");
    let g = from_flavor(&flavor(2, 2048, &[("resources:PCPU", "3"), ("hw:emulator_threads_policy", "isolate")], &[])).unwrap();
    assert_eq!(g.cpu_policy, Some(CpuPolicy::Dedicated));
    for (flavor_size, image_size, want) in [
        ("large", Some("2MB"), PageSizeWish::Kib(2048)),
        ("any", Some("1GB"), PageSizeWish::Kib(1048576)),
        ("any", Some("small"), PageSizeWish::Small),
        ("2048", None, PageSizeWish::Kib(2048)),
        ("1GiB", None, PageSizeWish::Kib(1048576)),
        ("large", None, PageSizeWish::Large),
    ] {
        let props: Vec<(&str, &str)> = image_size.map(|s| vec![("hw_mem_page_size", s)]).unwrap_or_default();
        let g = from_flavor(&flavor(2, 2048, &[("hw:mem_page_size", flavor_size)], &props)).unwrap();
        assert_eq!(g.cells[0].pagesize, Some(want), "{flavor_size} / {image_size:?}");
    }
}

#[test]
fn the_flavors_pci_numa_policy_applies_to_requests_without_one() {
    use numafit_plugin::request::{PciNumaPolicy, PciRequest};
    let mut f = flavor(2, 2048, &[("hw:pci_numa_affinity_policy", "socket"), ("hw:cpu_policy", "dedicated")], &[]);
    let nic = |p| PciRequest { count: 1, spec: vec![vec![("vendor_id".into(), "8086".into())]], numa_policy: p };
    f.pci_requests = vec![nic(None), nic(Some(PciNumaPolicy::Required))];
    let g = from_flavor(&f).unwrap();
    let policies: Vec<_> = g.pci_requests.iter().map(|r| r.numa_policy).collect();
    assert_eq!(policies, vec![Some(PciNumaPolicy::Socket), Some(PciNumaPolicy::Required)]);
}
