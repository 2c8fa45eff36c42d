//! The command-line JSON formats (OpenStack Nova's field names) and their translation to and from
//! the contract's types. Reading a file either yields a checked value or an error naming the file,
//! the field and the value; nothing is half-read.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use numafit_plugin::{GuestCell, GuestTopology, Limits, Named, NetworkNeed, PageSizeWish, Strategy};

use crate::contract::latest::convert;
use numafit_plugin::topology::{CellNetwork, HostCell, HostTopology, PagePool, PciPool};
use numafit_plugin::CpuSet;

use crate::contract::{placement_from_rows, placement_rows, wit, PlacedCellRows};

/// Invalid input: the message names the file, the field and the value.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct InputError {
    pub file: String,
    pub message: String,
}

/// Largest CPU (and vCPU) number accepted: Linux builds with at most 8192 CPUs; anything far beyond
/// is a typo, and would make the plugin's CPU sets needlessly large.
pub const MAX_CPU: u32 = 65535;

/// The first value a list holds twice (sorting a copy: near-linear on lists of any length).
pub fn first_duplicate(list: &[u32]) -> Option<u32> {
    let mut v = list.to_vec();
    v.sort_unstable();
    v.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

fn input_error(file: &str, message: impl Into<String>) -> InputError {
    InputError { file: file.to_string(), message: message.into() }
}

/// Reads and parses a JSON file, with the path to the offending field on error.
/// The file is streamed, not read whole first: a huge malformed file costs what was parsed of it.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, InputError> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| input_error(&file, format!("cannot read: {e}")))?;
    let de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, f));
    parse_with(&file, de)
}

pub fn parse_json<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, InputError> {
    parse_with(file, serde_json::Deserializer::from_str(text))
}

fn parse_with<'de, R: serde_json::de::Read<'de>, T: Deserialize<'de>>(
    file: &str,
    mut de: serde_json::Deserializer<R>,
) -> Result<T, InputError> {
    let de = &mut de;
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_io() {
            input_error(file, format!("cannot read: {inner}"))
        } else if path == "." || path.is_empty() || inner.is_syntax() || inner.is_eof() {
            input_error(file, format!("invalid JSON: {inner}"))
        } else {
            input_error(file, format!("field {path}: {inner}"))
        }
    })?;
    // One document per file: anything after it (a second document, stray text) is refused, not
    // silently dropped.
    de.end().map_err(|e| input_error(file, format!("invalid JSON: data after the document ({e})")))?;
    Ok(value)
}

/// Reads a CPU (or vCPU) list, refusing numbers past `MAX_CPU` and duplicates as they are read:
/// a list of millions of repeated CPUs stops at the first repeat instead of being collected.
fn cpu_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Vec<u32>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a list of distinct CPU numbers up to {MAX_CPU}")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u32>, A::Error> {
            let mut seen = vec![0u64; (MAX_CPU as usize + 1) / 64];
            let mut out = Vec::new();
            while let Some(cpu) = seq.next_element::<u32>()? {
                if cpu > MAX_CPU {
                    return Err(serde::de::Error::custom(format!("CPU {cpu} is beyond the largest supported CPU number {MAX_CPU}")));
                }
                let (w, b) = (cpu as usize / 64, 1u64 << (cpu % 64));
                if seen[w] & b != 0 {
                    return Err(serde::de::Error::custom(format!("CPU {cpu} is listed twice")));
                }
                seen[w] |= b;
                out.push(cpu);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Visit)
}

