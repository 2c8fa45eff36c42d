//! The commands that apply placements: `run`, `gc`, `apply`, `render`, `adopt`. They read the
//! ledger's claims (or a placement file) and hand them to `crate::apply`.

use std::ffi::OsString;
use std::path::Path;

use numafit_plugin::{HostTopology, Placement};
use serde::Serialize;

use super::{
    claim_on_ledger, instance_id, name_of, print_claim, print_conflict, print_json, read_host, report_unclaimed, DiscoverArgs, Outcome,
    PluginArgs, StateArgs, OUT,
};
use crate::apply::render::{self, Format, RenderContext};
use crate::apply::{adopt, cgroup, process, Binding, MemPolicy};
use crate::discover;
use crate::failure::{Failure, FlagError};
use crate::formats::{self, PlacementJson};
use crate::ledger::{Claim, NewClaim, Owner, PolicyVersion, Recorded};
use crate::placing::{self, ClaimOutcome};
use crate::verify;

/// The memory policy: the flag, else the request's `hw:numa_mempolicy`, else strict.
fn mem_policy(flag: Option<MemPolicy>, request: &serde_json::Value, what: &str) -> Result<MemPolicy, Failure> {
    if let Some(p) = flag {
        return Ok(p);
    }
    MemPolicy::of_request(request)
        .map(Option::unwrap_or_default)
        .map_err(|m| formats::InputError { file: what.to_string(), message: m }.into())
}

fn claim_of(state: &StateArgs, id: &str) -> Result<Claim, Failure> {
    let id = instance_id(id)?;
    state
        .open()?
        .claims()?
        .into_iter()
        .find(|c| c.instance == id)
        .ok_or_else(|| FlagError(format!("--instance {id:?}: no claim in the ledger")).into())
}

/// Moves what the command buffered for stdout to stderr: `run`'s stdout is its child's.
fn buffered_to_stderr() {
    let text = OUT.with(|o| std::mem::take(&mut *o.borrow_mut()));
    eprint!("{text}");
}

/// `numafit run`: claim, start CMD inside the placement, pass signals on, release when it exits,
/// and exit as it did. Returns only when nothing was started.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    instance: Option<&str>,
    request: &Path,
    mem_flag: Option<MemPolicy>,
    limits: Option<&Path>,
    discover: &DiscoverArgs,
    state: &StateArgs,
    args: &PluginArgs,
    command: &[OsString],
) -> Result<Outcome, Failure> {
    // First, before the runtime starts any thread: signals queue for the wait below.
    let held = process::hold_signals()?;
    let me = process::me()?;
    let id = match instance {
        Some(id) => instance_id(id)?.to_string(),
        None => format!("run-{}-{}", me.pid, me.start_ticks),
    };
    let made = claim_on_ledger(&id, request, discover, state, limits, args, Some(me))?;
    let (mut ledger, base, document) = (made.ledger, made.base, made.document);
    let claim = match made.outcome {
        ClaimOutcome::Claimed { claim, new: true } => claim,
        // The instance was claimed for this request already: run in it unless a live process does.
        ClaimOutcome::Claimed { claim, new: false } => match claim.owner {
            Some(o) if o != me && process::alive(o) => {
                print_conflict(true, false, "InstanceExists", None, &[], &format!("instance {id:?} runs already (pid {})", o.pid))?;
                buffered_to_stderr();
                return Ok(Outcome::Refused);
            }
            previous => {
                if !ledger.transfer(&id, previous, me)? {
                    return Err(FlagError(format!("--instance {id:?}: its claim changed hands while numafit took it; try again")).into());
                }
                claim
            }
        },
        other => {
            let mut plugin = made.plugin;
            let outcome = report_unclaimed(&id, other, &mut plugin, args.json)?;
            buffered_to_stderr();
            return Ok(outcome);
        }
    };
    drop(made.plugin);
    let release = |ledger: &mut crate::ledger::Ledger, owner: Owner| {
        if let Err(e) = ledger.release_owned(&id, owner) {
            eprintln!("numafit: error: releasing instance {id:?}: {e}");
        }
    };
    let prepared = Binding::of(&claim.placement, &base).map_err(Failure::from).and_then(|binding| {
        process::check_allowed(&binding)?;
        Ok((binding, mem_policy(mem_flag, &document, &name_of(request))?))
    });
    let (binding, policy) = match prepared {
        Ok(p) => p,
        Err(e) => {
            release(&mut ledger, me);
            return Err(e);
        }
    };
    let Some((program, program_args)) = command.split_first() else {
        release(&mut ledger, me);
        return Err(FlagError("run: give the command after --".into()).into());
    };
    let launch = process::Launch { instance: &id, binding: &binding, mem_policy: policy, program, args: program_args };
    let mut child = match process::spawn(&launch) {
        Ok(child) => child,
        Err(e) => {
            release(&mut ledger, me);
            eprintln!("numafit: error: {e}");
            std::process::exit(i32::from(process::start_failure_code(&e)));
        }
    };
    // The claim is the child's from here: if numafit dies, `gc` releases it once the child is gone.
    let owner = match process::identity(child.id()) {
        Some(child_id) => match ledger.transfer(&id, Some(me), child_id) {
            Ok(true) => child_id,
            Ok(false) | Err(_) => me,
        },
        None => me,
    };
    let status = process::wait(&mut child, &held);
    release(&mut ledger, owner);
    match status {
        Ok(status) => process::exit_like(status),
        Err(e) => Err(e.into()),
    }
}

