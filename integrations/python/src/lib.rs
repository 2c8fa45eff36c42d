//! `import numafit`: numafit's host runtime inside a Python process. The policy is the same
//! component the CLI runs (the embedded one or a file), under the same fuel, deadline and memory
//! limits, and every answer passes the same host verification before Python sees it. Hosts,
//! requests and answers are plain Python data in the README's JSON shapes, read and written in
//! one pass in compiled code (pythonize + serde): nothing is converted value by value in Python.
//! Errors are exceptions named by the CLI's failure codes, carrying its exit status.

use std::path::Path;
use std::sync::Arc;

use numafit_host::contract;
use numafit_host::failure::Failure;
use numafit_host::formats::{
    AccountingConflictJson, GuestTopologyJson, HostJson, InputError, LimitsJson, PlacementJson, RejectionJson, RequestJson,
};
use numafit_host::placing;
use numafit_host::runtime::{wit, LoadedHost, Plugin, PluginError, PluginLimits, PluginPool};
use numafit_host::selftest;
use numafit_host::verify;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde::{Deserialize, Serialize};

pyo3::create_exception!(numafit, Error, PyException, "A numafit failure: `code` and `exit_code` as the CLI's.");
pyo3::create_exception!(numafit, InvalidInput, Error, "A host, request or limits document the CLI would refuse (exit 2).");
pyo3::create_exception!(numafit, RequestRefused, Error, "The policy refused to read the flavor and image (exit 2).");
pyo3::create_exception!(numafit, PluginLoad, Error, "The policy file cannot be read or is not a usable component (exit 2).");
pyo3::create_exception!(numafit, PluginFailed, Error, "The policy trapped or hit a limit; `limit` says which (exit 3).");
pyo3::create_exception!(numafit, PluginAnswerRefused, Error, "The policy answered something the host's checks refuse (exit 3).");
pyo3::create_exception!(
    numafit,
    AccountingConflict,
    Error,
    "A claim or release the accounting refuses: `code`, `host_cell`, `cpus` as `numafit claim --json` (exit 1)."
);

/// The exception for a failure, with the CLI's code, exit status and (for a plugin) the limit.
fn raise(py: Python<'_>, f: Failure) -> PyErr {
    let message = f.to_string();
    let err = match &f {
        Failure::Input(_) | Failure::Flag(_) | Failure::Discover(_) | Failure::Output(_) | Failure::Ledger(_) => {
            InvalidInput::new_err(message)
        }
        Failure::Request(_) => RequestRefused::new_err(message),
        Failure::PluginLoad(_) => PluginLoad::new_err(message),
        Failure::Plugin(_) => PluginFailed::new_err(message),
        Failure::Verify(_) => PluginAnswerRefused::new_err(message),
        // The module applies nothing itself; the base class carries the code (`ApplyFailed`).
        Failure::Apply(_) => Error::new_err(message),
    };
    let value = err.value(py);
    let _ = value.setattr("code", f.code());
    let _ = value.setattr("exit_code", f.exit_code());
    if let Failure::Plugin(e) = &f {
        let _ = value.setattr("limit", e.downcast_ref::<PluginError>().map_or("trap", PluginError::kind));
    }
    err
}

/// Python data read as one of the host's documents; a bad field is named as the CLI names it.
fn read<T: for<'de> Deserialize<'de>>(what: &str, obj: &Bound<'_, PyAny>) -> Result<T, Failure> {
    // Read without tracking the path (the common case, and most of the cost of a large host);
    // only a document that fails is read again to name the field.
    if let Ok(value) = T::deserialize(&mut pythonize::Depythonizer::from_object(obj)) {
        return Ok(value);
    }
    let mut de = pythonize::Depythonizer::from_object(obj);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = if path == "." { e.inner().to_string() } else { format!("field {path}: {}", e.inner()) };
        InputError { file: what.to_string(), message }.into()
    })
}

fn write<'py, T: Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, value).map_err(|e| Error::new_err(format!("the answer did not convert: {e}")))
}

/// One fit's answer, in the shape of the service's `POST /v1/fit`.
#[derive(Serialize)]
struct FitAnswer {
    fits: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    placement: Option<PlacementJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection: Option<RejectionJson>,
}