/// `cpu_list` for each group of a list of groups (sibling groups, L3 groups): no group repeats a
/// CPU; groups are checked against each other by the host checks.
fn cpu_groups<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<u32>>, D::Error> {
    #[derive(Deserialize)]
    struct Group(#[serde(deserialize_with = "cpu_list")] Vec<u32>);
    Ok(Vec::<Group>::deserialize(d)?.into_iter().map(|g| g.0).collect())
}

fn opt_cpu_groups<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<Vec<u32>>>, D::Error> {
    #[derive(Deserialize)]
    struct Groups(#[serde(deserialize_with = "cpu_groups")] Vec<Vec<u32>>);
    Ok(Option::<Groups>::deserialize(d)?.map(|g| g.0))
}

/// The core's rules, which discovery applies too.
pub use numafit_plugin::topology::{slit_problem, MAX_MEMORY_MB};

// ---------------------------------------------------------------------------------------------
// HOST.json

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PagesJson {
    pub size_kb: u32,
    pub total: u64,
    #[serde(default)]
    pub used: u64,
    #[serde(default)]
    pub reserved: u64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkJson {
    #[serde(default)]
    pub physnets: Vec<String>,
    #[serde(default)]
    pub tunneled: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostCellJson {
    pub id: u32,
    #[serde(default, deserialize_with = "cpu_list")]
    pub cpuset: Vec<u32>,
    #[serde(default, deserialize_with = "cpu_list")]
    pub pcpuset: Vec<u32>,
    pub memory: u64,
    #[serde(default)]
    pub cpu_usage: u32,
    #[serde(default)]
    pub memory_usage: u64,
    #[serde(default, deserialize_with = "cpu_list")]
    pub pinned_cpus: Vec<u32>,
    #[serde(default, deserialize_with = "cpu_groups")]
    pub siblings: Vec<Vec<u32>>,
    /// CPUs of the cell kept for the host (in neither `cpuset` nor `pcpuset`): sibling groups may
    /// name them, as threads no guest gets; any other CPU a sibling group names is unknown.
    #[serde(default, deserialize_with = "cpu_list", skip_serializing_if = "Vec::is_empty")]
    pub host_cpus: Vec<u32>,
    /// CPUs sharing an L3 cache (optional; `numafit topology` fills it in).
    #[serde(default, deserialize_with = "opt_cpu_groups", skip_serializing_if = "Option::is_none")]
    pub l3_groups: Option<Vec<Vec<u32>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mempages: Option<Vec<PagesJson>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distances: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_metadata: Option<NetworkJson>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct PciPoolJson {
    pub numa_node: Option<u32>,
    pub count: u32,
    /// vendor_id, product_id, dev_type, physical_network and any other tags, as strings.
    #[serde(flatten)]
    pub tags: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostJson {
    pub cells: Vec<HostCellJson>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci_pools: Vec<PciPoolJson>,
}

fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn tags(file: &str, field: &str, map: &BTreeMap<String, serde_json::Value>) -> Result<Vec<(String, String)>, InputError> {
    map.iter()
        .map(|(k, v)| {
            scalar_text(v)
                .map(|t| (k.clone(), t))
                .ok_or_else(|| input_error(file, format!("field {field}.{k}: expected a string, number or boolean, got {v}")))
        })
        .collect()
}

fn cpu_set(list: &[u32]) -> CpuSet {
    list.iter().copied().collect()
}

impl HostJson {
    /// The host of record this document describes, checked by the core's rules (the one place
    /// they are written), the broken one named by its field and this file.
    pub fn to_record(&self, file: &str) -> Result<HostTopology, InputError> {
        let err = |m: String| input_error(file, m);
        let n = self.cells.len();
        let mut cells = Vec::with_capacity(n);
        let mut distances = Vec::new();
        for (i, c) in self.cells.iter().enumerate() {
            // The document's shape (a row per cell), before the core's rule on the matrix.
            match &c.distances {
                Some(row) if row.len() == n => distances.extend_from_slice(row),
                Some(row) => return Err(err(format!("field cells[{i}].distances: {} entries for {n} cells", row.len()))),
                None => {}
            }
            cells.push(HostCell {
                id: c.id,
                cpuset: cpu_set(&c.cpuset),
                pcpuset: cpu_set(&c.pcpuset),
                memory: c.memory,
                cpu_usage: c.cpu_usage,
                memory_usage: c.memory_usage,
                pinned_cpus: cpu_set(&c.pinned_cpus),
                host_cpus: cpu_set(&c.host_cpus),
                siblings: c.siblings.iter().map(|g| cpu_set(g)).collect(),
                cache_groups: c.l3_groups.iter().flatten().map(|g| cpu_set(g)).collect(),
                mempages: c
                    .mempages
                    .iter()
                    .flatten()
                    .map(|p| PagePool { size_kb: p.size_kb, total: p.total, used: p.used, reserved: p.reserved })
                    .collect(),
                socket: c.socket,
                network_metadata: c.network_metadata.as_ref().map(|n| CellNetwork { physnets: n.physnets.clone(), tunneled: n.tunneled }),
            });
        }
        if !distances.is_empty() && distances.len() != n * n {
            return Err(err("field cells[].distances: given for some cells but not all".into()));
        }
        let pci_pools = self
            .pci_pools
            .iter()
            .enumerate()
            .map(|(i, p)| Ok(PciPool { numa_node: p.numa_node, count: p.count, tags: tags(file, &format!("pci_pools[{i}]"), &p.tags)? }))
            .collect::<Result<_, InputError>>()?;
        let host = HostTopology { cells, distances, pci_pools };
        host.check().map_err(|problem| err(problem.to_string()))?;
        Ok(host)
    }

    /// A host of record as a document. CPU lists come out in order, and tags as strings.
    pub fn from_record(host: &HostTopology) -> HostJson {
        let n = host.cells.len();
        let with_distances = n > 0 && host.distances.len() == n * n;
        let cells = host
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| HostCellJson {
                id: c.id,
                cpuset: c.cpuset.to_vec(),
                pcpuset: c.pcpuset.to_vec(),
                memory: c.memory,
                cpu_usage: c.cpu_usage,
                memory_usage: c.memory_usage,
                pinned_cpus: c.pinned_cpus.to_vec(),
                siblings: c.siblings.iter().map(CpuSet::to_vec).collect(),
                host_cpus: c.host_cpus.to_vec(),
                l3_groups: (!c.cache_groups.is_empty()).then(|| c.cache_groups.iter().map(CpuSet::to_vec).collect()),
                mempages: (!c.mempages.is_empty()).then(|| {
                    c.mempages
                        .iter()
                        .map(|p| PagesJson { size_kb: p.size_kb, total: p.total, used: p.used, reserved: p.reserved })
                        .collect()
                }),
                socket: c.socket,
                distances: with_distances.then(|| host.distances[i * n..(i + 1) * n].to_vec()),
                network_metadata: c.network_metadata.as_ref().map(|n| NetworkJson { physnets: n.physnets.clone(), tunneled: n.tunneled }),
            })
            .collect();
        let pci_pools = host
            .pci_pools
            .iter()
            .map(|p| PciPoolJson {
                numa_node: p.numa_node,
                count: p.count,
                tags: p.tags.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect(),
            })
            .collect();
        HostJson { cells, pci_pools }
    }

    /// The host as a plugin is shown it (`to_record`, then the contract's view of it).
    pub fn to_wit(&self, file: &str) -> Result<wit::Host, InputError> {
        Ok(crate::contract::host_view(&self.to_record(file)?))
    }
}

// ---------------------------------------------------------------------------------------------
// REQUEST.json

/// `pagesize`: null, "small", "large", "any", or KiB as a number or a string of digits.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum PageSizeJson {
    Kib(u32),
    Text(String),
}

impl<'de> Deserialize<'de> for PageSizeJson {
    // By hand rather than `untagged`, whose error ("did not match any variant") names no value.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(t) => Ok(PageSizeJson::Text(t)),
            serde_json::Value::Number(n) if n.as_u64().is_some_and(|k| k <= u64::from(u32::MAX)) => {
                Ok(PageSizeJson::Kib(n.as_u64().unwrap_or(0) as u32))
            }
            other => Err(serde::de::Error::custom(format!("{other} is not small, large, any or a page size in KiB"))),
        }
    }
}

impl PageSizeJson {
    fn to_core(&self) -> Result<PageSizeWish, String> {
        match self {
            PageSizeJson::Kib(0) => Err("0 is not a page size".into()),
            PageSizeJson::Kib(k) => Ok(PageSizeWish::Kib(*k)),
            PageSizeJson::Text(t) => match PageSizeWish::from_keyword(t) {
                Some(word) => Ok(word),
                None => match t.parse::<u32>() {
                    Ok(k) if k > 0 => Ok(PageSizeWish::Kib(k)),
                    _ => Err(format!("{t:?} is not small, large, any or a page size in KiB")),
                },
            },
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuestCellJson {
    #[serde(default, deserialize_with = "cpu_list")]
    pub cpuset: Vec<u32>,
    #[serde(default, deserialize_with = "cpu_list")]
    pub pcpuset: Vec<u32>,
    pub memory: u64,
    #[serde(default)]
    pub pagesize: Option<PageSizeJson>,
    /// Accepted for Nova compatibility; the cell's position is its id.
    #[serde(default, skip_serializing)]
    pub id: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlavorJson {
    pub vcpus: u32,
    pub memory_mb: u64,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, serde_json::Value>,
    /// Accepted and ignored: Nova flavors carry these.
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    #[serde(default, skip_serializing)]
    pub disk: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PciRequestJson {
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub spec: Vec<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub numa_policy: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestJson {
    #[serde(default)]
    pub flavor: Option<FlavorJson>,
    #[serde(default)]
    pub image_props: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub cells: Option<Vec<GuestCellJson>>,
    #[serde(default)]
    pub cpu_policy: Option<String>,
    #[serde(default)]
    pub cpu_thread_policy: Option<String>,
    #[serde(default)]
    pub emulator_threads_policy: Option<String>,
    #[serde(default)]
    pub pci_requests: Vec<PciRequestJson>,
    /// As `numafit request --json` prints it: false with no cells is a request without NUMA
    /// constraint; otherwise it must agree with the cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_constrained: Option<bool>,
}

/// A REQUEST.json checked, in the core's model where it states a topology.
enum Read {
    Flavor(wit::Flavor),
    Explicit(GuestTopology, Vec<wit::PciRequest>),
}

/// What a REQUEST.json holds: a flavor for the plugin to interpret, or an explicit guest topology.
pub enum RequestInput {
    Flavor(wit::Flavor),
    Explicit(wit::Request),
}

/// An optional field holding one of an enum's names (the core's table of them).
fn enum_field<T: Named>(file: &str, field: &str, value: &Option<String>) -> Result<Option<T>, InputError> {
    let Some(v) = value else { return Ok(None) };
    T::from_name(v).map(Some).ok_or_else(|| input_error(file, format!("field {field}: {v:?} is not one of {}", T::choices())))
}

impl RequestJson {
    pub fn to_input(&self, file: &str) -> Result<RequestInput, InputError> {
        Ok(match self.read(file)? {
            Read::Flavor(flavor) => RequestInput::Flavor(flavor),
            Read::Explicit(guest, pci) => {
                let mut request = convert::request_to_wit(guest);
                request.pci_requests = pci;
                RequestInput::Explicit(request)
            }
        })
    }

    /// An explicit request (guest cells, not a flavor) as the core's model, checked by its rules.
    pub fn to_guest(&self, file: &str) -> Result<GuestTopology, InputError> {
        match self.read(file)? {
            Read::Explicit(guest, _) => Ok(guest),
            Read::Flavor(_) => Err(input_error(file, "field flavor: a flavor is read by a plugin, not by the core alone")),
        }
    }

    /// The document checked: a flavor for a plugin to read, or the guest topology it states.
    fn read(&self, file: &str) -> Result<Read, InputError> {
        let err = |m: String| input_error(file, m);
        let pci = self.pci_requests_wit(file)?;
        match (&self.flavor, &self.cells) {
            (Some(_), Some(_)) => Err(err("give either flavor or cells, not both".into())),
            (None, None) => Err(err("field flavor or cells: one of them is required".into())),
            (Some(f), None) => {
                for key in ["cpu_policy", "cpu_thread_policy", "emulator_threads_policy"] {
                    let set = match key {
                        "cpu_policy" => self.cpu_policy.is_some(),
                        "cpu_thread_policy" => self.cpu_thread_policy.is_some(),
                        _ => self.emulator_threads_policy.is_some(),
                    };
                    if set {
                        return Err(err(format!("field {key}: with a flavor, set hw:{key} in extra_specs instead")));
                    }
                }
                if f.vcpus > MAX_CPU {
                    return Err(err(format!("field flavor.vcpus: {} is more than the {MAX_CPU} vCPUs numafit accepts", f.vcpus)));
                }
                let extra_specs = tags(file, "flavor.extra_specs", &f.extra_specs)?;
                let image_props = tags(file, "image_props", &self.image_props)?;
                Ok(Read::Flavor(wit::Flavor { vcpus: f.vcpus, memory_mb: f.memory_mb, extra_specs, image_props, pci_requests: pci }))
            }
            (None, Some(cells)) if self.numa_constrained == Some(false) && cells.is_empty() => {
                if self.cpu_policy.as_deref().is_some_and(|p| p != "shared")
                    || self.cpu_thread_policy.is_some()
                    || self.emulator_threads_policy.is_some()
                {
                    return Err(err("field numa_constrained: false, but the CPU policies ask for pinning, which needs cells".into()));
                }
                let guest = GuestTopology { cpu_policy: enum_field(file, "cpu_policy", &self.cpu_policy)?, ..GuestTopology::default() };
                Ok(Read::Explicit(guest, pci))
            }
            (None, Some(_)) if self.numa_constrained == Some(false) => {
                Err(err("field numa_constrained: false, yet cells are given".into()))
            }
            (None, Some(cells)) => {
                if !self.image_props.is_empty() {
                    return Err(err("field image_props: only meaningful with a flavor".into()));
                }
                if cells.is_empty() {
                    return Err(err("field cells: an explicit guest topology needs at least one cell".into()));
                }
                Ok(Read::Explicit(self.explicit_guest(file, cells)?, pci))
            }
        }
    }

    fn explicit_guest(&self, file: &str, cells: &[GuestCellJson]) -> Result<GuestTopology, InputError> {
        let err = |m: String| input_error(file, m);
        let cells = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pagesize = c
                    .pagesize
                    .as_ref()
                    .map(PageSizeJson::to_core)
                    .transpose()
                    .map_err(|m| err(format!("field cells[{i}].pagesize: {m}")))?;
                Ok(GuestCell { cpuset: cpu_set(&c.cpuset), pcpuset: cpu_set(&c.pcpuset), memory: c.memory, pagesize })
            })
            .collect::<Result<_, InputError>>()?;
        let guest = GuestTopology {
            cells,
            cpu_policy: enum_field(file, "cpu_policy", &self.cpu_policy)?,
            thread_policy: enum_field(file, "cpu_thread_policy", &self.cpu_thread_policy)?,
            emulator_threads: enum_field(file, "emulator_threads_policy", &self.emulator_threads_policy)?,
            pci_requests: Vec::new(),
        };
        // The core's rules, named by their field here.
        guest.validate().map_err(|e| {
            let field = e.field.as_deref().unwrap_or("cells");
            err(format!("field {field}: {} (Nova: {})", e.message, e.code))
        })?;
        Ok(guest)
    }

    fn pci_requests_wit(&self, file: &str) -> Result<Vec<wit::PciRequest>, InputError> {
        self.pci_requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let spec = r
                    .spec
                    .iter()
                    .enumerate()
                    .map(|(j, s)| tags(file, &format!("pci_requests[{i}].spec[{j}]"), s))
                    .collect::<Result<_, _>>()?;
                let numa_policy =
                    enum_field(file, &format!("pci_requests[{i}].numa_policy"), &r.numa_policy)?.map(convert::pci_numa_policy_to_wit);
                Ok(wit::PciRequest { count: r.count, spec, numa_policy })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// LIMITS.json

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsJson {
    #[serde(default)]
    pub cpu_allocation_ratio: Option<f64>,
    #[serde(default)]
    pub ram_allocation_ratio: Option<f64>,
    #[serde(default)]
    pub network_metadata: Option<NetworkJson>,
}

impl LimitsJson {
    pub fn to_core(&self, file: &str, strategy: Strategy) -> Result<Limits, InputError> {
        for (name, v) in [("cpu_allocation_ratio", self.cpu_allocation_ratio), ("ram_allocation_ratio", self.ram_allocation_ratio)] {
            if let Some(r) = v {
                if !r.is_finite() || r <= 0.0 {
                    return Err(input_error(file, format!("field {name}: {r} must be a positive number")));
                }
            }
        }
        Ok(Limits {
            cpu_allocation_ratio: self.cpu_allocation_ratio,
            ram_allocation_ratio: self.ram_allocation_ratio,
            network: self.network_metadata.as_ref().map(|n| NetworkNeed { physnets: n.physnets.clone(), tunneled: n.tunneled }),
            strategy,
        })
    }

    pub fn to_wit(&self, file: &str, strategy: wit::Strategy) -> Result<wit::Limits, InputError> {
        Ok(convert::limits_to_wit(self.to_core(file, convert::strategy_from_wit(strategy))?))
    }
}

// ---------------------------------------------------------------------------------------------
// Placement (printed by `fit --json`, read by `claim` / `release`)

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlacedCellJson {
    pub guest_cell: u32,
    pub host_cell: u32,
    pub cpuset: Vec<u32>,
    pub pcpuset: Vec<u32>,
    pub memory: u64,
    pub pagesize_kb: Option<u32>,
    /// vCPU (as a string key, as Nova stores it) → host CPU; null (as Nova holds cells without
    /// pinning) reads as none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cpu_pinning: BTreeMap<String, u32>,
    /// Host CPUs for the emulator threads.
    #[serde(default)]
    pub cpuset_reserved: Option<Vec<u32>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlacementJson {
    pub fits: bool,
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub cpu_policy: Option<String>,
    #[serde(default)]
    pub cpu_thread_policy: Option<String>,
    #[serde(default)]
    pub emulator_threads_policy: Option<String>,
    /// False when the request has no NUMA constraint (every host passes).
    #[serde(default = "yes")]
    pub numa_constrained: bool,
    pub cells: Vec<PlacedCellJson>,
}

fn yes() -> bool {
    true
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A policy's name as the documents spell it (the core's names, via the contract's enum).
pub fn cpu_policy_name(p: wit::CpuPolicy) -> &'static str {
    convert::cpu_policy_from_wit(p).name()
}

pub fn thread_policy_name(p: wit::ThreadPolicy) -> &'static str {
    convert::thread_policy_from_wit(p).name()
}

pub fn emulator_name(p: wit::EmulatorThreadsPolicy) -> &'static str {
    convert::emulator_from_wit(p).name()
}

impl PlacementJson {
    pub fn from_wit(p: &wit::Placement) -> PlacementJson {
        PlacementJson {
            fits: true,
            policy: p.policy.clone(),
            cpu_policy: p.cpu_policy.map(|c| cpu_policy_name(c).into()),
            cpu_thread_policy: p.thread_policy.map(|t| thread_policy_name(t).into()),
            emulator_threads_policy: p.emulator_threads.map(|e| emulator_name(e).into()),
            numa_constrained: !p.cells.is_empty(),
            cells: placement_rows(p)
                .into_iter()
                .map(|c| PlacedCellJson {
                    guest_cell: c.guest_cell,
                    host_cell: c.host_cell,
                    cpuset: c.shared_vcpus,
                    pcpuset: c.pinning.iter().map(|&(v, _)| v).collect(),
                    memory: c.memory_mb,
                    pagesize_kb: c.page_size_kb,
                    cpu_pinning: c.pinning.iter().map(|&(v, p)| (v.to_string(), p)).collect(),
                    cpuset_reserved: (!c.emulator_pcpus.is_empty()).then_some(c.emulator_pcpus),
                })
                .collect(),
        }
    }

    pub fn to_wit(&self, file: &str) -> Result<wit::Placement, InputError> {
        if !self.fits {
            return Err(input_error(file, "field fits: false — this is a rejection, not a placement"));
        }
        let cpu_policy = enum_field(file, "cpu_policy", &self.cpu_policy)?.map(convert::cpu_policy_to_wit);
        let thread_policy = enum_field(file, "cpu_thread_policy", &self.cpu_thread_policy)?.map(convert::thread_policy_to_wit);
        let emulator_threads = enum_field(file, "emulator_threads_policy", &self.emulator_threads_policy)?.map(convert::emulator_to_wit);
        if self.numa_constrained && self.cells.is_empty() {
            return Err(input_error(file, "field cells: a NUMA-constrained placement (numa_constrained true) places no cell"));
        }
        if !self.numa_constrained && !self.cells.is_empty() {
            return Err(input_error(file, "field numa_constrained: false, yet the placement places cells"));
        }
        let mut cells = Vec::new();
        let mut pcpus_seen: BTreeMap<u32, String> = BTreeMap::new();
        for (i, c) in self.cells.iter().enumerate() {
            let at = |f: &str| format!("field cells[{i}].{f}");
            if c.memory == 0 {
                return Err(input_error(file, format!("{}: 0 MiB; a placed cell holds memory", at("memory"))));
            }
            if c.memory > MAX_MEMORY_MB {
                return Err(input_error(
                    file,
                    format!("{}: {} MiB is beyond the largest supported {MAX_MEMORY_MB} MiB", at("memory"), c.memory),
                ));
            }
            if c.pagesize_kb == Some(0) {
                return Err(input_error(file, format!("{}: 0 is not a page size", at("pagesize_kb"))));
            }
            let mut pinning = Vec::new();
            for (k, &pcpu) in &c.cpu_pinning {
                let vcpu =
                    k.parse::<u32>().map_err(|_| input_error(file, format!("{}: key {k:?} is not a vCPU number", at("cpu_pinning"))))?;
                if let Some(other) = pcpus_seen.insert(pcpu, format!("{}[{k:?}]", at("cpu_pinning"))) {
                    return Err(input_error(file, format!("{}[{k:?}]: host CPU {pcpu} is already given by {other}", at("cpu_pinning"))));
                }
                pinning.push((vcpu, pcpu));
            }
            for &pcpu in c.cpuset_reserved.iter().flatten() {
                if let Some(other) = pcpus_seen.insert(pcpu, at("cpuset_reserved")) {
                    return Err(input_error(file, format!("{}: host CPU {pcpu} is already given by {other}", at("cpuset_reserved"))));
                }
            }
            for (name, list) in [("cpuset", &c.cpuset), ("pcpuset", &c.pcpuset)] {
                if let Some(dup) = first_duplicate(list) {
                    return Err(input_error(file, format!("{}: vCPU {dup} is listed twice", at(name))));
                }
            }
            pinning.sort_unstable();
            // Dedicated vCPUs are exactly the pinned ones (Nova's `pcpuset` and `cpu_pinning` keys).
            let mut dedicated = c.pcpuset.clone();
            dedicated.sort_unstable();
            if !dedicated.iter().copied().eq(pinning.iter().map(|&(v, _)| v)) {
                return Err(input_error(
                    file,
                    format!(
                        "{}: {} are not the vCPUs cpu_pinning pins ({})",
                        at("pcpuset"),
                        crate::cpulist::text(&c.pcpuset),
                        crate::cpulist::text(&pinning.iter().map(|&(v, _)| v).collect::<Vec<_>>())
                    ),
                ));
            }
            if let Some(v) = c.cpuset.iter().find(|v| c.pcpuset.contains(v)) {
                return Err(input_error(file, format!("{}: vCPU {v} is both shared (cpuset) and pinned (pcpuset)", at("cpuset"))));
            }
            cells.push(PlacedCellRows {
                guest_cell: c.guest_cell,
                host_cell: c.host_cell,
                memory_mb: c.memory,
                page_size_kb: c.pagesize_kb,
                shared_vcpus: c.cpuset.clone(),
                pinning,
                emulator_pcpus: c.cpuset_reserved.clone().unwrap_or_default(),
            });
        }
        Ok(placement_from_rows(self.policy.clone(), cpu_policy, thread_policy, emulator_threads, cells))
    }
}

/// `{"fits": false, ...}`: for each guest cell, why each host cell refused it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RejectionJson {
    pub fits: bool,
    pub policy: String,
    pub summary: String,
    pub reasons: Vec<ReasonJson>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReasonJson {
    /// Null for reasons about the whole placement.
    pub guest_cell: Option<u32>,
    pub host_cell: Option<u32>,
    pub shortfall: Option<String>,
    pub needed: Option<u64>,
    pub available: Option<u64>,
    pub detail: String,
}

pub fn shortfall_name(s: wit::Shortfall) -> &'static str {
    convert::shortfall_from_wit(s).name()
}

impl RejectionJson {
    pub fn from_wit(policy: &str, r: &wit::Rejection) -> RejectionJson {
        let mut reasons: Vec<ReasonJson> = r
            .refusals
            .iter()
            .map(|c| ReasonJson {
                guest_cell: Some(c.guest_cell),
                host_cell: Some(c.host_cell),
                shortfall: Some(shortfall_name(c.shortfall).into()),
                needed: Some(c.needed),
                available: Some(c.available),
                detail: c.detail.clone(),
            })
            .collect();
        reasons.extend(r.reasons.iter().map(|d| ReasonJson {
            guest_cell: None,
            host_cell: None,
            shortfall: None,
            needed: None,
            available: None,
            detail: d.clone(),
        }));
        RejectionJson { fits: false, policy: policy.to_string(), summary: r.summary.clone(), reasons }
    }
}

pub fn accounting_code_name(c: wit::AccountingCode) -> &'static str {
    convert::accounting_code_from_wit(c).name()
}

// ---------------------------------------------------------------------------------------------
// Output documents the CLI prints (and the service will answer with). Fields in alphabetical
// order: the order these documents have always been printed in.

/// `claim` / `release --json` when the accounting refuses.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AccountingConflictJson {
    pub code: String,
    pub cpus: Vec<u32>,
    pub host_cell: Option<u32>,
    pub message: String,
    pub ok: bool,
}

impl AccountingConflictJson {
    pub fn new(code: &str, host_cell: Option<u32>, cpus: &[u32], message: &str) -> Self {
        AccountingConflictJson { code: code.to_string(), cpus: cpus.to_vec(), host_cell, message: message.to_string(), ok: false }
    }
}

/// `status --json`: the ledger against this machine's topology.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StatusJson {
    pub claims: usize,
    pub host: HostJson,
    pub ledger: String,
    pub lost: Vec<LostJson>,
}

/// A recorded claim the topology no longer carries, and why.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LostJson {
    pub instance: String,
    pub reason: String,
}

/// `info --json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InfoJson {
    pub contract: String,
    pub name: String,
    pub source: String,
    pub version: String,
}

/// One cell of `request --json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GuestCellOutJson {
    pub cpuset: Vec<u32>,
    pub id: u32,
    pub memory: u64,
    pub pagesize: Option<PageSizeJson>,
    pub pcpuset: Vec<u32>,
}

