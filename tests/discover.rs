//! Topology discovery on recorded real machines (sysfs trees from hwloc's test suite, each
//! cross-checked against hwloc's own reading in its expected.json), on `numactl --hardware`
//! captures, on malformed trees, and live on this machine.

mod support;
use support::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use numafit_host::discover::{self, HostConfig, Topology};
use serde_json::Value;

/// Unpacks a fixture's tarball once per test process; returns the tree's root.
fn tree(name: &str) -> (PathBuf, Value) {
    let dir = fixture(&format!("hwloc-linux/{name}"));
    let expected: Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).expect("expected.json")).expect("json");
    let out = scratch(&format!("tree-{name}"));
    let top = expected["tarball_top_dir"][0].as_str().or(expected["tarball_top_dir"].as_str()).expect("top dir").to_string();
    if !out.join(&top).exists() {
        let tarball = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".tar.bz2"))
            .expect("tarball");
        let st = Command::new("tar").arg("xjf").arg(&tarball).arg("-C").arg(&out).status().expect("tar runs");
        assert!(st.success(), "unpacking {}", tarball.display());
    }
    (out.join(top), expected)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect()).unwrap_or_default()
}

/// Every fact hwloc reports that a scheduler models the same way must match; where the models
/// differ on purpose (hwloc hides memory-less nodes and gives CPU-less nodes the CPUs near them),
/// the difference must be the documented one.
fn cross_check(name: &str) -> Topology {
    let (root, exp) = tree(name);
    let topo = discover::read_sysfs(&root).unwrap_or_else(|e| panic!("{name}: {e}"));
    let host = topo.to_host(&HostConfig::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let by_id: BTreeMap<u32, &discover::Node> = topo.nodes.iter().map(|n| (n.id, n)).collect();
    for n in exp["nodes"].as_array().unwrap() {
        let id = n["os_index"].as_u64().unwrap() as u32;
        let ours = by_id.get(&id).unwrap_or_else(|| panic!("{name}: node {id} missing"));
        assert_eq!(ours.memory_kib, n["memory_kib"].as_u64().unwrap(), "{name}: node {id} memory");
        let cpus = ids(&n["cpus"]);
        assert!(ours.cpus == cpus || ours.cpus.is_empty(), "{name}: node {id} CPUs {:?}, hwloc {:?}", ours.cpus, cpus);
        let cell = host.cells.iter().find(|c| c.id == id).unwrap();
        for page in n["pages"].as_array().unwrap() {
            let (size, count) = (page["size_kib"].as_u64().unwrap() as u32, page["count"].as_u64().unwrap());
            let pool = cell
                .mempages
                .iter()
                .flatten()
                .find(|p| p.size_kb == size)
                .unwrap_or_else(|| panic!("{name}: node {id} has no {size} KiB pool"));
            assert_eq!(pool.total, count, "{name}: node {id} {size} KiB pages");
        }
    }
    let listed: Vec<u32> = exp["nodes"].as_array().unwrap().iter().map(|n| n["os_index"].as_u64().unwrap() as u32).collect();
    for extra in topo.nodes.iter().filter(|n| !listed.contains(&n.id)) {
        assert_eq!(extra.memory_kib, 0, "{name}: node {} is not in hwloc's view, so it must be one hwloc hides (memory-less)", extra.id);
    }
    // Distances: the same matrix over the nodes both list.
    if let Some(matrix) = exp["distances"]["matrix"].as_array() {
        let order = ids(&exp["distances"]["node_os_indexes"]);
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                let (Some(na), Some(pb)) = (by_id.get(a), topo.nodes.iter().position(|n| n.id == *b)) else {
                    continue;
                };
                assert_eq!(na.distances.get(pb).copied(), matrix[i][j].as_u64().map(|d| d as u32), "{name}: distance {a}->{b}");
            }
        }
    } else {
        assert!(topo.nodes.len() == 1 || topo.nodes.iter().all(|n| n.distances.is_empty()), "{name}: hwloc reports no distances");
    }
    // Cores: each hwloc core lies inside one sibling group.
    let groups: Vec<&Vec<u32>> = host.cells.iter().flat_map(|c| c.siblings.iter()).collect();
    for core in exp["cores"].as_array().unwrap() {
        let core = ids(core);
        assert!(groups.iter().any(|g| core.iter().all(|c| g.contains(c))), "{name}: hwloc core {core:?} is split across sibling groups");
    }
    for cpu in ids(&exp["cpus_not_in_topology"]) {
        assert!(topo.excluded_cpus.contains(&cpu), "{name}: CPU {cpu} should be excluded");
        assert!(host.cells.iter().all(|c| !c.cpuset.contains(&cpu) && !c.pcpuset.contains(&cpu)));
    }
    topo
}