/// How much of an answer to write back: a scheduler filtering many hosts may want the verdicts
/// only (a placement is verified all the same).
#[derive(Clone, Copy)]
struct Detail {
    placements: bool,
    reasons: bool,
}

/// A loaded policy component. Calls from several Python threads run in parallel, each on its own
/// instance of the component, with the GIL released while the policy works.
#[pyclass(frozen, module = "numafit")]
struct Policy {
    pool: Arc<PluginPool>,
    /// The name rejections are reported under (the policy's own, from `info()`).
    name: String,
}

fn strategy_of(name: &str) -> Result<wit::Strategy, Failure> {
    match name {
        "spread" => Ok(wit::Strategy::Spread),
        "pack" => Ok(wit::Strategy::Pack),
        other => Err(InputError { file: "strategy".into(), message: format!("{other:?} is not one of spread, pack") }.into()),
    }
}

impl Policy {
    fn request(&self, worker: &mut Plugin, document: &RequestJson) -> Result<wit::Request, Failure> {
        placing::request_of(document, "request", |flavor| worker.request_from_flavor(flavor).map_err(Failure::Plugin))
    }

    fn limits(&self, limits: Option<&Bound<'_, PyAny>>, strategy: &str) -> Result<wit::Limits, Failure> {
        let strategy = strategy_of(strategy)?;
        match limits {
            Some(l) if !l.is_none() => read::<LimitsJson>("limits", l)?.to_wit("limits", strategy).map_err(Into::into),
            _ => LimitsJson::default().to_wit("limits", strategy).map_err(Into::into),
        }
    }

    /// One host's answer, verified: exactly what `numafit fit --json` decides for it.
    fn answer(
        &self,
        worker: &Plugin,
        host: &HostArg,
        request: &wit::Request,
        a: Result<wit::Placement, wit::Rejection>,
        detail: Detail,
    ) -> Result<FitAnswer, Failure> {
        Ok(match a {
            Ok(p) => {
                match host {
                    HostArg::Kept(h) => verify::placement_on(worker.name(), &h.get().table, &h.get().index, request, &p)?,
                    HostArg::Given(t) => verify::placement(worker.name(), t, request, &p)?,
                }
                FitAnswer { fits: true, placement: detail.placements.then(|| PlacementJson::from_wit(&p)), rejection: None }
            }
            Err(r) => {
                FitAnswer { fits: false, placement: None, rejection: detail.reasons.then(|| RejectionJson::from_wit(&self.name, &r)) }
            }
        })
    }
}

/// The exception for a refused claim or release, carrying the conflict's fields.
fn conflict(py: Python<'_>, c: AccountingConflictJson) -> PyErr {
    let err = AccountingConflict::new_err(format!("{}: {}", c.code, c.message));
    let value = err.value(py);
    let _ = value.setattr("code", c.code);
    let _ = value.setattr("host_cell", c.host_cell);
    let _ = value.setattr("cpus", c.cpus);
    let _ = value.setattr("exit_code", 1);
    err
}

impl Policy {
    /// Claims (or releases) a placement on a host document: the host's check, the policy's
    /// accounting, and the host after it by the core's own accounting, as `numafit claim|release
    /// --placement --json`.
    fn account<'py>(
        &self,
        py: Python<'py>,
        host: &Bound<'py, PyAny>,
        placement: &Bound<'py, PyAny>,
        limits: Option<&Bound<'py, PyAny>>,
        claim: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let parsed = (|| {
            let record = read::<HostJson>("host", host)?.to_record("host")?;
            let placement = read::<PlacementJson>("placement", placement)?.to_wit("placement")?;
            let limits = match limits {
                Some(l) if !l.is_none() => Some(read::<LimitsJson>("limits", l)?.to_wit("limits", wit::Strategy::Spread)?),
                _ => None,
            };
            Ok::<_, Failure>((record, placement, limits))
        })();
        let (record, placement, limits) = parsed.map_err(|f| raise(py, f))?;
        let outcome = py
            .detach(|| {
                let mut worker = self.pool.take();
                let name = worker.name().to_string();
                placing::account(&name, &record, placement, limits.as_ref(), claim, "placement", |h, p| {
                    if claim { worker.claim(h, p) } else { worker.release(h, p) }.map_err(Failure::Plugin)
                })
            })
            .map_err(|f| raise(py, f))?;
        match outcome {
            Ok(next) => write(py, &HostJson::from_record(&next)),
            Err(c) => Err(conflict(py, c)),
        }
    }
}