#[derive(Serialize)]
struct GcJson {
    released: Vec<GcReleased>,
    kept: usize,
}

#[derive(Serialize)]
struct GcReleased {
    instance: String,
    pid: u32,
}

/// `numafit gc`: releases every claim whose owning process is gone.
pub(super) fn gc(state: &StateArgs, json: bool) -> Result<Outcome, Failure> {
    let mut ledger = state.open()?;
    let mut released = Vec::new();
    let claims = ledger.claims()?;
    for c in &claims {
        let Some(owner) = c.owner else { continue };
        if process::alive(owner) {
            continue;
        }
        // Released only if it still belongs to that process: a claim re-made since stays.
        if ledger.release_owned(&c.instance, owner)?.is_some() {
            released.push(GcReleased { instance: c.instance.clone(), pid: owner.pid });
        }
    }
    let kept = claims.len() - released.len();
    if json {
        print_json(&GcJson { released, kept })?;
    } else {
        for r in &released {
            super::outln!("released instance {} (its process {} is gone)", r.instance, r.pid);
        }
        super::outln!("{} claim(s) released, {kept} kept", released.len());
    }
    Ok(Outcome::Done)
}

#[derive(Serialize)]
struct AppliedJson {
    instance: String,
    cgroup: String,
    cpus: String,
    mems: String,
    created: Vec<String>,
}

/// `numafit apply`: a claim's CPUs and nodes into a cgroup's cpuset.
pub(super) fn apply(
    id: &str,
    group: &str,
    root: &Path,
    create: bool,
    discover: &DiscoverArgs,
    state: &StateArgs,
    json: bool,
) -> Result<Outcome, Failure> {
    let claim = claim_of(state, id)?;
    let base = discover.host()?;
    let binding = Binding::of(&claim.placement, &base)?;
    let w = cgroup::apply(root, group, create, &binding)?;
    let answer = AppliedJson {
        instance: claim.instance,
        cgroup: w.group.display().to_string(),
        cpus: w.cpus,
        mems: w.mems,
        created: w.created.iter().map(|p| p.display().to_string()).collect(),
    };
    if json {
        print_json(&answer)?;
    } else {
        super::outln!(
            "instance {}: cpuset.cpus {} and cpuset.mems {} written to {}",
            answer.instance,
            answer.cpus,
            answer.mems,
            answer.cgroup
        );
    }
    Ok(Outcome::Done)
}

/// Where `render` takes its placement from.
pub(super) enum RenderSource<'a> {
    Claim(&'a str),
    Files { placement: &'a Path, host: &'a Path },
}