fn sibling_groups(topo: &Topology) -> Vec<Vec<u32>> {
    topo.to_host(&HostConfig::default()).unwrap().cells.iter().flat_map(|c| c.siblings.clone()).collect()
}

#[test]
fn two_socket_hyperthreaded_intel_with_hugepages() {
    let t = cross_check("32intel64-2p8co2t+8ve");
    assert_eq!(t.nodes.len(), 2);
    let groups = sibling_groups(&t);
    assert!(groups.contains(&vec![0, 16]), "siblings {{N, N+16}} from thread_siblings_list: {groups:?}");
    assert!(t.nodes.iter().all(|n| n.hugepages.iter().any(|p| p.size_kb == 2048 && p.total == 2048)));
}

#[test]
fn amd_with_several_nodes_per_socket_and_sparse_ids() {
    let t = cross_check("48amd64-4pa2n6c-sparse");
    assert_eq!(t.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), vec![0, 1, 2, 33, 34, 45, 72, 73]);
    let host = t.to_host(&HostConfig::default()).unwrap();
    assert_eq!(host.cells[0].socket, Some(0));
    assert_eq!(host.cells[1].socket, Some(0), "two nodes share socket 0: a socket is not a node");
}

#[test]
fn memory_less_cpu_nodes_and_cpu_less_memory_nodes_are_kept_as_they_are() {
    let t = cross_check("fakememinitiators-1np2c+1npp+gi");
    let node = |id: u32| t.nodes.iter().find(|n| n.id == id).unwrap();
    assert!(node(0).memory_kib == 0 && node(0).cpus == vec![0, 1], "node 0: CPUs, no memory");
    assert!(node(7).cpus.is_empty() && node(7).memory_kib > 0, "node 7: memory, no CPUs");
    let host = t.to_host(&HostConfig::default()).unwrap();
    let cell7 = host.cells.iter().find(|c| c.id == 7).unwrap();
    assert!(cell7.cpuset.is_empty() && cell7.pcpuset.is_empty() && cell7.memory > 0);
}

#[test]
fn cpu_less_hbm_and_nvm_nodes_with_non_contiguous_ids() {
    let t = cross_check("fakeheteromemtiers");
    assert_eq!(t.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), vec![0, 1, 2, 4, 6, 8, 9]);
    assert!([4, 6, 8, 9].iter().all(|id| t.nodes.iter().any(|n| n.id == *id && n.cpus.is_empty())));
}

#[test]
fn power7_smt4_with_sparse_node_ids_and_cpumap_only() {
    let t = cross_check("256ppc-8n8s4t");
    assert_eq!(t.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), vec![0, 1, 4, 5, 8, 9, 12, 13]);
    assert!(sibling_groups(&t).iter().all(|g| g.len() == 4), "SMT4");
    let host = t.to_host(&HostConfig::default()).unwrap();
    assert!(host.cells.iter().all(|c| c.socket.is_none()), "package id -1 is no socket");
}

#[test]
fn kunpeng_clusters_four_hugepage_sizes_and_nul_terminated_files() {
    let t = cross_check("128arm-2pa2n8cluster4co");
    let sizes: Vec<u32> = t.nodes[0].hugepages.iter().map(|p| p.size_kb).collect();
    assert_eq!(sizes, vec![64, 2048, 32768, 1048576]);
    assert!(t.cpus.values().all(|c| c.cluster.is_some() && c.l3.is_some()));
}

#[test]
fn offline_cpus_from_an_old_kernel_with_masks_only() {
    let t = cross_check("16em64t-4s2c2t-offlines");
    assert_eq!(t.excluded_cpus, vec![2, 5, 13, 14]);
    assert!(sibling_groups(&t).contains(&vec![6]), "CPU 6's sibling 14 is offline");
}

