//! The node API's handlers: each reads its body into the host's documents (a bad field is a 400
//! naming it), runs its work off the async workers (policy calls and SQLite block), and answers
//! JSON naming the policy version that made the answer (`policy` in the body and the
//! `Numafit-Policy` header).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::metrics::Metrics;
use super::App;
use crate::apply::render::{self as apply_render, Format, RenderContext};
use crate::apply::{cgroup, ApplyError, Binding, MemPolicy};
use crate::contract;
use crate::failure::Failure;
use crate::fleet::{self, Weights};
use crate::formats::{self, FilterJson, HostJson, InputError, InventoryEntryJson, PlacementJson, RejectionJson, RequestJson};
use crate::ledger::{LedgerError, PolicyVersion};
use crate::placing::{self, ClaimOutcome, ClaimRequest};
use crate::runtime::{wit, PluginError};
use crate::verify;

/// An answer: status, JSON body, and the policy version behind it.
pub struct Answer {
    status: StatusCode,
    body: String,
    policy: Option<PolicyVersion>,
    /// JSON, unless a render answers in its format's type.
    content_type: &'static str,
}

const JSON: &str = "application/json";

impl Answer {
    fn new(status: StatusCode, body: Value, policy: Option<&PolicyVersion>) -> Answer {
        Answer { status, body: body.to_string(), policy: policy.cloned(), content_type: JSON }
    }

    /// An answer serialized straight from its document, without a `Value` tree in between (the
    /// dry-run fit's hot path).
    fn of(status: StatusCode, body: &impl Serialize, policy: Option<&PolicyVersion>) -> Answer {
        match serde_json::to_string(body) {
            Ok(body) => Answer { status, body, policy: policy.cloned(), content_type: JSON },
            Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, "Internal", format!("the answer did not serialize: {e}"), policy),
        }
    }
}

/// `POST /v1/fit`'s answer: the placement or the rejection, and the version that decided.
#[derive(Serialize)]
struct FitAnswer<'a> {
    fits: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    placement: Option<PlacementJson>,
    policy: &'a PolicyVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection: Option<RejectionJson>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut body = self.body;
        if self.content_type == JSON {
            body.push('\n');
        }
        let mut response = (self.status, [(header::CONTENT_TYPE, self.content_type)], body).into_response();
        if let Some(p) = &self.policy {
            if let Ok(v) = HeaderValue::from_str(&format!("{}/{} sha256={}", p.name, p.version, p.sha256)) {
                response.headers_mut().insert("numafit-policy", v);
            }
        }
        response
    }
}

/// A failure as an answer: the README's kinds map to their HTTP status (`Failure::http_status`);
/// a plugin stopped by a limit names the plugin and the limit.
fn failed(metrics: &Metrics, f: Failure, policy: Option<&PolicyVersion>) -> Answer {
    let status = StatusCode::from_u16(f.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({ "error": f.code(), "message": f.to_string() });
    match &f {
        Failure::Plugin(e) => {
            let limit = e.downcast_ref::<PluginError>().map_or("trap", PluginError::kind);
            metrics.plugin_failure(limit);
            body["limit"] = json!(limit);
            body["plugin"] = json!(policy.map(|p| p.name.clone()));
        }
        Failure::Verify(v) => {
            metrics.plugin_failure("rule");
            body["limit"] = json!("rule");
            body["plugin"] = json!(v.plugin);
        }
        _ => {}
    }
    if let Some(p) = policy {
        body["policy"] = json!(p);
    }
    Answer::new(status, body, policy)
}

fn refused(status: StatusCode, code: &str, message: String, policy: Option<&PolicyVersion>) -> Answer {
    let mut body = json!({ "error": code, "message": message });
    if let Some(p) = policy {
        body["policy"] = json!(p);
    }
    Answer::new(status, body, policy)
}

/// Runs blocking work (a policy call, a transaction) on the blocking pool.
async fn blocking(app: &Arc<App>, f: impl FnOnce(&App) -> Answer + Send + 'static) -> Answer {
    let app2 = app.clone();
    match tokio::task::spawn_blocking(move || f(&app2)).await {
        Ok(a) => a,
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, "Internal", format!("the request's worker failed: {e}"), None),
    }
}

/// Runs a dry-run fit on the async worker itself: it is microseconds of policy work, bounded by
/// the plugin's deadline, and the hop to the blocking pool cost more than the fit (5.5k vs 14.7k
/// fits/s, `cargo bench --bench serve`; `block_in_place` 7.5k). Claims touch SQLite and go to
/// the blocking pool.
async fn inline(app: &Arc<App>, f: impl FnOnce(&App) -> Answer + Send + 'static) -> Answer {
    f(app)
}