/// A host document read and checked once, for fits on it while it is unchanged (a scheduler's
/// host cache): `fit` and `fit_many` take it where they take a host document.
/// The first fit with a policy loads it into that policy (`host-state`), so later fits cross
/// only the request; a policy swapped in loads it again on its own first fit.
#[pyclass(frozen, module = "numafit")]
struct Host {
    table: wit::Host,
    /// The index every placement on this host is verified against, built once.
    index: verify::HostIndex,
    /// The host as loaded into the policy that last fitted it (None: not yet, or refused).
    loaded: std::sync::Mutex<Option<Arc<LoadedHost>>>,
}

#[pymethods]
impl Host {
    #[new]
    fn new(py: Python<'_>, host: &Bound<'_, PyAny>) -> PyResult<Host> {
        let record = read::<HostJson>("host", host).and_then(|h| Ok(h.to_record("host")?)).map_err(|f| raise(py, f))?;
        let table = contract::host_view(&record);
        Ok(Host { index: verify::HostIndex::of(&table), table, loaded: std::sync::Mutex::new(None) })
    }
}

impl Host {
    /// This host loaded into `worker`'s policy: the one kept if that policy made it, else loaded
    /// now. None when the policy refuses to load it (its fits then send the host whole).
    fn loaded_in(&self, worker: &mut Plugin) -> Result<Option<Arc<LoadedHost>>, Failure> {
        let mut kept = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = kept.as_ref().filter(|l| worker.made(l)) {
            return Ok(Some(l.clone()));
        }
        *kept = match worker.load(self.table.clone()).map_err(Failure::Plugin)? {
            Ok(l) => Some(Arc::new(l)),
            Err(_) => None,
        };
        Ok(kept.clone())
    }
}

/// A host argument: a loaded `Host`, or a host document (read and checked now).
enum HostArg {
    Kept(Py<Host>),
    Given(Box<wit::Host>),
}

fn host_arg(what: &str, obj: &Bound<'_, PyAny>) -> Result<HostArg, Failure> {
    if let Ok(kept) = obj.cast::<Host>() {
        return Ok(HostArg::Kept(kept.clone().unbind()));
    }
    let record = read::<HostJson>(what, obj)?.to_record(what)?;
    Ok(HostArg::Given(Box::new(contract::host_view(&record))))
}

impl Policy {
    /// The answers for `hosts`, in order: loaded hosts in one `fit-loaded` call, documents in one
    /// stateless `fit-many` call, each placement verified against its host.
    fn fit_hosts(
        &self,
        py: Python<'_>,
        hosts: Vec<HostArg>,
        request: &Bound<'_, PyAny>,
        limits: Option<&Bound<'_, PyAny>>,
        strategy: &str,
        detail: Detail,
    ) -> PyResult<Vec<FitAnswer>> {
        let (document, limits) = (|| Ok::<_, Failure>((read::<RequestJson>("request", request)?, self.limits(limits, strategy)?)))()
            .map_err(|f| raise(py, f))?;
        py.detach(|| {
            let mut worker = self.pool.take();
            let request = self.request(&mut worker, &document)?;
            // Which hosts go loaded and which whole (a document, or a host the policy would not load).
            let mut loaded: Vec<(usize, Arc<LoadedHost>)> = Vec::new();
            let mut whole: Vec<(usize, wit::Host)> = Vec::new();
            for (i, h) in hosts.iter().enumerate() {
                match h {
                    HostArg::Kept(h) => match h.get().loaded_in(&mut worker)? {
                        Some(l) => loaded.push((i, l)),
                        None => whole.push((i, h.get().table.clone())),
                    },
                    HostArg::Given(t) => whole.push((i, (**t).clone())),
                }
            }
            let mut answers: Vec<Option<Result<wit::Placement, wit::Rejection>>> = (0..hosts.len()).map(|_| None).collect();
            let mut put = |at: Vec<usize>, got: Vec<Result<wit::Placement, wit::Rejection>>| {
                if got.len() != at.len() {
                    let problem = format!("{} answers for {} hosts", got.len(), at.len());
                    return Err(Failure::from(verify::VerifyError { plugin: self.name.clone(), what: "fit-many answer", problem }));
                }
                for (i, a) in at.into_iter().zip(got) {
                    answers[i] = Some(a);
                }
                Ok(())
            };
            if !loaded.is_empty() {
                let (at, tables): (Vec<usize>, Vec<Arc<LoadedHost>>) = loaded.into_iter().unzip();
                let got = worker.fit_loaded_many(&tables, &request, &limits).map_err(Failure::Plugin)?;
                put(at, got)?;
            }
            if !whole.is_empty() {
                let (at, tables): (Vec<usize>, Vec<wit::Host>) = whole.into_iter().unzip();
                let got = worker.fit_many(&tables, &request, &limits).map_err(Failure::Plugin)?;
                put(at, got)?;
            }
            hosts
                .iter()
                .zip(answers)
                .map(|(h, a)| {
                    let a = a.ok_or_else(|| verify::VerifyError {
                        plugin: self.name.clone(),
                        what: "fit-many answer",
                        problem: "a host got no answer".into(),
                    })?;
                    self.answer(&worker, h, &request, a, detail)
                })
                .collect::<Result<Vec<_>, Failure>>()
        })
        .map_err(|f| raise(py, f))
    }
}