#[test]
fn cgroup_cpuset_restrictions_and_an_offline_cpu() {
    let t = cross_check("16amd64-8n2c-cpusets");
    assert!(!t.nodes.iter().any(|n| n.id == 5), "node 5: no allowed CPU, memory not allowed");
}

#[test]
fn hybrid_p_and_e_cores() {
    let t = cross_check("20em64t-hybrid-1p6c2t+2ca4co1t");
    let groups = sibling_groups(&t);
    assert_eq!(groups.iter().filter(|g| g.len() == 2).count(), 6);
    assert_eq!(groups.iter().filter(|g| g.len() == 1).count(), 8);
}

#[test]
fn machines_without_node_directories_or_valid_distances() {
    let t = cross_check("2arm-2c");
    assert_eq!((t.nodes.len(), t.nodes[0].cpus.clone()), (1, vec![0, 1]));
    let t = cross_check("8ia64-2s2c2t");
    assert!(t.nodes[0].distances.is_empty(), "a distance file of just \"0\" is no SLIT");
    cross_check("8em64t-2s2ca2c");
    cross_check("64amd64-4s2n4ca2co");
}

const ARTICLE: &str = "available: 2 nodes (0-1)
node 0 cpus: 0 2 4 6
node 0 size: 32690 MB
node 0 free: 19579 MB
node 1 cpus: 1 3 5 7
node 1 size: 32768 MB
node 1 free: 19208 MB
node distances:
node   0   1
  0:  10  20
  1:  20  10
";

#[test]
fn numactl_output_is_matched_by_node_id() {
    let t = discover::parse_numactl(ARTICLE, Path::new("article.txt")).unwrap();
    assert_eq!(t.nodes.len(), 2);
    assert_eq!((t.nodes[0].cpus.clone(), t.nodes[0].memory_kib), (vec![0, 2, 4, 6], 32690 * 1024));
    assert_eq!(t.nodes[1].distances, vec![20, 10]);

    // A memory-less node 1 and a CPU-less node 2: nothing shifts onto the wrong node.
    let odd = "available: 3 nodes (0-2)
node 0 cpus: 0 1
node 0 size: 16000 MB
node 0 free: 15000 MB
node 1 cpus: 2 3
node 1 size: 0 MB
node 1 free: 0 MB
node 2 cpus:
node 2 size: 65536 MB
node 2 free: 65000 MB
node distances:
node   0   1   2
  0:  10  20  30
  1:  20  10  30
  2:  30  30  10
";
    let t = discover::parse_numactl(odd, Path::new("odd.txt")).unwrap();
    let host = t.to_host(&HostConfig::default()).unwrap();
    assert_eq!((host.cells[1].cpuset.clone(), host.cells[1].memory), (vec![2, 3], 0));
    assert_eq!((host.cells[2].cpuset.clone(), host.cells[2].memory), (vec![], 65536));
    assert_eq!(host.cells[2].distances, Some(vec![30, 30, 10]));

    let bad = ARTICLE.replace("node 1 size: 32768 MB", "node 1 size: lots MB");
    let e = discover::parse_numactl(&bad, Path::new("bad.txt")).unwrap_err().to_string();
    assert!(e.contains("bad.txt") && e.contains("line 6") && e.contains("lots"), "{e}");
    let missing = ARTICLE.replace("node 1 cpus: 1 3 5 7\nnode 1 size: 32768 MB\nnode 1 free: 19208 MB\n", "").replace("  1:  20  10\n", "");
    assert!(discover::parse_numactl(&missing, Path::new("m.txt")).is_err(), "node 1 declared but absent");
}