fn body_text<'a>(what: &str, body: &'a [u8]) -> Result<&'a str, Failure> {
    std::str::from_utf8(body).map_err(|e| InputError { file: what.to_string(), message: format!("not UTF-8: {e}") }.into())
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn topology(State(app): State<Arc<App>>) -> Answer {
    Answer::new(StatusCode::OK, json!(HostJson::from_record(&app.node.base)), None)
}

pub async fn status(State(app): State<Arc<App>>) -> Answer {
    blocking(&app, |app| {
        let policy = app.policies.current();
        match app.node.view() {
            Ok(view) => {
                let body = formats::StatusJson {
                    claims: view.claims.len(),
                    host: HostJson::from_record(&view.derived.host),
                    ledger: app.node.ledger_path(),
                    lost: view
                        .derived
                        .lost
                        .iter()
                        .map(|l| formats::LostJson { instance: l.instance.clone(), reason: l.reason.clone() })
                        .collect(),
                };
                let mut body = json!(body);
                body["policy"] = json!(policy.version);
                body["generation"] = json!(view.generation);
                Answer::new(StatusCode::OK, body, Some(&policy.version))
            }
            Err(e) => failed(&app.metrics, e.into(), Some(&policy.version)),
        }
    })
    .await
}

/// The node's zones and their usage as a `NodeResourceTopology` (topology.node.k8s.io/v1alpha2).
pub async fn node_resource_topology(State(app): State<Arc<App>>) -> Answer {
    blocking(&app, |app| {
        let policy = app.policies.current();
        match app.node.view() {
            Ok(view) => {
                let id = &app.identity;
                let facts = crate::kube::nrt::NodeFacts {
                    node: &id.name,
                    topology_manager_policy: &id.topology_manager_policy,
                    topology_manager_scope: &id.topology_manager_scope,
                    generation: view.generation,
                    policy: &format!("{}/{}", policy.version.name, policy.version.version),
                };
                Answer::of(StatusCode::OK, &crate::kube::nrt::render(&view.derived.host, &facts), Some(&policy.version))
            }
            Err(e) => failed(&app.metrics, e.into(), Some(&policy.version)),
        }
    })
    .await
}

/// The request a REQUEST document states, the policy interpreting a flavor.
fn request_of(json: &RequestJson, what: &str, plugin: &mut crate::runtime::Plugin) -> Result<wit::Request, Failure> {
    placing::request_of(json, what, |flavor| plugin.request_from_flavor(flavor).map_err(Failure::Plugin))
}

pub async fn fit(State(app): State<Arc<App>>, body: Bytes) -> Answer {
    inline(&app, move |app| {
        let active = app.policies.current();
        let policy = &active.version;
        let run = || -> Result<Answer, Failure> {
            let request: RequestJson = formats::parse_json("request body", body_text("request body", &body)?)?;
            let mut worker = active.pool.take();
            let request = request_of(&request, "request body", &mut worker)?;
            let view = app.node.view()?;
            let answer = match active.loaded(&view, &mut worker).map_err(Failure::Plugin)? {
                Some(loaded) => worker.fit_loaded(&loaded, &request, &app.fit_limits),
                None => worker.fit(&view.shown, &request, &app.fit_limits),
            };
            match answer.map_err(Failure::Plugin)? {
                Ok(p) => {
                    verify::placement_on(worker.name(), &view.shown, &view.index, &request, &p)?;
                    Metrics::count(&app.metrics.fits, "fit");
                    let answer = FitAnswer { fits: true, placement: Some(PlacementJson::from_wit(&p)), policy, rejection: None };
                    Ok(Answer::of(StatusCode::OK, &answer, Some(policy)))
                }
                Err(r) => {
                    Metrics::count(&app.metrics.fits, "rejected");
                    app.metrics.rejection(&r);
                    let rejection = Some(RejectionJson::from_wit(&policy.name, &r));
                    Ok(Answer::of(StatusCode::OK, &FitAnswer { fits: false, placement: None, policy, rejection }, Some(policy)))
                }
            }
        };
        run().unwrap_or_else(|f| {
            Metrics::count(&app.metrics.fits, "failed");
            failed(&app.metrics, f, Some(policy))
        })
    })
    .await
}

/// `POST /v1/filter`'s body: a fleet inventory, one request, the weighers (`["pack=2"]`; none:
/// spread).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    hosts: Vec<InventoryEntryJson>,
    request: RequestJson,
    #[serde(default)]
    weighers: Vec<String>,
}

