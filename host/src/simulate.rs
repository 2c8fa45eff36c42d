//! A fleet simulation, as pure data: a trace of arrivals and departures replayed over a fleet,
//! each arrival placed by a caller-supplied decision (the front end's policy and weighers),
//! claimed and released by the core's own accounting, with what an operator asks of a placement
//! policy counted on the way: placed and rejected, the first rejection, the capacity stranded on
//! each host, the NUMA cells each instance spans, and utilisation over time. Also the generator of
//! the shipped fleets and traces.

use std::collections::{BTreeMap, HashMap};

use numafit_plugin::{HostTopology, Placement};
use serde::{Deserialize, Serialize};

use crate::formats::{FlavorJson, InputError, RequestJson};
use crate::verify;

/// One event of TRACE.json: an instance arriving with its request, or leaving.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventJson {
    /// Seconds from the start of the trace.
    pub t: f64,
    pub instance: String,
    /// Present for an arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestJson>,
    /// True for a departure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub depart: bool,
}

/// A trace checked: times never go back, each event is an arrival or a departure, a departure
/// names an instance that arrived.
pub fn check_trace(file: &str, events: &[EventJson]) -> Result<(), InputError> {
    let bad = |i: usize, m: String| InputError { file: file.into(), message: format!("event [{i}]: {m}") };
    let mut last = 0.0f64;
    let mut arrived = std::collections::HashSet::new();
    for (i, e) in events.iter().enumerate() {
        if !e.t.is_finite() || e.t < last {
            return Err(bad(i, format!("field t: {} is before the event ahead of it ({last}) or not a number", e.t)));
        }
        last = e.t;
        match (&e.request, e.depart) {
            (Some(_), false) => {
                if !arrived.insert(e.instance.as_str()) {
                    return Err(bad(i, format!("field instance: {:?} arrives twice", e.instance)));
                }
            }
            (None, true) => {
                if !arrived.contains(e.instance.as_str()) {
                    return Err(bad(i, format!("field instance: {:?} departs before it arrives", e.instance)));
                }
            }
            _ => return Err(bad(i, "give either request (an arrival) or \"depart\": true".into())),
        }
    }
    Ok(())
}

/// Where an arrival went: a host and its placement, or nowhere, and why. `unplaceable`: it fits
/// no host of the fleet even empty (a flavor the fleet cannot take), not a fleet out of room.
pub enum Decision {
    Placed { host: usize, placement: Placement },
    Rejected { reason: String, unplaceable: bool },
}

/// A utilisation sample: time, and the fleet's used share of pinnable-or-shared CPUs and memory.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    pub t: f64,
    pub cpu: f64,
    pub memory: f64,
}

#[derive(Debug, Serialize)]
pub struct FirstRejection {
    pub t: f64,
    pub event: usize,
    pub instance: String,
    pub reason: String,
}

/// Capacity left on one host that no instance can use: free CPUs in cells with less than
/// `STRANDED_MEMORY_MIB` free, and free memory in cells with no free CPU.
#[derive(Debug, Serialize)]
pub struct Stranded {
    pub host: String,
    pub cpus: usize,
    pub memory_mib: u64,
}

/// A cell with less free memory than this can hold no instance's cell.
pub const STRANDED_MEMORY_MIB: u64 = 1024;

#[derive(Debug, Serialize)]
pub struct Report {
    pub policy: String,
    pub weighers: Vec<String>,
    pub arrivals: usize,
    pub placed: usize,
    /// Arrivals the fleet had no room for (each would fit some host empty).
    pub rejected: usize,
    /// Arrivals no host of the fleet could take even empty: not counted as rejections.
    pub unplaceable: usize,
    /// Placements the host's accounting refused to claim (a policy's answer that did not hold).
    pub failed_claims: usize,
    pub placed_before_first_rejection: usize,
    pub first_rejection: Option<FirstRejection>,
    /// At the first rejection (or the end, if none): per host, and in all.
    pub stranded: Vec<Stranded>,
    pub stranded_cpus: usize,
    pub stranded_memory_mib: u64,
    /// How many instances span 1, 2, ... NUMA cells.
    pub numa_spans: BTreeMap<usize, usize>,
    pub samples: Vec<Sample>,
}

fn utilisation(hosts: &[HostTopology]) -> (f64, f64) {
    let (mut cpus, mut used, mut memory, mut memory_used) = (0usize, 0usize, 0u64, 0u64);
    for c in hosts.iter().flat_map(|h| &h.cells) {
        let shared = c.cpuset.difference(&c.pcpuset).len();
        cpus += c.pcpuset.union(&c.cpuset).len();
        used += c.pinned_cpus.len() + (c.cpu_usage as usize).min(shared);
        memory += c.memory;
        memory_used += c.memory_usage;
    }
    let share = |u: f64, t: f64| if t > 0.0 { (u / t).clamp(0.0, 1.0) } else { 0.0 };
    (share(used as f64, cpus as f64), share(memory_used as f64, memory as f64))
}

