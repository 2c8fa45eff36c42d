//! `numafit simulate` and `numafit generate`: a trace replayed over a fleet through the real
//! component, each arrival decided as `numafit filter` decides (one fit-loaded call over every
//! host, each answer checked and scored by the host's weighers, the best host taken), claimed
//! and released by the core's accounting.

use std::path::Path;
use std::sync::Arc;

use super::{name_of, print_json, Outcome, OUT};
use crate::contract::{self, latest::convert};
use crate::failure::{Failure, FlagError};
use crate::fleet::{self, Candidate, Weights};
use crate::formats::{self, InputError, InventoryEntryJson};
use crate::runtime::{wit, LoadedHost, Plugin, PluginLimits};
use crate::simulate::{self, Decision, EventJson, Report};
use crate::verify;

/// `nova`, `balanced`, or either with its weighers: `balanced=pack,fewest-cells=0.5`. Without
/// weighers each policy chooses hosts its own way: `nova` spreads (Nova's default weighers),
/// `balanced` packs cells, then hosts (`BALANCED`).
/// `balanced`'s weighers: best fit per NUMA cell first (whole cells stay free for the guests that
/// need a whole cell), the fuller host second (whole hosts stay free for the guests that need
/// many cells). On generated 100-host fleets and 1,000-instance traces (seeds 1-5) this placed
/// 37-76% more instances before the first rejection than spread; host packing alone -10% to +43%.
const BALANCED: &[&str] = &["cell-pack", "pack=0.5"];

struct Run {
    policy: String,
    weighers: Vec<String>,
}

fn run_of(spec: &str) -> Result<Run, FlagError> {
    let (policy, weighers) = spec.split_once('=').map_or((spec, ""), |(p, w)| (p, w));
    if !matches!(policy, "nova" | "balanced") {
        return Err(FlagError(format!("--policy {spec}: {policy:?} is not one of nova, balanced")));
    }
    let mut weighers: Vec<String> = weighers.split(',').map(str::trim).filter(|w| !w.is_empty()).map(str::to_string).collect();
    if weighers.is_empty() {
        let default: &[&str] = if policy == "balanced" { BALANCED } else { &["spread"] };
        weighers.extend(default.iter().map(|w| w.to_string()));
    }
    Weights::parse(&weighers, &format!("--policy {spec}:")).map_err(FlagError)?;
    Ok(Run { policy: policy.to_string(), weighers })
}

/// What a decision keeps of a host until it changes: its view, index, and loaded state.
struct Kept {
    version: u64,
    shown: wit::Host,
    index: verify::HostIndex,
    loaded: Arc<LoadedHost>,
}