/// `request --json`: the guest topology a request implies, readable back as a REQUEST.json.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GuestTopologyJson {
    pub cells: Vec<GuestCellOutJson>,
    pub cpu_policy: Option<&'static str>,
    pub cpu_thread_policy: Option<&'static str>,
    pub emulator_threads_policy: Option<&'static str>,
    pub numa_constrained: bool,
}

impl GuestTopologyJson {
    pub fn from_wit(r: &wit::Request) -> Self {
        let cells = r
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| GuestCellOutJson {
                cpuset: crate::contract::cell_ids(&r.shared_vcpus, i as u32),
                id: i as u32,
                memory: c.memory_mb,
                pagesize: c.page_size.map(|p| match convert::page_size_from_wit(p) {
                    PageSizeWish::Kib(k) => PageSizeJson::Kib(k),
                    word => PageSizeJson::Text(word.keyword().unwrap_or_default().into()),
                }),
                pcpuset: crate::contract::cell_ids(&r.dedicated_vcpus, i as u32),
            })
            .collect();
        GuestTopologyJson {
            cells,
            cpu_policy: r.cpu_policy.map(cpu_policy_name),
            cpu_thread_policy: r.thread_policy.map(thread_policy_name),
            emulator_threads_policy: r.emulator_threads.map(emulator_name),
            numa_constrained: !r.cells.is_empty(),
        }
    }
}