fn stranded(names: &[String], hosts: &[HostTopology]) -> Vec<Stranded> {
    names
        .iter()
        .zip(hosts)
        .map(|(name, h)| {
            let (mut cpus, mut memory_mib) = (0, 0);
            for c in &h.cells {
                let free_cpus = c.free_pcpus().len();
                if c.avail_memory() < STRANDED_MEMORY_MIB {
                    cpus += free_cpus;
                }
                if free_cpus == 0 {
                    memory_mib += c.avail_memory();
                }
            }
            Stranded { host: name.clone(), cpus, memory_mib }
        })
        .collect()
}

/// Replays `events` over `hosts`, each arrival placed by `decide` on the fleet as it is (with
/// each host's version, moved whenever it changes, so a decision can keep what it derived from a
/// host until then); calls `progress` after every event.
pub fn replay<E>(
    policy: &str,
    weighers: &[String],
    names: &[String],
    mut hosts: Vec<HostTopology>,
    events: &[EventJson],
    mut decide: impl FnMut(&[HostTopology], &[u64], &RequestJson, &str) -> Result<Decision, E>,
    mut progress: impl FnMut(usize),
) -> Result<Report, E> {
    let mut placed_at: HashMap<&str, (usize, Placement)> = HashMap::new();
    let mut versions = vec![0u64; hosts.len()];
    let mut report = Report {
        policy: policy.to_string(),
        weighers: weighers.to_vec(),
        arrivals: 0,
        placed: 0,
        rejected: 0,
        unplaceable: 0,
        failed_claims: 0,
        placed_before_first_rejection: 0,
        first_rejection: None,
        stranded: Vec::new(),
        stranded_cpus: 0,
        stranded_memory_mib: 0,
        numa_spans: BTreeMap::new(),
        samples: Vec::new(),
    };
    // About 200 samples over the trace, plus one at every rejection-free start.
    let every = (events.len() / 200).max(1);
    for (i, e) in events.iter().enumerate() {
        match &e.request {
            Some(request) => {
                report.arrivals += 1;
                match decide(&hosts, &versions, request, &e.instance)? {
                    Decision::Placed { host, placement } => match hosts.get(host).map(|h| verify::admit(h, &placement, None)) {
                        Some(Ok(after)) => {
                            hosts[host] = after;
                            versions[host] += 1;
                            report.placed += 1;
                            if report.first_rejection.is_none() {
                                report.placed_before_first_rejection += 1;
                            }
                            let mut cells: Vec<u32> = placement.cells.iter().map(|c| c.host_cell).collect();
                            cells.sort_unstable();
                            cells.dedup();
                            *report.numa_spans.entry(cells.len()).or_default() += 1;
                            placed_at.insert(&e.instance, (host, placement));
                        }
                        _ => report.failed_claims += 1,
                    },
                    Decision::Rejected { unplaceable: true, .. } => report.unplaceable += 1,
                    Decision::Rejected { reason, unplaceable: false } => {
                        report.rejected += 1;
                        if report.first_rejection.is_none() {
                            report.stranded = stranded(names, &hosts);
                            report.first_rejection = Some(FirstRejection { t: e.t, event: i, instance: e.instance.clone(), reason });
                        }
                    }
                }
            }
            None => {
                if let Some((host, placement)) = placed_at.remove(e.instance.as_str()) {
                    if let Ok(after) = numafit_plugin::release(&hosts[host], &placement) {
                        hosts[host] = after;
                        versions[host] += 1;
                    }
                }
            }
        }
        if i % every == 0 || i + 1 == events.len() {
            let (cpu, memory) = utilisation(&hosts);
            report.samples.push(Sample { t: e.t, cpu, memory });
        }
        progress(i + 1);
    }
    if report.first_rejection.is_none() {
        report.stranded = stranded(names, &hosts);
    }
    report.stranded_cpus = report.stranded.iter().map(|s| s.cpus).sum();
    report.stranded_memory_mib = report.stranded.iter().map(|s| s.memory_mib).sum();
    Ok(report)
}

/// A small deterministic generator (xorshift64*): the same fleet and trace for the same seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// One generated host: `cells` NUMA cells of `cores` cores × 2 threads and `memory_gib` each,
/// two sockets (SLIT 10 local, 12 within a socket, 32 across), 2 MiB pages on every cell.
pub fn generated_host(cells: u32, cores: u32, memory_gib: u64) -> serde_json::Value {
    let threads = cores * 2;
    let per_socket = cells.div_ceil(2).max(1);
    let distance = |a: u32, b: u32| {
        if a == b {
            10
        } else if a / per_socket == b / per_socket {
            12
        } else {
            32
        }
    };
    let cell_docs: Vec<_> = (0..cells)
        .map(|c| {
            let first = c * threads;
            let cpus: Vec<u32> = (first..first + threads).collect();
            let siblings: Vec<Vec<u32>> = (0..cores).map(|k| vec![first + k, first + cores + k]).collect();
            let memory = memory_gib * 1024;
            let huge = memory / 8;
            serde_json::json!({
                "id": c, "cpuset": cpus, "pcpuset": cpus, "memory": memory, "siblings": siblings, "socket": c / per_socket,
                "distances": (0..cells).map(|d| distance(c, d)).collect::<Vec<u32>>(),
                "mempages": [
                    {"size_kb": 4, "total": (memory - huge) * 256, "used": 0, "reserved": 0},
                    {"size_kb": 2048, "total": huge / 2, "used": 0, "reserved": 0}
                ]
            })
        })
        .collect();
    serde_json::json!({"cells": cell_docs})
}

