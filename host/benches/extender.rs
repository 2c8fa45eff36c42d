//! Load generator for the scheduler extender (`numafit serve --cluster`, the release binary):
//! kube-scheduler's calls for one pod at a time against 1,000 nodes, as `NodeNames` (the
//! extender is `nodeCacheCapable`) and as full `Nodes` objects (it is not: the whole node list as
//! JSON per pod, as Kubernetes' HTTP extender ships it). `cargo bench --bench extender [-- SECONDS] [Nodes|NodeNames]`.
//!
//! The 1,000 nodes are names of one node service (bench case 04's 8-cell host), so each has the
//! same truth; the extender fetches, keeps and loads each as its own. Its inventory refresh is
//! set long, so the run measures the decisions, not the refresh (which costs two GETs per node
//! per `refresh_ms`).

#[path = "../../tests/support/http.rs"]
mod http;
#[path = "support/load.rs"]
mod load;

use std::path::{Path, PathBuf};

use http::Daemon;
use load::{load, Lean};
use serde_json::json;

const NODES: usize = 1000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A Node object as the scheduler sends it (the fields a real one carries, trimmed of images).
fn node_object(name: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "77001",
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                "topology.kubernetes.io/zone": "zone-a", "node.kubernetes.io/instance-type": "metal-8s"},
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {"capacity": {"cpu": "128", "memory": "1056768Mi", "pods": "110", "hugepages-2Mi": "0", "ephemeral-storage": "102107096Ki"},
                   "allocatable": {"cpu": "128", "memory": "1056768Mi", "pods": "110", "hugepages-2Mi": "0"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                                   "lastHeartbeatTime": "2026-12-01T10:00:00Z", "lastTransitionTime": "2026-11-01T10:00:00Z"}],
                   "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}, {"type": "Hostname", "address": name}],
                   "nodeInfo": {"kernelVersion": "6.1.0-27-amd64", "kubeletVersion": "v1.31.2", "containerRuntimeVersion": "containerd://1.7.22",
                                "operatingSystem": "linux", "architecture": "amd64", "machineID": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}}
    })
}

fn main() {
    let secs: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5.0);
    let dir = std::env::temp_dir().join(format!("numafit-bench-extender-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::env::set_var("NUMAFIT_CACHE_DIR", dir.join("cache"));
    let host = root().join("tests/fixtures/bench/04-8cell-4cell-prefer/host.json");
    let token = dir.join("node.token");
    std::fs::write(&token, "bench-node-token-0123456789").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let listen = port.to_string();
    let node_state = dir.join("node");
    let _node = Daemon::start(
        &dir.join("node.sock"),
        &["--host", s(&host), "--state-dir", s(&node_state), "--listen", &listen, "--token-file", s(&token)],
    );
    let names: Vec<String> = (0..NODES).map(|i| format!("worker-{i:04}")).collect();
    let entries: Vec<_> = names.iter().map(|n| json!({"name": n, "url": format!("http://{port}")})).collect();
    let cluster = dir.join("cluster.json");
    std::fs::write(&cluster, json!({"nodes": entries, "node_token_file": token, "refresh_ms": 3_600_000}).to_string()).unwrap();
    let state = dir.join("extender");
    // `NUMAFIT_BENCH_BIN=OTHER-NUMAFIT`: the extender from another build, to compare two in turn.
    let bin = std::env::var_os("NUMAFIT_BENCH_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_numafit")));
    let x = Daemon::start_with(&bin, &dir.join("extender.sock"), &["--host", s(&host), "--state-dir", s(&state), "--cluster", s(&cluster)]);
    let pod = json!({
        "metadata": {"name": "dpdk-0", "namespace": "nfv", "uid": "6f1c2d3e-0000-4a6b-9c1d-000000000001"},
        "spec": {"containers": [{"name": "fwd", "resources": {"limits": {"cpu": "4", "memory": "8Gi"}, "requests": {"cpu": "4", "memory": "8Gi"}}}]},
        "status": {"phase": "Pending", "qosClass": "Guaranteed"}
    });
    let by_name = json!({"Pod": pod, "Nodes": null, "NodeNames": names}).to_string();
    let objects: Vec<_> = names.iter().map(|n| node_object(n)).collect();
    let full = json!({"Pod": pod, "Nodes": {"metadata": {}, "items": objects}, "NodeNames": null}).to_string();
    // Warm: every node fetched, and loaded into the policy, before the clock starts.
    let mut warm = Lean::connect(&x);
    assert_eq!(warm.send("POST", "/scheduler/filter", &by_name), 200);
    println!(
        "numafit extender load generator: {NODES} nodes (8 cells, 128 CPUs each), one Guaranteed 4-CPU pod at a time, {secs} s per run; \
         ExtenderArgs {} KiB by name, {} KiB with Node objects",
        by_name.len() >> 10,
        full.len() >> 10
    );
    println!("| calls per pod | ExtenderArgs | clients | pods/s | p50 (ms) | p99 (ms) | service CPU/pod (ms) | target |");
    println!("|---|---|---|---|---|---|---|---|");
    // `-- Nodes` or `-- NodeNames`: that form alone.
    let only = std::env::args().skip(1).find(|a| a == "Nodes" || a == "NodeNames");
    for (form, body) in [("NodeNames", &by_name), ("Nodes", &full)] {
        if only.as_ref().is_some_and(|o| o != form) {
            continue;
        }
        for (calls, verbs) in
            [("filter", &["/scheduler/filter"][..]), ("filter + prioritize", &["/scheduler/filter", "/scheduler/prioritize"][..])]
        {
            for clients in [1, 2] {
                let r = load(
                    &x,
                    clients,
                    secs,
                    calls,
                    || Lean::connect(&x),
                    |c, _| {
                        let mut status = 200;
                        for v in verbs {
                            status = status.max(c.send("POST", v, body));
                        }
                        status
                    },
                );
                println!(
                    "| {calls} | {form} | {clients} | {:.0} | {:.2} | {:.2} | {:.2} | >= 100 pods/s |",
                    r.rate,
                    r.p50,
                    r.p99,
                    r.service_us / 1e3
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
