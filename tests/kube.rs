//! numafit for Kubernetes, end to end: node services (`numafit serve --listen`, each on its own
//! recorded topology) on loopback, an extender (`numafit serve --cluster`) in front of them, and a
//! stand-in API server receiving the Bindings. The extender verbs answer the scheduler's recorded
//! payloads with the Go field names; a bind claims on the node's service at the generation it
//! decided on and creates the Binding, releasing the claim when the Binding fails; a scheduler
//! loop over several nodes claims concurrently with no CPU claimed twice and every rejection
//! explained; and each node publishes its zones as a NodeResourceTopology.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};
use support::apiserver::ApiServer;
use support::http::{Addr, Client, Daemon};
use support::*;

const NODE_TOKEN: &str = "node-token-0123456789abcdef";
const API_TOKEN: &str = "api-token-0123456789abcdef";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn recorded(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("kube/{name}"))).expect("recorded payload");
    serde_json::from_str(&text).expect("recorded JSON")
}

/// A node service on its own topology, on TCP with the token.
struct NodeService {
    name: String,
    addr: SocketAddr,
    daemon: Daemon,
}

impl NodeService {
    fn start(dir: &Path, name: &str, topology: &[&str]) -> NodeService {
        let addr = free_port();
        let token = dir.join("node.token");
        std::fs::write(&token, NODE_TOKEN).unwrap();
        let state = dir.join(name);
        let listen = addr.to_string();
        let mut args = topology.to_vec();
        args.extend_from_slice(&["--state-dir", s(&state), "--listen", &listen, "--token-file", s(&token), "--node-name", name]);
        let daemon = Daemon::start(&dir.join(format!("{name}.sock")), &args);
        NodeService { name: name.to_string(), addr, daemon }
    }

    fn client(&self) -> Client {
        Client::connect(&Addr::Tcp(self.addr)).expect("connects")
    }

    fn claims(&self) -> Vec<Value> {
        self.daemon.client().get("/v1/claims").json().as_array().cloned().unwrap_or_default()
    }

    fn claim(&self, instance: &str, request: Value) -> support::http::Reply {
        let body = json!({"instance": instance, "request": request}).to_string();
        let auth = format!("Bearer {NODE_TOKEN}");
        self.client().send("POST", "/v1/claims", &[("authorization", &auth)], body.into_bytes()).unwrap()
    }
}

fn dedicated(cpus: u32, memory: u64) -> Value {
    json!({"cells": [{"pcpuset": (0..cpus).collect::<Vec<_>>(), "memory": memory}], "cpu_policy": "dedicated"})
}

struct Cluster {
    nodes: Vec<NodeService>,
    api: ApiServer,
    extender: Daemon,
    /// The extender verbs alone, without a token, as kube-scheduler calls them.
    verbs: SocketAddr,
}

/// The nodes of the recorded payloads: node-a and node-b on the two recorded `numactl -H`
/// captures, node-c on the asymmetric 4-cell host; node-gone is configured but not running.
fn cluster(dir: &Path, extra: &[(&str, PathBuf)]) -> Cluster {
    cluster_with(dir, extra, json!({}))
}

/// `cluster`, with CLUSTER.json's fields in `config` added or replaced.
fn cluster_with(dir: &Path, extra: &[(&str, PathBuf)], config: Value) -> Cluster {
    let numactl = |f: &str| fixture(&format!("numactl/{f}"));
    let (a, b, c) = (numactl("2node-8cpu.txt"), numactl("2node-8cpu-shrunk.txt"), fixture("asymmetric-host.json"));
    let mut nodes = vec![
        NodeService::start(dir, "node-a", &["--numactl-output", s(&a)]),
        NodeService::start(dir, "node-b", &["--numactl-output", s(&b)]),
        NodeService::start(dir, "node-c", &["--host", s(&c)]),
    ];
    for (name, host) in extra {
        nodes.push(NodeService::start(dir, name, &["--host", s(host)]));
    }
    let api = ApiServer::start(API_TOKEN);
    let api_token = dir.join("api.token");
    std::fs::write(&api_token, API_TOKEN).unwrap();
    let mut entries: Vec<Value> = nodes.iter().map(|n| json!({"name": n.name, "url": format!("http://{}", n.addr)})).collect();
    entries.push(json!({"name": "node-gone", "url": format!("http://{}", free_port())}));
    let mut file_config = json!({
        "nodes": entries,
        "node_token_file": dir.join("node.token"),
        "api_server": {"url": api.url(), "token_file": api_token},
        "refresh_ms": 200,
        "timeout_s": 2,
    });
    for (k, v) in config.as_object().expect("fields") {
        file_config[k] = v.clone();
    }
    let file = dir.join("cluster.json");
    std::fs::write(&file, file_config.to_string()).unwrap();
    let state = dir.join("extender");
    let verbs = free_port();
    let listen = verbs.to_string();
    let extender = Daemon::start(
        &dir.join("extender.sock"),
        &["--numactl-output", s(&a), "--state-dir", s(&state), "--cluster", s(&file), "--extender-listen", &listen],
    );
    Cluster { nodes, api, extender, verbs }
}

