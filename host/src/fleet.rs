//! Choosing among machines: the weighers that score a checked placement on a host, and their
//! weights. Scores are the host's own, computed from the host of record and the placement after
//! `verify` accepted it, so a policy cannot talk a host up. Each weigher scores one host on its
//! own in [0, 1] (higher is better), so a host's score does not move with the rest of the list
//! (Nova normalizes across the candidates; a scheduler comparing batches needs stable numbers);
//! the host's score is the weighted sum.

use numafit_plugin::named_enum;
use numafit_plugin::topology::HostTopology;
use numafit_plugin::{HostCell, Named, Placement};

use crate::contract::{latest::convert, wit};
use crate::formats::{FilteredHostJson, PlacementJson, RejectionJson};
use crate::verify::{self, VerifyError};

named_enum! {
    /// What makes one host better than another for a placement.
    pub enum Weigher {
        /// Least left free after the placement (CPUs and memory): fills hosts before starting
        /// new ones, strands least.
        Pack = "pack",
        /// Most left free after the placement: Nova's default (RAM and CPU weighers).
        Spread = "spread",
        /// The nearest cells: the local distance over the largest distance among the cells the
        /// placement uses (SLIT; unknown distances count as Linux's default remote 20 vs local 10).
        NumaDistance = "numa-distance",
        /// The fewest cells: 1 / the cells the placement uses.
        FewestCells = "fewest-cells",
        /// Best fit per NUMA cell: the fullest of the CPUs, the memory and the large-page pools of
        /// each cell the placement uses, after it (the mean over those cells). NUMA requests are
        /// refused cell by cell, so whole cells left free, not free hosts, are what the large
        /// guests need.
        CellPack = "cell-pack",
    }
}

/// Weighers and their weights, from `--weigher NAME[=WEIGHT]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights(pub Vec<(Weigher, f64)>);

impl Default for Weights {
    /// Nova's default choice among hosts: spread.
    fn default() -> Weights {
        Weights(vec![(Weigher::Spread, 1.0)])
    }
}

impl Weights {
    /// `["pack=2", "numa-distance"]`; none given: the default. A weigher named twice is refused.
    /// `what` names where the specs came from in errors (`--weigher`, `field weighers:`).
    pub fn parse(specs: &[String], what: &str) -> Result<Weights, String> {
        if specs.is_empty() {
            return Ok(Weights::default());
        }
        let mut weights: Vec<(Weigher, f64)> = Vec::new();
        for spec in specs {
            let (name, weight) = match spec.split_once('=') {
                Some((n, w)) => {
                    let weight: f64 = w.trim().parse().map_err(|_| format!("{what} {spec}: weight {w:?} is not a number"))?;
                    (n.trim(), weight)
                }
                None => (spec.trim(), 1.0),
            };
            if !weight.is_finite() {
                return Err(format!("{what} {spec}: weight {weight} is not finite"));
            }
            let weigher = Weigher::from_name(name)
                .ok_or_else(|| format!("{what} {spec}: unknown weigher {name:?}; expected one of {}", Weigher::choices()))?;
            if weights.iter().any(|(w, _)| *w == weigher) {
                return Err(format!("{what} {spec}: {name} is given twice"));
            }
            weights.push((weigher, weight));
        }
        Ok(Weights(weights))
    }

    /// The weighted score of `placement` on `before`, where `after` holds the cells the claim
    /// changes as it leaves them (or every cell of the host after it, as `verify::admit` gives it).
    pub fn score(&self, before: &HostTopology, after: &[HostCell], placement: &Placement) -> f64 {
        self.0.iter().map(|&(w, weight)| weight * w.score(before, after, placement)).sum()
    }
}

/// Linux's distances when the firmware gives none (`LOCAL_DISTANCE`, `REMOTE_DISTANCE`).
const LOCAL_DISTANCE: u32 = 10;
const REMOTE_DISTANCE: u32 = 20;

impl Weigher {
    /// This weigher's score in [0, 1].
    pub fn score(self, before: &HostTopology, after: &[HostCell], placement: &Placement) -> f64 {
        match self {
            Weigher::Pack => used_fraction(before, after),
            Weigher::Spread => 1.0 - used_fraction(before, after),
            Weigher::NumaDistance => nearness(before, placement),
            Weigher::FewestCells => {
                let mut cells: Vec<u32> = placement.cells.iter().map(|c| c.host_cell).collect();
                cells.sort_unstable();
                cells.dedup();
                1.0 / cells.len().max(1) as f64
            }
            Weigher::CellPack => cell_fill(before, after, placement),
        }
    }
}