#[pymethods]
impl Policy {
    /// `Policy()` is numafit's embedded `nova` policy; `Policy(name="balanced")` the other embedded
    /// one; `Policy(path=FILE)` a component file. The limits default to the CLI's.
    #[new]
    #[pyo3(signature = (path=None, *, name="nova", wasm=None, fuel=None, memory_mb=None, deadline_ms=None))]
    fn new(
        py: Python<'_>,
        path: Option<std::path::PathBuf>,
        name: &str,
        wasm: Option<Vec<u8>>,
        fuel: Option<u64>,
        memory_mb: Option<u64>,
        deadline_ms: Option<u64>,
    ) -> PyResult<Policy> {
        let mut limits = PluginLimits::default();
        if let Some(f) = fuel {
            limits.fuel = f;
        }
        if let Some(m) = memory_mb {
            limits.memory_bytes = usize::try_from(m.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        }
        if let Some(d) = deadline_ms {
            limits.deadline = std::time::Duration::from_millis(d);
        }
        let loaded = py.detach(|| -> Result<(Plugin, String), Failure> {
            let mut plugin = match (&path, &wasm) {
                (Some(p), None) => Plugin::from_file(Path::new(p), limits),
                (None, Some(bytes)) => Plugin::from_bytes(name, bytes, limits),
                (None, None) => Plugin::embedded_named(name, limits),
                (Some(_), Some(_)) => Err(anyhow::anyhow!("give path or wasm, not both")),
            }
            .map_err(Failure::PluginLoad)?;
            let info = plugin.info().map_err(Failure::Plugin)?;
            Ok((plugin, info.name))
        });
        let (plugin, name) = loaded.map_err(|f| raise(py, f))?;
        Ok(Policy { pool: Arc::new(PluginPool::new(plugin)), name })
    }

    /// Runs the cases every policy must answer correctly (the service's self-test before a swap),
    /// each call under the policy's limits: `{"cases", "calls", "slowest_call_ms", ...}`, or
    /// `PluginFailed` (the limit or trap) / `PluginAnswerRefused` (a wrong answer).
    fn self_test<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let outcome = py.detach(|| selftest::run(&mut self.pool.take()));
        match outcome {
            Ok(passed) => write(py, &passed),
            Err(failed) => {
                let message = format!("self-test: {}", failed.reason);
                let err = match failed.kind {
                    "fuel" | "memory" | "deadline" | "trap" => PluginFailed::new_err(message),
                    _ => PluginAnswerRefused::new_err(message),
                };
                let value = err.value(py);
                let _ = value.setattr("code", if err.is_instance_of::<PluginFailed>(py) { "PluginFailed" } else { "PluginAnswerRefused" });
                let _ = value.setattr("exit_code", 3);
                let _ = value.setattr("limit", failed.kind);
                Err(err)
            }
        }
    }

