//! A stand-in Kubernetes API server on loopback for the extender's tests: it answers
//! `POST /api/v1/namespaces/{ns}/pods/{name}/binding` (recording each Binding; a pod whose name
//! starts with `unbindable` is refused with 409, as a pod bound already would be) and
//! `GET /api/v1/namespaces/{ns}/pods/{name}` for the pods it is given, and
//! `GET /api/v1/pods?fieldSelector=spec.nodeName%3DNODE` (a Binding sets the pod's node). It
//! checks the bearer token. Bindings can be made slow, as a loaded API server's are.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Bound {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub body: Value,
}

pub struct ApiServer {
    pub addr: SocketAddr,
    state: Arc<State>,
}

/// What the stand-in knows, shared by its connections.
#[derive(Default)]
struct State {
    bindings: Mutex<Vec<Bound>>,
    pods: Mutex<BTreeMap<String, Value>>,
    /// Pod lists answer 500 while set.
    failing: AtomicBool,
    /// Milliseconds a Binding takes before it is made.
    binding_ms: AtomicU64,
}

impl ApiServer {
    pub fn start(token: &str) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let (shared, token) = (state.clone(), token.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, token) = (shared.clone(), token.clone());
                std::thread::spawn(move || serve(stream, &state, &token));
            }
        });
        ApiServer { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_pod(&self, pod: &Value) {
        let key = format!("{}/{}", pod["metadata"]["namespace"].as_str().unwrap(), pod["metadata"]["name"].as_str().unwrap());
        self.state.pods.lock().unwrap().insert(key, pod.clone());
    }

    pub fn remove_pod(&self, key: &str) {
        self.state.pods.lock().unwrap().remove(key);
    }

    /// Sets one field of a pod's (`status`, `spec`), merged into what is there.
    pub fn set_pod_field(&self, key: &str, field: &str, value: Value) {
        let mut pods = self.state.pods.lock().unwrap();
        let pod = pods.get_mut(key).expect("a pod added");
        for (k, v) in value.as_object().expect("an object") {
            pod[field][k] = v.clone();
        }
    }

    pub fn fail_lists(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    pub fn slow_bindings(&self, ms: u64) {
        self.state.binding_ms.store(ms, Ordering::SeqCst);
    }

    pub fn bound(&self) -> Vec<Bound> {
        self.state.bindings.lock().unwrap().clone()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

fn serve(stream: TcpStream, state: &State, token: &str) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut out = stream;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.extend_from_slice(&line);
            if line == b"\r\n" {
                break;
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
            return;
        }
        let header = |name: &str| {
            req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let method = req.method.unwrap_or("").to_string();
        let path = req.path.unwrap_or("").to_string();
        let authorized = header("authorization").as_deref() == Some(&format!("Bearer {token}"));
        let (path, query) = path.split_once('?').unwrap_or((&path, ""));
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (code, answer) = if !authorized {
            (401, status(401, "Unauthorized", "Unauthorized"))
        } else {
            match (method.as_str(), parts.as_slice()) {
                ("POST", ["api", "v1", "namespaces", ns, "pods", name, "binding"]) => {
                    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let node = sent["target"]["name"].as_str().unwrap_or("").to_string();
                    if sent["kind"] != "Binding" || sent["metadata"]["name"] != *name || node.is_empty() {
                        (400, status(400, "BadRequest", &format!("not a Binding for {name}: {sent}")))
                    } else if name.starts_with("unbindable") {
                        (409, status(409, "Conflict", &format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"elsewhere\"")))
                    } else {
                        std::thread::sleep(std::time::Duration::from_millis(state.binding_ms.load(Ordering::SeqCst)));
                        if let Some(p) = state.pods.lock().unwrap().get_mut(&format!("{ns}/{name}")) {
                            p["spec"]["nodeName"] = json!(node);
                        }
                        state.bindings.lock().unwrap().push(Bound {
                            namespace: ns.to_string(),
                            pod: name.to_string(),
                            node,
                            body: sent.clone(),
                        });
                        (201, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
                    }
                }
                ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => match state.pods.lock().unwrap().get(&format!("{ns}/{name}")) {
                    Some(p) => (200, p.clone()),
                    None => (404, status(404, "NotFound", &format!("pods \"{name}\" not found"))),
                },
                ("GET", ["api", "v1", "pods"]) if state.failing.load(Ordering::SeqCst) => {
                    (500, status(500, "InternalError", "etcdserver: request timed out"))
                }
                ("GET", ["api", "v1", "pods"]) => match query.strip_prefix("fieldSelector=spec.nodeName%3D") {
                    Some(node) => {
                        let items: Vec<Value> =
                            state.pods.lock().unwrap().values().filter(|p| p["spec"]["nodeName"] == node).cloned().collect();
                        (200, json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
                    }
                    None => (400, status(400, "BadRequest", &format!("unexpected query {query:?}"))),
                },
                _ => (404, status(404, "NotFound", "the server could not find the requested resource")),
            }
        };
        let text = answer.to_string();
        let reply = format!("HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}", text.len());
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