/// The share of the host's CPUs and memory in use after a placement (`host`'s cells, those in
/// `after` as they are there): the mean of the two fractions, each over the whole host (floating
/// vCPUs past the shared CPUs count as those CPUs full).
fn used_fraction(host: &HostTopology, after: &[HostCell]) -> f64 {
    let (mut cpus, mut cpus_used, mut memory, mut memory_used) = (0.0, 0.0, 0.0, 0.0);
    for c in host.cells.iter().map(|c| after.iter().find(|a| a.id == c.id).unwrap_or(c)) {
        let shared = c.cpuset.len() as f64;
        cpus += c.pcpuset.union(&c.cpuset).len() as f64;
        cpus_used += c.pinned_cpus.len() as f64 + (c.cpu_usage as f64).min(shared);
        memory += c.memory as f64;
        memory_used += c.memory_usage as f64;
    }
    let fraction = |used: f64, total: f64| if total > 0.0 { (used / total).clamp(0.0, 1.0) } else { 1.0 };
    (fraction(cpus_used, cpus) + fraction(memory_used, memory)) / 2.0
}

/// The mean, over the host cells `placement` uses, of the fullest of the cell's CPUs, memory and
/// large-page pools, after the placement (`after`'s version of the cell where it has one).
fn cell_fill(host: &HostTopology, after: &[HostCell], placement: &Placement) -> f64 {
    let fraction = |used: f64, total: f64| if total > 0.0 { (used / total).clamp(0.0, 1.0) } else { 1.0 };
    let mut used: Vec<u32> = placement.cells.iter().map(|c| c.host_cell).collect();
    used.sort_unstable();
    used.dedup();
    let fills: Vec<f64> = used
        .iter()
        .filter_map(|&id| {
            let cell = after.iter().find(|a| a.id == id).or_else(|| host.cells.iter().find(|c| c.id == id))?;
            let cpus = fraction(
                cell.pinned_cpus.len() as f64 + (cell.cpu_usage as f64).min(cell.cpuset.len() as f64),
                cell.pcpuset.union(&cell.cpuset).len() as f64,
            );
            let memory = fraction(cell.memory_usage as f64, cell.memory as f64);
            // Every pool of large pages (past the cell's smallest page), whichever the
            // placement takes: a guest of small pages also belongs where the large ones are gone.
            let smallest = cell.mempages.iter().map(|p| p.size_kb).min();
            let pages = cell
                .mempages
                .iter()
                .filter(|p| Some(p.size_kb) != smallest && p.total > 0)
                .map(|p| fraction((p.used + p.reserved) as f64, p.total as f64))
                .fold(0.0, f64::max);
            Some(cpus.max(memory).max(pages))
        })
        .collect();
    if fills.is_empty() {
        return 0.0;
    }
    fills.iter().sum::<f64>() / fills.len() as f64
}

/// Local distance over the largest distance between any two cells the placement uses.
fn nearness(host: &HostTopology, placement: &Placement) -> f64 {
    let at: Vec<usize> = placement.cells.iter().filter_map(|c| host.cells.iter().position(|h| h.id == c.host_cell)).collect();
    let distance = |a: usize, b: usize| host.distance(a, b).unwrap_or(if a == b { LOCAL_DISTANCE } else { REMOTE_DISTANCE });
    let local = at.iter().map(|&a| distance(a, a)).min().unwrap_or(LOCAL_DISTANCE).max(1);
    let farthest = at.iter().flat_map(|&a| at.iter().map(move |&b| (a, b))).map(|(a, b)| distance(a, b)).max().unwrap_or(local);
    (local as f64 / farthest.max(local) as f64).clamp(0.0, 1.0)
}

/// One host of a fleet as a judgement reads it: its name, the host of record, and the host as
/// the policy was shown it.
#[derive(Clone, Copy)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub host: &'a HostTopology,
    pub shown: &'a wit::Host,
    /// `shown`'s index, when the caller keeps one with it (else built per answer).
    pub index: Option<&'a verify::HostIndex>,
}