impl Cluster {
    fn node(&self, name: &str) -> &NodeService {
        self.nodes.iter().find(|n| n.name == name).expect("a node of the cluster")
    }
}

fn pod(name: &str, uid: &str, cpu: &str, memory: &str) -> Value {
    let mut p = recorded("pod-guaranteed.json");
    p["metadata"]["name"] = json!(name);
    p["metadata"]["uid"] = json!(uid);
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": cpu, "memory": memory}, "requests": {"cpu": cpu, "memory": memory}});
    p
}

fn names_args(pod: &Value, nodes: &[&str]) -> String {
    json!({"Pod": pod, "Nodes": null, "NodeNames": nodes}).to_string()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

fn bind_args(pod: &Value, node: &str) -> String {
    json!({"PodName": pod["metadata"]["name"], "PodNamespace": pod["metadata"]["namespace"], "PodUID": pod["metadata"]["uid"], "Node": node})
        .to_string()
}

#[test]
fn the_extender_verbs_answer_the_schedulers_recorded_payloads() {
    let dir = scratch("kube-verbs");
    let c = cluster(&dir, &[]);
    let mut x = c.extender.client();
    let go_result_keys: BTreeSet<String> =
        ["Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"].iter().map(|k| k.to_string()).collect();

    // Full Nodes (not nodeCacheCapable): the fitting Node objects come back as they were sent.
    let args = recorded("filter-args-nodes.json");
    let r = x.post("/scheduler/filter", &args.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(keys(&j), go_result_keys, "{j}");
    assert_eq!(j["Error"], "", "{j}");
    assert!(j["NodeNames"].is_null(), "{j}");
    let items = j["Nodes"]["items"].as_array().expect("Nodes.items");
    let fit: Vec<&str> = items.iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(fit, ["node-a", "node-b", "node-c"], "{j}");
    assert_eq!(items[0], args["Nodes"]["items"][0], "the Node object is answered as sent");
    let gone = j["FailedAndUnresolvableNodes"]["node-gone"].as_str().expect("node-gone is unresolvable");
    assert!(gone.starts_with("numafit: "), "{gone}");
    assert_eq!(j["FailedNodes"], json!({}), "{j}");

    // NodeNames only (nodeCacheCapable).
    let r = x.post("/scheduler/filter", &recorded("filter-args-nodenames.json").to_string());
    let j = r.json();
    assert_eq!((r.status, keys(&j)), (200, go_result_keys.clone()), "{j}");
    assert!(j["Nodes"].is_null(), "{j}");
    assert_eq!(j["NodeNames"], json!(["node-a", "node-b", "node-c"]), "{j}");

    // Prioritize: a HostPriorityList in the order given, 0..=10, 0 where it does not fit.
    let r = x.post("/scheduler/prioritize", &recorded("filter-args-nodenames.json").to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json();
    let list = list.as_array().expect("a HostPriorityList");
    let hosts: Vec<&str> = list.iter().map(|h| h["Host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["node-a", "node-b", "node-c", "node-gone"]);
    for h in list {
        assert_eq!(keys(h), ["Host", "Score"].iter().map(|k| k.to_string()).collect(), "{h}");
        assert!((0..=10).contains(&h["Score"].as_i64().unwrap()), "{h}");
    }
    assert_eq!(list[3]["Score"], 0);
    assert!(list[..3].iter().any(|h| h["Score"].as_i64() > Some(0)), "{list:?}");
    // Prioritize after a filter reuses the filter's placements: the same scores as a pod asked cold.
    let (twin_a, twin_b) = (pod("twin-a", "uid-twin-a", "2", "1Gi"), pod("twin-b", "uid-twin-b", "2", "1Gi"));
    let all = ["node-a", "node-b", "node-c"];
    x.post("/scheduler/filter", &names_args(&twin_a, &all));
    let warm = x.post("/scheduler/prioritize", &names_args(&twin_a, &all)).json();
    let cold = x.post("/scheduler/prioritize", &names_args(&twin_b, &all)).json();
    assert_eq!(warm, cold);

    // Bind: claimed on node-a's service, then the Binding created.
    let r = x.post("/scheduler/bind", &recorded("bind-args.json").to_string());
    assert_eq!((r.status, r.json()), (200, json!({"Error": ""})), "{}", r.text());
    let bound = c.api.bound();
    assert_eq!(bound.len(), 1, "{bound:?}");
    assert_eq!((bound[0].namespace.as_str(), bound[0].pod.as_str(), bound[0].node.as_str()), ("nfv", "dpdk-0", "node-a"));
    assert_eq!(bound[0].body["target"], json!({"apiVersion": "v1", "kind": "Node", "name": "node-a"}));
    let uid = "6f1c2d3e-0000-4a6b-9c1d-000000000001";
    let claim = c.node("node-a").daemon.client().get(&format!("/v1/claims/pod:{uid}"));
    assert_eq!(claim.status, 200, "the claim is on node-a: {}", claim.text());
    let pinned: usize =
        claim.json()["placement"]["cells"].as_array().unwrap().iter().map(|c| c["cpu_pinning"].as_object().unwrap().len()).sum();
    assert_eq!(pinned, 2, "2 integer CPUs in Guaranteed QoS are 2 pinned CPUs: {}", claim.text());

    // Six CPUs fit no cell of node-a or node-b even empty: unresolvable, not merely failed.
    let big = pod("big-0", "uid-big-0", "6", "2Gi");
    let j = x.post("/scheduler/filter", &names_args(&big, &["node-a", "node-b", "node-c"])).json();
    assert_eq!(j["NodeNames"], json!(["node-c"]), "{j}");
    for n in ["node-a", "node-b"] {
        assert!(j["FailedAndUnresolvableNodes"][n].as_str().is_some_and(|w| w.starts_with("numafit: ")), "{n}: {j}");
    }

    // Filled up, node-b fails the pod now but would fit it empty: FailedNodes (preemption helps).
    let mut fillers = 0;
    while c.node("node-b").claim(&format!("filler-{fillers}"), dedicated(1, 256)).status == 201 {
        fillers += 1;
    }
    assert_eq!(fillers, 6, "node-b pins its 6 CPUs");
    let small = pod("small-0", "uid-small-0", "1", "256Mi");
    // The extender decides on its inventory, refreshed every refresh_ms: wait for it to see node-b full.
    let started = std::time::Instant::now();
    let j = loop {
        let j = x.post("/scheduler/filter", &names_args(&small, &["node-a", "node-b"])).json();
        if j["NodeNames"] != json!(["node-a", "node-b"]) || started.elapsed().as_secs() > 20 {
            break j;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(j["NodeNames"], json!(["node-a"]), "{j}");
    assert!(j["FailedNodes"]["node-b"].as_str().is_some_and(|w| w.starts_with("numafit: ")), "{j}");

    // A Binding the API server refuses releases the claim made for it.
    let unbindable = pod("unbindable-0", "uid-unbindable-0", "1", "256Mi");
    x.post("/scheduler/filter", &names_args(&unbindable, &["node-a"]));
    let r = x.post("/scheduler/bind", &bind_args(&unbindable, "node-a"));
    let error = r.json()["Error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("binding") && error.contains("released") && error.contains("409"), "{error}");
    assert_eq!(c.node("node-a").daemon.client().get("/v1/claims/pod:uid-unbindable-0").status, 404, "the claim went with the Binding");

    // kube-scheduler sends no credentials: the verbs alone on the loopback listener, no token.
    let mut k = Client::connect(&Addr::Tcp(c.verbs)).expect("connects");
    let args = recorded("filter-args-nodenames.json").to_string();
    let r = k.post("/scheduler/filter", &args);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), x.post("/scheduler/filter", &args).json(), "the same answer as on the node API's socket");
    for path in ["/v1/status", "/v1/claims"] {
        assert_eq!(k.get(path).status, 404, "{path}: only the verbs are served there");
    }
    let open = scratch("kube-verbs-open");
    let machine = fixture("numactl/2node-8cpu.txt");
    let cluster_file = dir.join("cluster.json");
    let o = numafit(&[
        "serve",
        "--numactl-output",
        s(&machine),
        "--state-dir",
        s(&open),
        "--cluster",
        s(&cluster_file),
        "--extender-listen",
        "0.0.0.0:1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--extender-listen 0.0.0.0:1: not a loopback address"), "{}", stderr(&o));

    // Bad payloads: named, nothing claimed.
    let r = x.post("/scheduler/filter", r#"{"Pod": 5, "NodeNames": ["node-a"]}"#);
    let e = r.json()["Error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("Pod"), "{}", r.text());
    let r = x.post("/scheduler/filter", r#"{"Pod": {}}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["Error"].as_str().unwrap().contains("NodeNames"), "{}", r.text());
    let r = x.post("/scheduler/bind", r#"{"PodName": "x/../../../api/v1/secrets", "PodNamespace": "n", "PodUID": "u", "Node": "node-a"}"#);
    let e = r.json()["Error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("field PodName") && e.contains("not a Kubernetes name"), "{e}");
    assert_eq!(c.node("node-a").daemon.client().get("/v1/claims/pod:u").status, 404, "nothing claimed for it");
    let r = x.post("/scheduler/bind", r#"{"PodName": "p", "PodNamespace": "n", "PodUID": "u/../x", "Node": "node-a"}"#);
    let e = r.json()["Error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("field PodUID") && e.contains("not a pod UID"), "{e}");
    let r = x.post("/scheduler/bind", r#"{"PodName": "p", "PodNamespace": "n", "PodUID": "u"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["Error"].as_str().unwrap().contains("Node"), "{}", r.text());
    let mut bad = pod("bad-0", "uid-bad-0", "1", "1Gi");
    bad["metadata"]["annotations"]["numafit.io/request"] = json!("{not json");
    let e = x.post("/scheduler/filter", &names_args(&bad, &["node-a"])).json()["Error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("numafit.io/request") && e.contains("nfv/bad-0"), "{e}");
    let mut bad = pod("bad-1", "uid-bad-1", "1", "1Gi");
    bad["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("lots");
    let e = x.post("/scheduler/filter", &names_args(&bad, &["node-a"])).json()["Error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("spec.containers[0].resources.limits.memory") && e.contains("lots"), "{e}");
    // A pod this extender never filtered is read from the API server for its bind.
    let unseen = pod("unseen-0", "uid-unseen-0", "1", "256Mi");
    c.api.add_pod(&unseen);
    let r = x.post("/scheduler/bind", &bind_args(&unseen, "node-c"));
    assert_eq!(r.json(), json!({"Error": ""}), "{}", r.text());
    assert_eq!(c.node("node-c").daemon.client().get("/v1/claims/pod:uid-unseen-0").status, 200);
}

#[test]
fn a_claim_decided_on_an_old_generation_is_refused_and_the_bind_decides_again() {
    let dir = scratch("kube-generation");
    let c = cluster(&dir, &[]);
    let a = c.node("node-a");
    let generation = a.daemon.client().get("/v1/status").json()["generation"].as_i64().expect("a generation");
    let auth = format!("Bearer {NODE_TOKEN}");
    let ask = |id: &str, g: i64| json!({"instance": id, "request": dedicated(1, 256), "generation": g}).to_string().into_bytes();
    let r = a.client().send("POST", "/v1/claims", &[("authorization", &auth)], ask("old", generation - 1)).unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (409, Some("StaleGeneration")), "{}", r.text());
    assert_eq!(r.json()["generation"].as_i64(), Some(generation));
    assert_eq!(a.daemon.client().get("/v1/claims/old").status, 404, "nothing claimed");
    let r = a.client().send("POST", "/v1/claims", &[("authorization", &auth)], ask("now", generation)).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(a.daemon.client().get("/v1/status").json()["generation"].as_i64(), Some(generation + 1));
    // The same claim again is the claim it made, whatever the generation now.
    let r = a.client().send("POST", "/v1/claims", &[("authorization", &auth)], ask("now", generation)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // Filtered on one generation, node-a then moves: the bind judges again and claims on the new one.
    let mut x = c.extender.client();
    let p = pod("moved-0", "uid-moved-0", "1", "256Mi");
    assert_eq!(x.post("/scheduler/filter", &names_args(&p, &["node-a"])).json()["NodeNames"], json!(["node-a"]));
    assert_eq!(a.claim("meanwhile", dedicated(1, 256)).status, 201);
    let r = x.post("/scheduler/bind", &bind_args(&p, "node-a"));
    assert_eq!(r.json(), json!({"Error": ""}), "{}", r.text());
    assert_eq!(a.daemon.client().get("/v1/claims/pod:uid-moved-0").status, 200);

    // Filtered, then node-a fills up: the bind fails with the reason and claims nothing.
    let q = pod("late-0", "uid-late-0", "2", "256Mi");
    assert_eq!(x.post("/scheduler/filter", &names_args(&q, &["node-a"])).json()["NodeNames"], json!(["node-a"]));
    let mut i = 0;
    while a.claim(&format!("fill-{i}"), dedicated(1, 256)).status == 201 {
        i += 1;
    }
    let r = x.post("/scheduler/bind", &bind_args(&q, "node-a"));
    let e = r.json()["Error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("node-a") && (e.contains("no longer fits") || e.contains("refused")), "{e}");
    assert_eq!(a.daemon.client().get("/v1/claims/pod:uid-late-0").status, 404);
    assert!(c.api.bound().iter().all(|b| b.pod != "late-0"), "no Binding for a pod that was not claimed");

    // A node service that stops answering leaves the inventory: unresolvable, not a stale fit.
    let r = pod("after-0", "uid-after-0", "1", "256Mi");
    assert_eq!(x.post("/scheduler/filter", &names_args(&r, &["node-b"])).json()["NodeNames"], json!(["node-b"]));
    let mut c = c;
    let b = c.nodes.iter().position(|n| n.name == "node-b").unwrap();
    drop(c.nodes.remove(b));
    let started = std::time::Instant::now();
    let j = loop {
        let j = x.post("/scheduler/filter", &names_args(&r, &["node-b"])).json();
        if j["NodeNames"] == json!([]) || started.elapsed().as_secs() > 20 {
            break j;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let why = j["FailedAndUnresolvableNodes"]["node-b"].as_str().unwrap_or_default();
    assert!(why.starts_with("numafit: ") && why.contains("/v1/"), "{j}");
}

#[test]
fn a_scheduler_loop_over_several_node_services_claims_concurrently_without_double_claims() {
    let dir = scratch("kube-loop");
    let c = cluster(&dir, &[("node-d", fixture("bench/01-2cell-host-2cell-dedicated/host.json"))]);
    let names = ["node-a", "node-b", "node-c", "node-d", "node-gone"];
    let scheduled = Mutex::new(Vec::new());
    let rejected = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for t in 0..3 {
            let (c, scheduled, rejected) = (&c, &scheduled, &rejected);
            scope.spawn(move || {
                let mut x = c.extender.client();
                for i in 0..24 {
                    let cpu = if i % 3 == 0 { "2" } else { "1" };
                    let p = pod(&format!("loop-{t}-{i}"), &format!("uid-loop-{t}-{i}"), cpu, "512Mi");
                    let mut placed = None;
                    for _attempt in 0..6 {
                        let f = x.post("/scheduler/filter", &names_args(&p, &names)).json();
                        assert_eq!(f["Error"], "", "{f}");
                        for failed in ["FailedNodes", "FailedAndUnresolvableNodes"] {
                            for (node, why) in f[failed].as_object().unwrap() {
                                assert!(why.as_str().is_some_and(|w| w.starts_with("numafit: ") && w.len() > 12), "{node}: {why}");
                            }
                        }
                        let fits: Vec<String> =
                            f["NodeNames"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
                        if fits.is_empty() {
                            break;
                        }
                        let prio = x.post("/scheduler/prioritize", &names_args(&p, &names)).json();
                        let best = prio
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|h| fits.iter().any(|n| h["Host"] == *n))
                            .max_by_key(|h| h["Score"].as_i64().unwrap())
                            .map(|h| h["Host"].as_str().unwrap().to_string())
                            .unwrap_or_else(|| fits[0].clone());
                        let b = x.post("/scheduler/bind", &bind_args(&p, &best)).json();
                        if b["Error"] == "" {
                            placed = Some(best);
                            break;
                        }
                        // Another scheduler thread got there first: filter again.
                        let e = b["Error"].as_str().unwrap();
                        assert!(e.contains("no longer fits") || e.contains("refused") || e.contains("kept changing"), "{e}");
                    }
                    match placed {
                        Some(node) => scheduled.lock().unwrap().push((p["metadata"]["uid"].as_str().unwrap().to_string(), node)),
                        None => *rejected.lock().unwrap() += 1,
                    }
                }
            });
        }
    });
    let scheduled = scheduled.into_inner().unwrap();
    let rejected = rejected.into_inner().unwrap();
    eprintln!("scheduled {} pods, rejected {rejected}", scheduled.len());
    assert_eq!(scheduled.len() + rejected, 72);
    assert!(scheduled.len() >= 40, "the four nodes' 62 CPUs hold at least 40 such pods: {scheduled:?}");
    assert!(rejected > 0, "72 pods asking 96 CPUs overfill the nodes' 62");
    // Every placed pod is claimed on the node it was bound to, and bound once.
    let bound: BTreeMap<String, String> = c.api.bound().iter().map(|b| (b.pod.replace("loop-", "uid-loop-"), b.node.clone())).collect();
    assert_eq!(bound.len(), scheduled.len(), "one Binding per placed pod");
    let mut claimed = BTreeMap::new();
    for n in &c.nodes {
        let mut cpus = BTreeSet::new();
        for claim in n.claims() {
            for cell in claim["placement"]["cells"].as_array().unwrap() {
                for cpu in cell["cpu_pinning"].as_object().unwrap().values() {
                    assert!(cpus.insert(cpu.as_u64().unwrap()), "CPU {cpu} of {} is claimed twice", n.name);
                }
            }
            let uid = claim["instance"].as_str().unwrap().strip_prefix("pod:").expect("a pod's claim is named pod:UID");
            claimed.insert(uid.to_string(), n.name.clone());
        }
    }
    for (uid, node) in &scheduled {
        assert_eq!(claimed.get(uid), Some(node), "{uid}");
        assert_eq!(bound.get(uid), Some(node), "{uid}");
    }
    assert_eq!(claimed.len(), scheduled.len(), "no claim without a Binding: {claimed:?}");
}

/// Polls `cond` for up to 20 s (the extender's release pass runs every 100 ms here).
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed().as_secs() < 20 {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn the_claims_of_deleted_or_ended_pods_are_released_and_no_other_claim_is() {
    let dir = scratch("kube-release");
    let c = cluster_with(&dir, &[], json!({"release_ms": 100, "release_grace_s": 0}));
    let a = c.node("node-a");
    let mut x = c.extender.client();
    let pods: Vec<Value> =
        ["kept", "deleted", "ended", "moved"].iter().map(|n| pod(&format!("{n}-0"), &format!("uid-{n}"), "1", "256Mi")).collect();
    // Each Binding takes longer than a release pass (and there is no grace): a claim whose
    // Binding is on its way is not released for the pod not yet being listed on the node.
    c.api.slow_bindings(350);
    for p in &pods {
        c.api.add_pod(p);
        assert_eq!(x.post("/scheduler/filter", &names_args(p, &["node-a"])).json()["NodeNames"], json!(["node-a"]));
        assert_eq!(x.post("/scheduler/bind", &bind_args(p, "node-a")).json(), json!({"Error": ""}));
    }
    // A claim that is not a pod's (a VM, `numafit run`) is never the extender's to release.
    c.api.slow_bindings(0);
    assert_eq!(a.claim("vm-1", dedicated(1, 256)).status, 201);
    let has = |id: &str| a.daemon.client().get(&format!("/v1/claims/{id}")).status == 200;
    assert!(has("pod:uid-kept") && has("pod:uid-deleted") && has("vm-1"));

    // While the API server cannot list pods, every claim stays.
    c.api.fail_lists(true);
    c.api.remove_pod("nfv/deleted-0");
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(has("pod:uid-deleted"), "a claim is released only on the API server's word");
    c.api.fail_lists(false);
    assert!(eventually(|| !has("pod:uid-deleted")), "the deleted pod's claim is released");

    // A pod whose containers ended frees its CPUs; one listed on another node is not this node's.
    c.api.set_pod_field("nfv/ended-0", "status", json!({"phase": "Succeeded"}));
    c.api.set_pod_field("nfv/moved-0", "spec", json!({"nodeName": "node-b"}));
    assert!(eventually(|| !has("pod:uid-ended") && !has("pod:uid-moved")), "{:?}", a.claims());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(has("pod:uid-kept") && has("vm-1"), "a pod still running and a VM keep theirs: {:?}", a.claims());
    // The node's accounting moved with it: the released CPUs are free for the next pod.
    let status = a.daemon.client().get("/v1/status").json();
    let pinned: usize = status["host"]["cells"].as_array().unwrap().iter().map(|c| c["pinned_cpus"].as_array().unwrap().len()).sum();
    assert_eq!(pinned, 2, "the kept pod's CPU and the VM's: {status}");
}

#[test]
fn a_node_publishes_its_zones_as_a_node_resource_topology() {
    let dir = scratch("kube-nrt");
    let machine = fixture("numactl/2node-8cpu.txt");
    let node = NodeService::start(&dir, "worker-7", &["--numactl-output", s(&machine)]);
    assert_eq!(node.claim("vm-1", dedicated(3, 2048)).status, 201);
    let r = node.daemon.client().get("/v1/noderesourcetopology");
    assert_eq!(r.status, 200, "{}", r.text());
    let nrt = r.json();
    assert_eq!(nrt["apiVersion"], "topology.node.k8s.io/v1alpha2");
    assert_eq!(nrt["kind"], "NodeResourceTopology");
    assert_eq!(nrt["metadata"]["name"], "worker-7");
    assert_eq!(nrt["metadata"]["annotations"]["numafit.io/generation"], "1");
    assert!(nrt["attributes"].as_array().unwrap().contains(&json!({"name": "topologyManagerPolicy", "value": "single-numa-node"})));
    assert_eq!(nrt["topologyPolicies"], json!(["SingleNUMANodeContainerLevel"]), "the deprecated field, for older readers");
    let zones = nrt["zones"].as_array().unwrap();
    assert_eq!(zones.len(), 2);
    let resource = |z: &Value, name: &str| z["resources"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned().expect(name);
    let mut available_cpus = 0;
    for (i, z) in zones.iter().enumerate() {
        assert_eq!((z["name"].as_str(), z["type"].as_str()), (Some(format!("node-{i}").as_str()), Some("Node")));
        let cost = |j: usize| if i == j { 10 } else { 21 };
        assert_eq!(z["costs"], json!([{"name": "node-0", "value": cost(0)}, {"name": "node-1", "value": cost(1)}]), "{z}");
        let cpu = resource(z, "cpu");
        assert_eq!(cpu["capacity"], "4");
        available_cpus += cpu["available"].as_str().unwrap().parse::<u32>().unwrap();
        let memory = resource(z, "memory");
        assert!(memory["capacity"].as_str().unwrap().ends_with("i"), "{memory}");
    }
    assert_eq!(available_cpus, 8 - 3, "the claim's three pinned CPUs are not available: {nrt}");
    // The claim's memory is no longer available on the cell it went to.
    let avail: Vec<String> = zones.iter().map(|z| resource(z, "memory")["available"].as_str().unwrap().to_string()).collect();
    assert_ne!(avail[0], avail[1], "{avail:?}");
}