/// One machine of a fleet inventory (`numafit filter --hosts`): `{"name": "node-1", "host": HOST}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryEntryJson {
    pub name: String,
    pub host: HostJson,
}

/// A fleet inventory: the hosts of record, by name, in the inventory's order; names are unique
/// and not empty, each host checked by the core's rules, its errors naming the entry.
pub fn inventory(file: &str, entries: &[InventoryEntryJson]) -> Result<Vec<(String, HostTopology)>, InputError> {
    let mut seen = std::collections::HashMap::new();
    let mut hosts = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if e.name.is_empty() {
            return Err(input_error(file, format!("field [{i}].name: empty; every host needs a name")));
        }
        if let Some(first) = seen.insert(e.name.as_str(), i) {
            return Err(input_error(file, format!("field [{i}].name: {:?} is also entry [{first}]'s; names must be unique", e.name)));
        }
        let host =
            e.host.to_record(file).map_err(|err| input_error(file, format!("entry [{i}] ({:?}), its host: {}", e.name, err.message)))?;
        hosts.push((e.name.clone(), host));
    }
    Ok(hosts)
}

/// One host's answer in `numafit filter --json`: what `numafit fit --json` gives for it alone,
/// and its score.
#[derive(Debug, Serialize)]
pub struct FilteredHostJson {
    pub name: String,
    pub fits: bool,
    pub score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<RejectionJson>,
}

#[derive(Debug, Serialize)]
pub struct FilterJson {
    pub hosts: Vec<FilteredHostJson>,
}