impl<'a> Candidate<'a> {
    /// The candidates of an inventory and the views shown for it, in order.
    pub fn of(hosts: &'a [(String, HostTopology)], shown: &'a [wit::Host]) -> Vec<Candidate<'a>> {
        hosts.iter().zip(shown).map(|((name, host), shown)| Candidate { name, host, shown, index: None }).collect()
    }
}

/// The policy's answers to one `fit-many` call over `hosts` (each as it was shown), each checked
/// as a single fit's answer is and scored: per host in order, its score when the policy placed
/// it. An answer that fails the checks fails the whole filter, naming the host: a policy that
/// answers one host wrongly is not trusted with the others. Without `weights` nothing is scored
/// (a filter that only asks which fit): every placed host scores 0.
pub fn check(
    plugin: &str,
    hosts: &[Candidate],
    request: &wit::Request,
    limits: &wit::Limits,
    weights: Option<&Weights>,
    answers: &[Result<wit::Placement, wit::Rejection>],
) -> Result<Vec<Option<f64>>, VerifyError> {
    let refuse = |what: &'static str, problem: String| VerifyError { plugin: plugin.to_string(), what, problem };
    if answers.len() != hosts.len() {
        return Err(refuse("fit-many", format!("answered {} hosts, asked {}", answers.len(), hosts.len())));
    }
    let mut out = Vec::with_capacity(hosts.len());
    for (Candidate { name, host, shown: view, index }, answer) in hosts.iter().zip(answers) {
        let named = |mut e: VerifyError| {
            e.problem = format!("host {name:?}: {}", e.problem);
            e
        };
        let Ok(p) = answer else {
            out.push(None);
            continue;
        };
        match index {
            Some(index) => verify::placement_on(plugin, view, index, request, p),
            None => verify::placement(plugin, view, request, p),
        }
        .map_err(named)?;
        // Scored on the host as the claim would leave it (the core's own accounting).
        let score = match weights {
            Some(weights) => {
                let placed = convert::placement_from_wit(p.clone()).map_err(|e| named(refuse("placement", e)))?;
                let after = match index {
                    Some(index) => verify::admit_cells_on(host, view, index, p, &placed, Some(limits)),
                    None => verify::admit(host, &placed, Some(limits)).map(|h| h.cells),
                }
                .map_err(|e| named(refuse("placement", e)))?;
                weights.score(host, &after, &placed)
            }
            None => 0.0,
        };
        out.push(Some(score));
    }
    Ok(out)
}

/// `check`, with each host's answer as `numafit filter --json` shows it.
pub fn judge(
    plugin: &str,
    policy: &str,
    hosts: &[Candidate],
    request: &wit::Request,
    limits: &wit::Limits,
    weights: Option<&Weights>,
    answers: Vec<Result<wit::Placement, wit::Rejection>>,
) -> Result<Vec<FilteredHostJson>, VerifyError> {
    let scores = check(plugin, hosts, request, limits, weights, &answers)?;
    Ok(hosts
        .iter()
        .zip(answers)
        .zip(scores)
        .map(|((host, answer), score)| FilteredHostJson {
            name: host.name.to_string(),
            fits: answer.is_ok(),
            score: score.unwrap_or(0.0),
            placement: answer.as_ref().ok().map(PlacementJson::from_wit),
            rejection: answer.as_ref().err().map(|r| RejectionJson::from_wit(policy, r)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weights {
        fn parse_test(specs: &[String]) -> Result<Weights, String> {
            Weights::parse(specs, "--weigher")
        }
    }

    #[test]
    fn weights_parse_names_and_refuse_bad_ones() {
        let w = Weights::parse_test(&["pack=2".into(), "numa-distance".into()]).unwrap();
        assert_eq!(w, Weights(vec![(Weigher::Pack, 2.0), (Weigher::NumaDistance, 1.0)]));
        assert_eq!(Weights::parse_test(&[]).unwrap(), Weights::default());
        let e = Weights::parse_test(&["packing".into()]).unwrap_err();
        assert!(e.contains("\"packing\"") && e.contains("pack, spread, numa-distance, fewest-cells"), "{e}");
        assert!(Weights::parse_test(&["pack=x".into()]).unwrap_err().contains("\"x\" is not a number"));
        assert!(Weights::parse_test(&["pack=inf".into()]).unwrap_err().contains("not finite"));
        assert!(Weights::parse_test(&["pack".into(), "pack=3".into()]).unwrap_err().contains("twice"));
    }
}