/// `numafit filter` as a request: every host of the body's inventory in one policy call, under
/// the service's limits; per host what `POST /v1/fit` would answer on that host, and its score.
pub async fn filter(State(app): State<Arc<App>>, body: Bytes) -> Answer {
    // A batch: many fits' work, so off the connection workers.
    blocking(&app, move |app| {
        let active = app.policies.current();
        let policy = &active.version;
        let run = || -> Result<Answer, Failure> {
            const WHAT: &str = "request body";
            let body: FilterBody = formats::parse_json(WHAT, body_text(WHAT, &body)?)?;
            let weights = Weights::parse(&body.weighers, "field weighers:").map_err(|message| InputError { file: WHAT.into(), message })?;
            let hosts = formats::inventory("request body, field hosts", &body.hosts)?;
            let mut worker = active.pool.take();
            let request = request_of(&body.request, WHAT, &mut worker)?;
            let shown: Vec<wit::Host> = hosts.iter().map(|(_, h)| contract::host_view(h)).collect();
            let answers =
                if shown.is_empty() { Vec::new() } else { worker.fit_many(&shown, &request, &app.fit_limits).map_err(Failure::Plugin)? };
            let hosts = fleet::judge(
                worker.name(),
                &policy.name,
                &fleet::Candidate::of(&hosts, &shown),
                &request,
                &app.fit_limits,
                Some(&weights),
                answers,
            )?;
            for h in &hosts {
                Metrics::count(&app.metrics.fits, if h.fits { "fit" } else { "rejected" });
            }
            Ok(Answer::of(StatusCode::OK, &FilterJson { hosts }, Some(policy)))
        };
        run().unwrap_or_else(|f| failed(&app.metrics, f, Some(policy)))
    })
    .await
}

/// `POST /v1/claims`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    instance: String,
    request: RequestJson,
    /// Enforce the claim too, in the same request.
    #[serde(default)]
    apply: Option<ApplyBody>,
    /// Claim only if the ledger is still at this generation (`GET /v1/status`'s): a cluster
    /// scheduler that decided on a snapshot is refused (409 `StaleGeneration`) once it moved.
    #[serde(default)]
    generation: Option<i64>,
}

/// `"apply": {"cgroup": "machine.slice/vm-1", "create": true}`: write the claim's cpuset into that
/// group (under the daemon's `--cgroup-root`), making it when `create`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    cgroup: String,
    #[serde(default)]
    create: bool,
}

