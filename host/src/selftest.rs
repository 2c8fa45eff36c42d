//! The recorded cases every policy passes before the service serves it (`host/selftest/`): fits
//! that verify, claim then release restoring the host, a fit on the claimed host that verifies
//! too, and a rejection for an impossible request. Each call runs under the plugin's limits, so
//! a policy that loops, bombs memory, traps or lies is stopped here, not in service.

use std::time::Instant;

use crate::contract;
use crate::formats::{self, HostJson, LimitsJson, RequestInput, RequestJson};
use crate::runtime::{wit, Plugin, PluginError};
use crate::verify;

/// What a case expects.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Fit,
    Refusal,
}

struct Case {
    name: &'static str,
    host: &'static str,
    request: &'static str,
    limits: Option<&'static str>,
    expect: Expect,
}

macro_rules! case {
    ($name:literal, $expect:expr) => {
        case!($name, $expect, None)
    };
    ($name:literal, $expect:expr, $limits:expr) => {
        Case {
            name: $name,
            host: include_str!(concat!("../selftest/", $name, "/host.json")),
            request: include_str!(concat!("../selftest/", $name, "/request.json")),
            limits: $limits,
            expect: $expect,
        }
    };
}

const CASES: &[Case] = &[
    case!("01-2cell-host-2cell-dedicated", Expect::Fit),
    case!("04-8cell-4cell-prefer", Expect::Fit),
    case!("06-8cell-4cell-prefer-emulator-2M", Expect::Fit),
    case!("10-8cell-4cell-shared-limits", Expect::Fit, Some(include_str!("../selftest/10-8cell-4cell-shared-limits/limits.json"))),
    case!("memory-starved-cell", Expect::Fit),
    case!("07-8cell-4cell-too-big", Expect::Refusal),
];

/// A passed self-test: how many calls, and the most one of them took.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Passed {
    pub cases: usize,
    pub calls: usize,
    pub slowest_call_ms: f64,
    pub most_fuel: u64,
    pub peak_memory_bytes: usize,
}

/// Why a policy failed: the case and step, and the plugin's limit when one stopped it.
#[derive(Debug)]
pub struct Failed {
    /// `fuel`, `memory`, `deadline`, `trap` when the plugin was stopped; `rule` when the host
    /// refused its answer; `contract` when it answered what a policy must not.
    pub kind: &'static str,
    pub reason: String,
}

struct Run<'a> {
    plugin: &'a mut Plugin,
    passed: Passed,
}

impl Run<'_> {
    /// One plugin call, timed and weighed; a stopped call fails the test with the limit named.
    fn call<T>(&mut self, what: &str, f: impl FnOnce(&mut Plugin) -> anyhow::Result<T>) -> Result<T, Failed> {
        let started = Instant::now();
        let outcome = f(self.plugin);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        self.passed.calls += 1;
        self.passed.slowest_call_ms = self.passed.slowest_call_ms.max(ms);
        self.passed.most_fuel = self.passed.most_fuel.max(self.plugin.fuel_used().unwrap_or(0));
        self.passed.peak_memory_bytes = self.passed.peak_memory_bytes.max(self.plugin.memory_bytes().unwrap_or(0));
        outcome.map_err(|e| {
            let kind = e.downcast_ref::<PluginError>().map_or("trap", PluginError::kind);
            Failed { kind, reason: format!("{what}: {e:#}") }
        })
    }
}

fn rule(what: &str, problem: impl std::fmt::Display) -> Failed {
    Failed { kind: "rule", reason: format!("{what}: {problem}") }
}

/// Runs every case against `plugin`.
pub fn run(plugin: &mut Plugin) -> Result<Passed, Failed> {
    let mut run = Run { plugin, passed: Passed { cases: 0, calls: 0, slowest_call_ms: 0.0, most_fuel: 0, peak_memory_bytes: 0 } };
    for case in CASES {
        one(&mut run, case)?;
        run.passed.cases += 1;
    }
    Ok(run.passed)
}

fn one(run: &mut Run, case: &Case) -> Result<(), Failed> {
    let name = case.name;
    // The recorded cases are this build's own files: one that does not read is a build defect,
    // reported like any failure rather than a panic.
    let broken = |e: formats::InputError| Failed { kind: "contract", reason: format!("self-test case {name} is unreadable: {e}") };
    let host = formats::parse_json::<HostJson>(name, case.host).and_then(|h| h.to_record(name)).map_err(broken)?;
    let host = contract::host_view(&host);
    let request = match formats::parse_json::<RequestJson>(name, case.request).and_then(|r| r.to_input(name)).map_err(broken)? {
        RequestInput::Explicit(r) => r,
        RequestInput::Flavor(f) => {
            let what = format!("case {name}: request-from-flavor");
            run.call(&what, |p| p.request_from_flavor(&f))?.map_err(|e| rule(&what, format!("{}: {}", e.code, e.message)))?
        }
    };
    let limits = match case.limits {
        Some(text) => formats::parse_json::<LimitsJson>(name, text).and_then(|l| l.to_wit(name, wit::Strategy::Spread)).map_err(broken)?,
        None => LimitsJson::default().to_wit(name, wit::Strategy::Spread).map_err(broken)?,
    };
    let what = format!("case {name}: fit");
    let answer = run.call(&what, |p| p.fit(&host, &request, &limits))?;
    let plugin = run.plugin.name().to_string();
    let placement = match (case.expect, answer) {
        (Expect::Refusal, Err(_)) => return Ok(()),
        (Expect::Refusal, Ok(_)) => return Err(rule(&what, "placed a request no host cell can hold")),
        (Expect::Fit, Err(r)) => return Err(rule(&what, format!("refused a request that fits: {}", r.summary))),
        (Expect::Fit, Ok(p)) => p,
    };
    verify::placement(&plugin, &host, &request, &placement).map_err(|e| rule(&what, e))?;
    let what = format!("case {name}: claim");
    let claimed = run.call(&what, |p| p.claim(&host, &placement))?.map_err(|e| rule(&what, e.message))?;
    verify::accounting(&plugin, &host, &claimed, &placement, true).map_err(|e| rule(&what, e))?;
    // Again on the host it just claimed: pinned CPUs and used memory are there now.
    let what = format!("case {name}: fit on the claimed host");
    if let Ok(again) = run.call(&what, |p| p.fit(&claimed, &request, &limits))? {
        verify::placement(&plugin, &claimed, &request, &again).map_err(|e| rule(&what, e))?;
    }
    let what = format!("case {name}: release");
    let released = run.call(&what, |p| p.release(&claimed, &placement))?.map_err(|e| rule(&what, e.message))?;
    verify::accounting(&plugin, &claimed, &released, &placement, false).map_err(|e| rule(&what, e))?;
    if format!("{released:?}") != format!("{host:?}") {
        return Err(rule(&what, "claim then release did not give back the host it started from"));
    }
    Ok(())
}
