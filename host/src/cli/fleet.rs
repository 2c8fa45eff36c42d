//! `numafit filter`: one request against a fleet inventory in one policy call, each host's answer
//! checked as `numafit fit` checks it, scored by the host's weighers.

use std::path::Path;

use super::{fit_limits, name_of, print_json, read_request, Outcome, PluginArgs, StrategyArg, OUT};
use crate::contract;
use crate::failure::{Failure, FlagError};
use crate::fleet::{self, Weights};
use crate::formats::{self, FilterJson, FilteredHostJson, InventoryEntryJson};

pub(super) fn filter(
    inventory: &Path,
    request: &Path,
    limits: Option<&Path>,
    strategy: StrategyArg,
    weighers: &[String],
    args: &PluginArgs,
) -> Result<Outcome, Failure> {
    let weights = Weights::parse(weighers, "--weigher").map_err(FlagError)?;
    let file = name_of(inventory);
    let hosts = formats::inventory(&file, &formats::read_json::<Vec<InventoryEntryJson>>(inventory)?)?;
    let mut plugin = super::load_plugin(args)?;
    let wrequest = read_request(request, &mut plugin)?;
    let wlimits = fit_limits(limits, strategy)?;
    let shown: Vec<_> = hosts.iter().map(|(_, h)| contract::host_view(h)).collect();
    let answers = if shown.is_empty() { Vec::new() } else { plugin.fit_many(&shown, &wrequest, &wlimits).map_err(Failure::Plugin)? };
    let policy = plugin.info().map(|i| i.name).unwrap_or_else(|_| plugin.name().to_string());
    let out = fleet::judge(plugin.name(), &policy, &fleet::Candidate::of(&hosts, &shown), &wrequest, &wlimits, Some(&weights), answers)?;
    let fitting = out.iter().filter(|h| h.fits).count();
    if args.json {
        print_json(&FilterJson { hosts: out })?;
    } else {
        print_table(&out);
    }
    Ok(if fitting > 0 { Outcome::Done } else { Outcome::Refused })
}

/// The hosts in inventory order: fits and score, the host cells used, or why not.
fn print_table(hosts: &[FilteredHostJson]) {
    let fitting = hosts.iter().filter(|h| h.fits).count();
    outln!("{fitting} of {} hosts fit", hosts.len());
    let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(4).max(4);
    outln!("  {:<width$}  {:<4}  {:>7}  placement / why not", "host", "fits", "score");
    for h in hosts {
        let detail = match (&h.placement, &h.rejection) {
            (Some(p), _) => {
                let mut cells: Vec<String> = p.cells.iter().map(|c| c.host_cell.to_string()).collect();
                cells.dedup();
                if cells.is_empty() {
                    "no NUMA constraint".to_string()
                } else {
                    format!("host cells {}", cells.join(","))
                }
            }
            (None, Some(r)) => r.summary.clone(),
            (None, None) => String::new(),
        };
        let score = if h.fits { format!("{:.3}", h.score) } else { "-".into() };
        outln!("  {:<width$}  {:<4}  {score:>7}  {detail}", h.name, if h.fits { "yes" } else { "no" });
    }
}