pub async fn claim(State(app): State<Arc<App>>, body: Bytes) -> Answer {
    let started = Instant::now();
    let answer = blocking(&app, move |app| {
        let active = app.policies.current();
        let policy = &active.version;
        let run = || -> Result<Answer, Failure> {
            let text = body_text("claim body", &body)?;
            let parsed: ClaimBody = formats::parse_json("claim body", text)?;
            let document: Value = formats::parse_json::<Value>("claim body", text)?.get("request").cloned().unwrap_or(Value::Null);
            let instance = placing::check_instance(&parsed.instance)
                .map_err(|m| InputError { file: "claim body".into(), message: format!("field instance: {m}") })?;
            if let Some(a) = &parsed.apply {
                cgroup::check_group(&a.cgroup)
                    .map_err(|m| InputError { file: "claim body".into(), message: format!("field apply.cgroup: {:?}: {m}", a.cgroup) })?;
            }
            let mut worker = active.pool.take();
            let request = request_of(&parsed.request, "claim body", &mut worker)?;
            let ask = ClaimRequest {
                instance,
                document: &document,
                request: &parsed.request,
                policy,
                owner: None,
                generation: parsed.generation,
            };
            let mut ledger = app.node.ledger()?;
            let admit = |h: &numafit_plugin::HostTopology, p: &numafit_plugin::Placement| app.node.admit(h, p);
            let outcome = placing::claim(&mut ledger, &app.node.base, &ask, &admit, |shown| {
                let answer = worker.fit(shown, &request, &app.fit_limits).map_err(Failure::Plugin)?;
                if let Ok(p) = &answer {
                    verify::placement(worker.name(), shown, &request, p)?;
                }
                Ok(answer)
            })?;
            Ok(match outcome {
                ClaimOutcome::Claimed { claim, new } => {
                    let applied = match &parsed.apply {
                        None => None,
                        Some(a) => match apply_cgroup(app, &claim, a) {
                            Ok(w) => Some(w),
                            Err(e) => {
                                // Nothing half-applied: a claim made for this request goes again.
                                let released = new && ledger.release(instance).is_ok();
                                Metrics::count(&app.metrics.claims, "failed");
                                let f = Failure::from(e);
                                let mut answer =
                                    json!({ "error": f.code(), "message": f.to_string(), "released": released, "policy": policy });
                                if !new {
                                    answer["claim"] = json!(claim);
                                }
                                return Ok(Answer::new(StatusCode::INTERNAL_SERVER_ERROR, answer, Some(policy)));
                            }
                        },
                    };
                    Metrics::count(&app.metrics.claims, if new { "created" } else { "unchanged" });
                    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
                    let mut body = json!({ "claim": claim, "policy": policy });
                    if let Some(w) = applied {
                        body["applied"] = json!({ "cgroup": w.group.display().to_string(), "cpus": w.cpus, "mems": w.mems });
                    }
                    Answer::new(status, body, Some(policy))
                }
                ClaimOutcome::Rejected(r) => {
                    Metrics::count(&app.metrics.claims, "rejected");
                    app.metrics.rejection(&r);
                    let rejection = RejectionJson::from_wit(&policy.name, &r);
                    let body =
                        json!({ "error": "ComputeResourcesUnavailable", "message": r.summary, "policy": policy, "rejection": rejection });
                    Answer::new(StatusCode::CONFLICT, body, Some(policy))
                }
                ClaimOutcome::Exists(existing) => {
                    Metrics::count(&app.metrics.claims, "conflict");
                    refused(StatusCode::CONFLICT, "InstanceExists", placing::exists_message(instance, &existing), Some(policy))
                }
                ClaimOutcome::Overtaken => {
                    Metrics::count(&app.metrics.claims, "conflict");
                    refused(StatusCode::CONFLICT, "ComputeResourcesUnavailable", placing::overtaken_message(), Some(policy))
                }
                ClaimOutcome::Moved { generation } => {
                    Metrics::count(&app.metrics.claims, "stale");
                    let asked = parsed.generation.unwrap_or_default();
                    let message = placing::moved_message(asked, generation);
                    let body = json!({ "error": "StaleGeneration", "message": message, "generation": generation, "policy": policy });
                    Answer::new(StatusCode::CONFLICT, body, Some(policy))
                }
            })
        };
        run().unwrap_or_else(|f| {
            Metrics::count(&app.metrics.claims, "failed");
            failed(&app.metrics, f, Some(policy))
        })
    })
    .await;
    app.metrics.claim_seconds.observe(started.elapsed().as_secs_f64());
    answer
}

/// Writes a claim's cpuset into the group the request names.
fn apply_cgroup(app: &App, claim: &crate::ledger::Claim, a: &ApplyBody) -> Result<cgroup::Written, ApplyError> {
    let binding = Binding::of(&claim.placement, &app.node.base)?;
    cgroup::apply(&app.cgroup_root, &a.cgroup, a.create, &binding)
}

/// `GET /v1/claims/{id}/render` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderQuery {
    format: String,
    #[serde(default)]
    mem_policy: Option<String>,
}

/// A claim in another runtime's words (`numafit render --instance`), in that format's media type.
pub async fn render(State(app): State<Arc<App>>, Path(id): Path<String>, Query(q): Query<RenderQuery>) -> Answer {
    blocking(&app, move |app| {
        let bad =
            |field: &str, m: String| Failure::from(InputError { file: "render query".into(), message: format!("field {field}: {m}") });
        let run = || -> Result<Answer, Failure> {
            let format = Format::parse(&q.format).map_err(|m| bad("format", m))?;
            let view = app.node.view()?;
            let Some(claim) = view.claims.iter().find(|c| c.instance == id) else {
                return Ok(refused(StatusCode::NOT_FOUND, "InstanceNotFound", format!("instance {id:?} has no claim in the ledger"), None));
            };
            let mem_policy = match &q.mem_policy {
                Some(p) => MemPolicy::parse(p).map_err(|m| bad("mem_policy", m))?,
                None => MemPolicy::of_request(&claim.request).map_err(|m| bad("mem_policy", m))?.unwrap_or_default(),
            };
            let binding =
                Binding::of(&claim.placement, &app.node.base).map_err(|e| ApplyError::new(format!("the claim of {id:?}"), e.message))?;
            let text = apply_render::render(format, &binding, &app.node.base, &RenderContext { instance: &id, mem_policy })?;
            Ok(Answer { status: StatusCode::OK, body: text, policy: Some(claim.policy.clone()), content_type: format.content_type() })
        };
        run().unwrap_or_else(|f| failed(&app.metrics, f, None))
    })
    .await
}