/// `numafit render`: a placement in another runtime's words.
pub(super) fn render(
    source: RenderSource,
    format: Format,
    mem_flag: Option<MemPolicy>,
    discover: &DiscoverArgs,
    state: &StateArgs,
) -> Result<Outcome, Failure> {
    let (instance, placement, host, request, file) = match source {
        RenderSource::Claim(id) => {
            let c = claim_of(state, id)?;
            (c.instance.clone(), c.placement, discover.host()?, c.request, None)
        }
        RenderSource::Files { placement, host } => {
            let p: PlacementJson = formats::read_json(placement)?;
            let stem = placement.file_stem().map_or_else(|| "instance".into(), |s| s.to_string_lossy().into_owned());
            (stem, p, read_host(Some(host), discover)?, serde_json::Value::Null, Some(name_of(placement)))
        }
    };
    // A placement file that does not fit its host is bad input; a claim that no longer fits this
    // machine is the machine's (the ledger's `status` names it too).
    let binding = Binding::of(&placement, &host).map_err(|e| match file {
        Some(file) => Failure::from(formats::InputError { file, message: e.message }),
        None => Failure::from(crate::apply::ApplyError::new(format!("the claim of {instance:?}"), e.message)),
    })?;
    let cx = RenderContext { instance: &instance, mem_policy: mem_policy(mem_flag, &request, "the claim's request")? };
    let text = render::render(format, &binding, &host, &cx)?;
    OUT.with(|o| o.borrow_mut().push_str(&text));
    Ok(Outcome::Done)
}

/// `numafit adopt`: records a placement made outside numafit.
#[allow(clippy::too_many_arguments)]
pub(super) fn adopt(
    id: &str,
    cpus: &str,
    mems: &str,
    memory: &str,
    dedicated: bool,
    discover: &DiscoverArgs,
    state: &StateArgs,
    json: bool,
) -> Result<Outcome, Failure> {
    let id = instance_id(id)?;
    let flag = |name: &str, v: &str, m: String| Failure::from(FlagError(format!("{name} {v:?}: {m}")));
    let adoption = adopt::Adoption {
        cpus: discover::parse_list(cpus).map_err(|m| flag("--cpus", cpus, m))?,
        mems: discover::parse_list(mems).map_err(|m| flag("--mems", mems, m))?,
        memory_mb: adopt::parse_memory(memory).map_err(|m| flag("--memory", memory, m))?,
        dedicated,
    };
    let base = discover.host()?;
    let (placement, request) = adopt::placement(&adoption, &base).map_err(|e| FlagError(e.to_string()))?;
    let policy = PolicyVersion { name: adopt::ADOPTED.into(), version: env!("CARGO_PKG_VERSION").into(), sha256: String::new() };
    let mut ledger = state.open()?;
    let admit = |host: &HostTopology, p: &Placement| verify::admit(host, p, None);
    let new = NewClaim { instance: id.to_string(), request, placement, policy, owner: None, generation: None };
    match ledger.record(&base, new, &admit)? {
        Recorded::New(c) | Recorded::Unchanged(c) => {
            print_claim(&c, json, "adopted")?;
            Ok(Outcome::Done)
        }
        Recorded::Conflict(existing) => {
            print_conflict(true, json, "InstanceExists", None, &[], &placing::exists_message(id, &existing))?;
            Ok(Outcome::Refused)
        }
        // Adoption asks no generation.
        Recorded::Moved { generation } => {
            print_conflict(true, json, "StaleGeneration", None, &adoption.cpus, &format!("the ledger moved to generation {generation}"))?;
            Ok(Outcome::Refused)
        }
        Recorded::Stale(why) => {
            // Name the claims that hold the CPUs asked for, so the operator knows what overlaps.
            let holders: Vec<String> = ledger
                .claims()?
                .iter()
                .filter(|c| c.placement.cells.iter().any(|cell| cell.cpu_pinning.values().any(|p| adoption.cpus.contains(p))))
                .map(|c| c.instance.clone())
                .collect();
            let by = if holders.is_empty() { String::new() } else { format!(" (pinned by instance {})", holders.join(", ")) };
            print_conflict(true, json, "ComputeResourcesUnavailable", None, &adoption.cpus, &format!("cannot adopt {id:?}: {why}{by}"))?;
            Ok(Outcome::Refused)
        }
    }
}