    /// `{"name", "version", "contract"}` as the component reports them.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let info = py.detach(|| self.pool.take().info().map_err(Failure::Plugin)).map_err(|f| raise(py, f))?;
        let d = PyDict::new(py);
        d.set_item("name", info.name)?;
        d.set_item("version", info.version)?;
        d.set_item("contract", info.contract)?;
        Ok(d.into_any())
    }

    /// The guest topology a REQUEST document implies (a flavor and image, or explicit cells), as
    /// `numafit request --json` prints it.
    fn request_from_flavor<'py>(&self, py: Python<'py>, request: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let document: RequestJson = read("request", request).map_err(|f| raise(py, f))?;
        let request = py.detach(|| self.request(&mut self.pool.take(), &document)).map_err(|f| raise(py, f))?;
        write(py, &GuestTopologyJson::from_wit(&request))
    }

    /// Fits a request on a host (a document or a loaded `Host`): `{"fits": True, "placement":
    /// ...}` or `{"fits": False, "rejection": ...}`, the placement verified by the host first.
    #[pyo3(signature = (host, request, limits=None, *, strategy="spread", placements=true, reasons=true))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one parameter each
    fn fit<'py>(
        &self,
        py: Python<'py>,
        host: &Bound<'py, PyAny>,
        request: &Bound<'py, PyAny>,
        limits: Option<&Bound<'py, PyAny>>,
        strategy: &str,
        placements: bool,
        reasons: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let hosts = vec![host_arg("host", host).map_err(|f| raise(py, f))?];
        let mut answers = self.fit_hosts(py, hosts, request, limits, strategy, Detail { placements, reasons })?;
        write(py, &answers.pop())
    }

    /// Fits one request on each of many hosts (documents or loaded `Host`s) in one component call:
    /// one answer per host, in order, each what `fit` gives for that host alone. With
    /// `placements=False` a fitting host's answer is `{"fits": True}` (verified all the same);
    /// with `reasons=False` a refusing host's is `{"fits": False}`.
    #[pyo3(signature = (hosts, request, limits=None, *, strategy="spread", placements=true, reasons=true))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one parameter each
    fn fit_many<'py>(
        &self,
        py: Python<'py>,
        hosts: &Bound<'py, PyAny>,
        request: &Bound<'py, PyAny>,
        limits: Option<&Bound<'py, PyAny>>,
        strategy: &str,
        placements: bool,
        reasons: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let hosts = (|| {
            let items = hosts.try_iter().map_err(|e| InputError { file: "hosts".into(), message: format!("not a list: {e}") })?;
            items
                .enumerate()
                .map(|(i, h)| {
                    let what = format!("hosts[{i}]");
                    let h = h.map_err(|e| InputError { file: what.clone(), message: e.to_string() })?;
                    host_arg(&what, &h)
                })
                .collect::<Result<Vec<_>, Failure>>()
        })()
        .map_err(|f| raise(py, f))?;
        let answers = self.fit_hosts(py, hosts, request, limits, strategy, Detail { placements, reasons })?;
        write(py, &answers)
    }

    /// The host after claiming `placement` on it (a fit's placement), or `AccountingConflict`.
    #[pyo3(signature = (host, placement, limits=None))]
    fn claim<'py>(
        &self,
        py: Python<'py>,
        host: &Bound<'py, PyAny>,
        placement: &Bound<'py, PyAny>,
        limits: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.account(py, host, placement, limits, true)
    }

    /// The host after releasing `placement` from it, or `AccountingConflict`.
    fn release<'py>(&self, py: Python<'py>, host: &Bound<'py, PyAny>, placement: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.account(py, host, placement, None, false)
    }
}

#[pymodule]
fn numafit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Policy>()?;
    m.add_class::<Host>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("InvalidInput", py.get_type::<InvalidInput>())?;
    m.add("RequestRefused", py.get_type::<RequestRefused>())?;
    m.add("PluginLoad", py.get_type::<PluginLoad>())?;
    m.add("PluginFailed", py.get_type::<PluginFailed>())?;
    m.add("PluginAnswerRefused", py.get_type::<PluginAnswerRefused>())?;
    m.add("AccountingConflict", py.get_type::<AccountingConflict>())?;
    Ok(())
}