pub async fn claims(State(app): State<Arc<App>>) -> Answer {
    blocking(&app, |app| match app.node.view() {
        Ok(view) => Answer::new(StatusCode::OK, json!(view.claims), None),
        Err(e) => failed(&app.metrics, e.into(), None),
    })
    .await
}

pub async fn claim_of(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    blocking(&app, move |app| match app.node.view() {
        Ok(view) => match view.claims.iter().find(|c| c.instance == id) {
            Some(c) => Answer::new(StatusCode::OK, json!(c), Some(&c.policy)),
            None => refused(StatusCode::NOT_FOUND, "InstanceNotFound", format!("instance {id:?} has no claim in the ledger"), None),
        },
        Err(e) => failed(&app.metrics, e.into(), None),
    })
    .await
}

pub async fn release(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    blocking(&app, move |app| {
        let released = app.node.ledger().and_then(|mut l| l.release(&id));
        match released {
            Ok(claim) => {
                Metrics::count(&app.metrics.releases, "released");
                Answer::new(StatusCode::OK, json!({ "released": claim }), Some(&claim.policy))
            }
            Err(LedgerError::Unknown(_)) => {
                Metrics::count(&app.metrics.releases, "unknown");
                refused(StatusCode::NOT_FOUND, "InstanceNotFound", format!("instance {id:?} has no claim in the ledger"), None)
            }
            Err(e) => {
                Metrics::count(&app.metrics.releases, "failed");
                failed(&app.metrics, e.into(), None)
            }
        }
    })
    .await
}

pub async fn policy(State(app): State<Arc<App>>) -> Answer {
    let active = app.policies.current();
    Answer::new(StatusCode::OK, json!(active.json()), Some(&active.version))
}

/// What a refused swap answers (and the daemon logs).
#[derive(Serialize)]
struct RefusedJson<'a> {
    error: &'static str,
    message: String,
    refused: &'a super::policy::Refused,
    serving: PolicyVersion,
}

pub async fn put_policy(State(app): State<Arc<App>>, body: Bytes) -> Answer {
    // Named by its digest until its info() names it: the refusal must say which bytes it was.
    let source = format!("PUT /v1/policy (sha256 {})", &crate::runtime::cache::sha256(&body)[..16]);
    blocking(&app, move |app| swap(app, &source, &body)).await
}

/// Swaps to `bytes` (blocking) and says what happened.
pub fn swap(app: &App, source: &str, bytes: &[u8]) -> Answer {
    match app.policies.swap(source, bytes) {
        Ok(active) => {
            Metrics::count(&app.metrics.swaps, "accepted");
            app.metrics.serving(&active.version);
            eprintln!(
                "numafit serve: policy {} {} ({}) from {source} serving; self-test {} calls, slowest {:.1} ms",
                active.version.name, active.version.version, active.version.sha256, active.selftest.calls, active.selftest.slowest_call_ms
            );
            Answer::new(StatusCode::OK, json!(active.json()), Some(&active.version))
        }
        Err(r) => {
            Metrics::count(&app.metrics.swaps, "refused");
            app.metrics.plugin_failure(r.kind);
            let serving = app.policies.current();
            eprintln!("numafit serve: {r}; {} {} keeps serving", serving.version.name, serving.version.version);
            let body = RefusedJson { error: "PolicyRefused", message: r.to_string(), refused: &r, serving: serving.version.clone() };
            Answer::new(StatusCode::UNPROCESSABLE_ENTITY, json!(body), Some(&serving.version))
        }
    }
}

pub async fn rollback(State(app): State<Arc<App>>) -> Answer {
    match app.policies.rollback() {
        Some(active) => {
            Metrics::count(&app.metrics.swaps, "rollback");
            app.metrics.serving(&active.version);
            Answer::new(StatusCode::OK, json!(active.json()), Some(&active.version))
        }
        None => {
            let active = app.policies.current();
            refused(StatusCode::CONFLICT, "NoPreviousPolicy", "no earlier policy version to roll back to".into(), Some(&active.version))
        }
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.text()).into_response()
}

/// On TCP, a request that changes anything needs `Authorization: Bearer <token>`; without it (or
/// with another token) it is a 401 and nothing changes.
pub fn authorized(token: &str, method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD) {
        return true;
    }
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compared in time independent of where they differ.
    given.is_some_and(|g| g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
}

pub fn unauthorized() -> Response {
    refused(StatusCode::UNAUTHORIZED, "Unauthorized", "this endpoint needs Authorization: Bearer <token> (the --token-file's)".into(), None)
        .into_response()
}