#[test]
fn malformed_sysfs_files_are_errors_naming_the_file() {
    let (root, _) = tree("8em64t-2s2ca2c");
    let broken = scratch("broken-tree");
    let st = Command::new("cp").arg("-r").arg(&root).arg(&broken).status().unwrap();
    assert!(st.success());
    let base = broken.join(root.file_name().unwrap());
    std::fs::write(base.join("sys/devices/system/node/node0/cpulist"), "0-x\n").unwrap();
    let e = discover::read_sysfs(&base).unwrap_err().to_string();
    assert!(e.contains("node0/cpulist") && e.contains("0-x"), "{e}");
    std::fs::write(base.join("sys/devices/system/node/node0/cpulist"), "0-7\n").unwrap();
    std::fs::write(base.join("sys/devices/system/node/node0/meminfo"), "Node 0 MemFree: 12 kB\n").unwrap();
    let e = discover::read_sysfs(&base).unwrap_err().to_string();
    assert!(e.contains("node0/meminfo") && e.contains("MemTotal"), "{e}");
    let e = discover::read_sysfs(Path::new("/nonexistent-root")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent-root"), "{e}");
}

#[test]
fn cpu_sets_and_reserved_memory_are_applied() {
    let t = cross_check("32intel64-2p8co2t+8ve");
    let cfg = HostConfig {
        shared_cpus: Some(discover::parse_list("0-1,16-17").unwrap()),
        dedicated_cpus: Some(discover::parse_list("2-15,18-31,^15,^31").unwrap()),
        reserved_memory_mb: [(0, 1024)].into_iter().collect(),
        reserved_hugepages: [((1, 2048), 8)].into_iter().collect(),
    };
    let host = t.to_host(&cfg).unwrap();
    assert_eq!(host.cells[0].cpuset, vec![0, 1, 16, 17]);
    assert!(!host.cells[0].pcpuset.contains(&0) && !host.cells[0].pcpuset.contains(&15));
    assert_eq!(host.cells[0].memory, t.nodes[0].memory_kib / 1024 - 1024);
    assert_eq!(host.cells[1].mempages.as_ref().unwrap()[1].reserved, 8);
    let overlap = HostConfig { shared_cpus: Some(vec![0, 1]), dedicated_cpus: Some(vec![1, 2]), ..Default::default() };
    assert!(t.to_host(&overlap).unwrap_err().contains("overlap on CPUs 1;"), "the overlapping CPU is named (as a range list)");
    assert!(discover::parse_list("3-1").is_err() && discover::parse_list("a").is_err());
}

#[test]
fn this_machine_is_read_live() {
    let t = discover::read_sysfs(Path::new("/")).expect("this machine's sysfs");
    let online: usize = t.nodes.iter().map(|n| n.cpus.len()).sum();
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    assert!(online >= nproc, "{online} CPUs read, {nproc} available");
    assert!(t.nodes.iter().any(|n| n.memory_kib > 0));
    let o = numafit(&["topology"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("node 0"), "{}", stdout(&o));
}

#[test]
fn the_cli_prints_fixtures_and_fits_without_a_host_file() {
    let (root, _) = tree("48amd64-4pa2n6c-sparse");
    let o = numafit(&["topology", "--sysfs-root", root.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let host: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(host["cells"].as_array().unwrap().len(), 8);
    assert_eq!(host["cells"][3]["id"], 33);

    let dir = scratch("fit-local");
    let req = dir.join("r.json");
    std::fs::write(&req, r#"{"flavor": {"vcpus": 1, "memory_mb": 64, "extra_specs": {"hw:cpu_policy": "dedicated"}}}"#).unwrap();
    let o = numafit(&["fit", "--request", req.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let numactl = dir.join("numactl.txt");
    std::fs::write(&numactl, ARTICLE).unwrap();
    let o = numafit(&["topology", "--numactl-output", numactl.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("node 1"), "{}", stdout(&o));
    let o = numafit(&["topology", "--sysfs-root", "/nonexistent-root"]);
    assert_eq!(o.status.code(), Some(2));

    // The drawing: one square per thread, coloured and titled by what the CPU may be used for.
    let svg = dir.join("topology.svg");
    let o = numafit(&[
        "topology",
        "--sysfs-root",
        root.to_str().unwrap(),
        "--shared-cpus",
        "0-1",
        "--dedicated-cpus",
        "2-47",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<title>CPU ").count(), 48, "one square per CPU");
    assert!(text.contains("<title>CPU 0: shared</title>") && text.contains("<title>CPU 2: pinnable</title>"));
    assert_eq!(text.matches(">node ").count(), 8);
}