fn replay_one(
    run: &Run,
    names: &[String],
    hosts: &[numafit_plugin::HostTopology],
    events: &[EventJson],
    limits: PluginLimits,
) -> Result<Report, Failure> {
    let mut plugin = Plugin::embedded_named(&run.policy, limits).map_err(Failure::PluginLoad)?;
    let weights = Weights::parse(&run.weighers, "--policy").map_err(FlagError)?;
    let fit_limits = formats::LimitsJson::default().to_wit("", wit::Strategy::Spread)?;
    let mut kept: Vec<Option<Kept>> = hosts.iter().map(|_| None).collect();
    // The fleet empty, loaded once: a rejected arrival that fits none of it is unplaceable.
    let mut empty = Vec::with_capacity(hosts.len());
    for (name, h) in names.iter().zip(hosts) {
        match plugin.load(contract::host_view(h)).map_err(Failure::Plugin)? {
            Ok(l) => empty.push(Arc::new(l)),
            Err(why) => return Err(FlagError(format!("fleet host {name:?}: the policy refuses it: {why}")).into()),
        }
    }
    let bar = indicatif::ProgressBar::new(events.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} events {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(run.policy.clone());
    let report = simulate::replay(
        &run.policy,
        &run.weighers,
        names,
        hosts.to_vec(),
        events,
        |hosts, versions, request, instance| -> Result<Decision, Failure> {
            let what = format!("trace instance {instance:?}");
            let request = crate::placing::request_of(request, &what, |f| plugin.request_from_flavor(f).map_err(Failure::Plugin))?;
            for (i, h) in hosts.iter().enumerate() {
                if kept[i].as_ref().is_none_or(|k| k.version != versions[i] || !plugin.made(&k.loaded)) {
                    let shown = contract::host_view(h);
                    let loaded = match plugin.load(shown.clone()).map_err(Failure::Plugin)? {
                        Ok(l) => Arc::new(l),
                        Err(why) => return Err(FlagError(format!("fleet host {:?}: the policy refuses it: {why}", names[i])).into()),
                    };
                    kept[i] = Some(Kept { version: versions[i], index: verify::HostIndex::of(&shown), shown, loaded });
                }
            }
            let kept: Vec<&Kept> = kept.iter().flatten().collect();
            let loaded: Vec<Arc<LoadedHost>> = kept.iter().map(|k| k.loaded.clone()).collect();
            let answers = plugin.fit_loaded_many(&loaded, &request, &fit_limits).map_err(Failure::Plugin)?;
            let candidates: Vec<Candidate> = names
                .iter()
                .zip(hosts)
                .zip(&kept)
                .map(|((name, host), k)| Candidate { name, host, shown: &k.shown, index: Some(&k.index) })
                .collect();
            let placements: Vec<Option<wit::Placement>> = answers.iter().map(|a| a.as_ref().ok().cloned()).collect();
            let judged = fleet::judge(plugin.name(), &run.policy, &candidates, &request, &fit_limits, Some(&weights), answers)?;
            // The best score; the first host among equals (inventory order).
            let best = judged.iter().enumerate().filter(|(_, h)| h.fits).fold(None, |best: Option<(usize, f64)>, (i, h)| match best {
                Some((_, s)) if s >= h.score => best,
                _ => Some((i, h.score)),
            });
            match best.and_then(|(i, _)| Some((i, placements[i].clone()?))) {
                Some((host, p)) => {
                    let placement = convert::placement_from_wit(p).map_err(|e| FlagError(format!("{what}: the placement: {e}")))?;
                    Ok(Decision::Placed { host, placement })
                }
                None => {
                    let why =
                        judged.first().and_then(|h| h.rejection.as_ref()).map_or_else(|| "no hosts".to_string(), |r| r.summary.clone());
                    let on_empty = plugin.fit_loaded_many(&empty, &request, &fit_limits).map_err(Failure::Plugin)?;
                    let unplaceable = on_empty.iter().all(|a| a.is_err());
                    Ok(Decision::Rejected { reason: format!("no host fits (first host: {why})"), unplaceable })
                }
            }
        },
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    Ok(report)
}

pub(super) fn simulate(
    fleet_file: &Path,
    trace_file: &Path,
    policies: &[String],
    plot: Option<&Path>,
    json: bool,
    limits: PluginLimits,
) -> Result<Outcome, Failure> {
    let runs: Vec<Run> =
        if policies.is_empty() { vec![run_of("nova")?] } else { policies.iter().map(|p| run_of(p)).collect::<Result<_, _>>()? };
    let file = name_of(fleet_file);
    let fleet = formats::inventory(&file, &formats::read_json::<Vec<InventoryEntryJson>>(fleet_file)?)?;
    if fleet.is_empty() {
        return Err(InputError { file, message: "the fleet has no hosts".into() }.into());
    }
    let (names, hosts): (Vec<String>, Vec<_>) = fleet.into_iter().unzip();
    let trace = name_of(trace_file);
    let events: Vec<EventJson> = formats::read_json(trace_file)?;
    simulate::check_trace(&trace, &events)?;
    let reports: Vec<Report> = runs.iter().map(|r| replay_one(r, &names, &hosts, &events, limits)).collect::<Result<_, _>>()?;
    if let Some(path) = plot {
        let series: Vec<(String, &[simulate::Sample])> = reports.iter().map(|r| (label(r), r.samples.as_slice())).collect();
        std::fs::write(path, crate::draw::utilisation_svg(&series, &format!("{} hosts, {} events", names.len(), events.len())))
            .map_err(|e| FlagError(format!("--plot {}: cannot write: {e}", path.display())))?;
    }
    if json {
        print_json(&serde_json::json!({ "hosts": names.len(), "events": events.len(), "runs": reports }))?;
    } else {
        print_reports(&reports, names.len(), events.len());
    }
    Ok(Outcome::Done)
}

fn label(r: &Report) -> String {
    format!("{} ({})", r.policy, r.weighers.join(", "))
}

fn print_reports(reports: &[Report], hosts: usize, events: usize) {
    outln!("{hosts} hosts, {events} events");
    outln!(
        "  {:<32} {:>7} {:>8} {:>11} {:>13} {:>21} {:>15} {:>18}  NUMA spans (cells:instances)",
        "policy",
        "placed",
        "rejected",
        "unplaceable",
        "failed claims",
        "placed before reject",
        "first reject at",
        "stranded CPUs/GiB"
    );
    for r in reports {
        let first = r.first_rejection.as_ref().map_or_else(|| "never".to_string(), |f| format!("{:.0} s", f.t));
        let spans: Vec<String> = r.numa_spans.iter().map(|(cells, n)| format!("{cells}:{n}")).collect();
        let stranded = format!("{}/{}", r.stranded_cpus, r.stranded_memory_mib / 1024);
        outln!(
            "  {:<32} {:>7} {:>8} {:>11} {:>13} {:>21} {:>15} {:>18}  {}",
            label(r),
            r.placed,
            r.rejected,
            r.unplaceable,
            r.failed_claims,
            r.placed_before_first_rejection,
            first,
            stranded,
            spans.join(" ")
        );
    }
}

/// `numafit generate fleet|trace`: the shipped fleets and traces, deterministic per seed.
pub(super) fn generate_fleet(hosts: usize, seed: u64) -> Result<Outcome, Failure> {
    print_json(&simulate::generate_fleet(hosts, seed))?;
    Ok(Outcome::Done)
}

pub(super) fn generate_trace(instances: usize, mixes: &[String], gap: f64, life: f64, seed: u64) -> Result<Outcome, Failure> {
    for m in mixes {
        if !simulate::MIXES.contains(&m.as_str()) {
            return Err(FlagError(format!("--mix {m}: not one of {}", simulate::MIXES.join(", "))).into());
        }
    }
    if !(gap.is_finite() && gap > 0.0 && life.is_finite() && life > 0.0) {
        return Err(FlagError(format!("--gap {gap} / --life {life}: both must be positive seconds")).into());
    }
    let mixes = if mixes.is_empty() { simulate::MIXES.iter().map(|m| m.to_string()).collect() } else { mixes.to_vec() };
    print_json(&simulate::generate_trace(instances, &mixes, gap, life, seed))?;
    Ok(Outcome::Done)
}