/// A fleet of `hosts` mixed hosts: 2-, 4-, 8- and 16-cell machines, as an INVENTORY document.
pub fn generate_fleet(hosts: usize, seed: u64) -> serde_json::Value {
    let mut rng = Rng::new(seed);
    // (cells, cores per cell, GiB per cell), weighted towards the common 2- and 4-cell machines.
    let shapes = [(2, 16, 192), (2, 24, 256), (2, 16, 192), (4, 12, 128), (4, 16, 192), (8, 8, 96), (16, 4, 48)];
    let entries: Vec<_> = (0..hosts)
        .map(|i| {
            let &(cells, cores, gib) = rng.pick(&shapes);
            serde_json::json!({"name": format!("host-{i:04}"), "host": generated_host(cells, cores, gib)})
        })
        .collect();
    serde_json::Value::Array(entries)
}

/// The flavor mixes a trace can draw from.
pub const MIXES: &[&str] = &["general", "nfv", "hpc"];

fn flavor(vcpus: u32, memory_gib: u64, specs: &[(&str, &str)]) -> RequestJson {
    RequestJson {
        flavor: Some(FlavorJson {
            vcpus,
            memory_mb: memory_gib * 1024,
            extra_specs: specs.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect(),
            name: None,
            disk: None,
        }),
        ..RequestJson::default()
    }
}

/// One instance's request drawn from `mix`.
fn draw(rng: &mut Rng, mix: &str) -> RequestJson {
    match mix {
        // Packet processing: pinned, huge pages, emulator threads apart, some isolated cores.
        "nfv" => {
            let vcpus = *rng.pick(&[4, 6, 8, 12, 16]);
            let thread = *rng.pick(&["prefer", "prefer", "isolate", "require"]);
            let nodes = if vcpus >= 12 && rng.below(2) == 0 { "2" } else { "1" };
            flavor(
                vcpus,
                u64::from(vcpus) * 2,
                &[
                    ("hw:cpu_policy", "dedicated"),
                    ("hw:cpu_thread_policy", thread),
                    ("hw:mem_page_size", "2MB"),
                    ("hw:emulator_threads_policy", "isolate"),
                    ("hw:numa_nodes", nodes),
                ],
            )
        }
        // Big pinned jobs over several cells, whole cores.
        "hpc" => {
            // Sized to span cells as HPC flavors do: at most 12 vCPUs (6 whole cores) a cell.
            let (vcpus, nodes) = *rng.pick(&[(8, "1"), (12, "1"), (16, "2"), (24, "2"), (32, "4"), (48, "4")]);
            flavor(
                vcpus,
                u64::from(vcpus) * 4,
                &[("hw:cpu_policy", "dedicated"), ("hw:cpu_thread_policy", "require"), ("hw:numa_nodes", nodes)],
            )
        }
        // Mostly floating vCPUs, some small pinned ones.
        _ => {
            if rng.below(4) == 0 {
                let vcpus = *rng.pick(&[2, 4, 8]);
                flavor(vcpus, u64::from(vcpus) * 4, &[("hw:cpu_policy", "dedicated")])
            } else {
                let vcpus = *rng.pick(&[1, 2, 4, 8]);
                flavor(vcpus, u64::from(vcpus) * *rng.pick(&[2, 4, 8]), &[("hw:numa_nodes", "1")])
            }
        }
    }
}

/// A trace of `instances` arrivals drawn from `mixes` in turn, a new one every `gap` seconds on
/// average, each staying `life` seconds on average (exponential), departures interleaved in time
/// order: the fleet fills when `life / gap` instances outgrow it.
pub fn generate_trace(instances: usize, mixes: &[String], gap: f64, life: f64, seed: u64) -> Vec<EventJson> {
    let mut rng = Rng::new(seed);
    let mut events = Vec::with_capacity(instances * 2);
    let mut t = 0.0;
    for i in 0..instances {
        t += -gap * (1.0 - rng.unit()).ln();
        let mix = mixes.get(i % mixes.len().max(1)).map_or("general", String::as_str);
        let instance = format!("{mix}-{i:05}");
        let stay = -life * (1.0 - rng.unit()).ln();
        events.push(EventJson { t, instance: instance.clone(), request: Some(draw(&mut rng, mix)), depart: false });
        events.push(EventJson { t: t + stay, instance, request: None, depart: true });
    }
    // Stable: an instance's arrival stays ahead of its departure at the same time.
    events.sort_by(|a, b| a.t.total_cmp(&b.t));
    events
}
