//! numafit's JSON formats read straight into the core model, for native tools: the benchmarks'
//! native path and the tests that compare it with the component. The host runtime has its own
//! reader (it speaks the contract's types, not this crate's).

use serde::Deserialize;

use crate::cpuset::CpuSet;
use crate::fit::{Limits, NetworkNeed, Strategy};
use crate::names::Named;
use crate::request::{GuestCell, GuestTopology, PageSizeWish};
use crate::topology::{HostCell, HostTopology};

#[derive(Deserialize)]
struct HostDoc {
    cells: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Distances {
    #[serde(default)]
    distances: Option<Vec<u32>>,
}

/// HOST.json (without PCI pools) as the core model.
pub fn host_from_json(text: &str) -> Result<HostTopology, String> {
    let doc: HostDoc = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut cells = Vec::new();
    let mut distances = Vec::new();
    for v in doc.cells {
        let d: Distances = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        distances.extend(d.distances.unwrap_or_default());
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.remove("distances");
        }
        cells.push(serde_json::from_value::<HostCell>(v).map_err(|e| e.to_string())?);
    }
    let host = HostTopology { cells, distances, pci_pools: Vec::new() }.normalized();
    host.validate()?;
    Ok(host)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PageSizeDoc {
    Kib(u32),
    Text(String),
}

#[derive(Deserialize)]
struct GuestCellDoc {
    #[serde(default)]
    cpuset: Vec<u32>,
    #[serde(default)]
    pcpuset: Vec<u32>,
    memory: u64,
    #[serde(default)]
    pagesize: Option<PageSizeDoc>,
}

#[derive(Deserialize)]
struct RequestDoc {
    cells: Vec<GuestCellDoc>,
    #[serde(default)]
    cpu_policy: Option<String>,
    #[serde(default)]
    cpu_thread_policy: Option<String>,
    #[serde(default)]
    emulator_threads_policy: Option<String>,
}

fn named<T: Named>(v: Option<&str>, field: &str) -> Result<Option<T>, String> {
    v.map(|v| T::from_name(v).ok_or_else(|| format!("{field} {v:?}"))).transpose()
}

/// An explicit REQUEST.json (guest cells, not a flavor) as the core model.
pub fn request_from_json(text: &str) -> Result<GuestTopology, String> {
    let doc: RequestDoc = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let cells = doc
        .cells
        .into_iter()
        .map(|c| {
            let pagesize = match c.pagesize {
                None => None,
                Some(PageSizeDoc::Kib(k)) => Some(PageSizeWish::Kib(k)),
                Some(PageSizeDoc::Text(t)) => Some(crate::flavor::parse_page_size(&t).map_err(|e| e.to_string())?),
            };
            Ok(GuestCell {
                cpuset: c.cpuset.into_iter().collect::<CpuSet>(),
                pcpuset: c.pcpuset.into_iter().collect(),
                memory: c.memory,
                pagesize,
            })
        })
        .collect::<Result<_, String>>()?;
    let cpu_policy = named(doc.cpu_policy.as_deref(), "cpu_policy")?;
    let thread_policy = named(doc.cpu_thread_policy.as_deref(), "cpu_thread_policy")?;
    let emulator_threads = named(doc.emulator_threads_policy.as_deref(), "emulator_threads_policy")?;
    Ok(GuestTopology { cells, cpu_policy, thread_policy, emulator_threads, pci_requests: Vec::new() })
}

#[derive(Deserialize, Default)]
struct LimitsDoc {
    #[serde(default)]
    cpu_allocation_ratio: Option<f64>,
    #[serde(default)]
    ram_allocation_ratio: Option<f64>,
    #[serde(default)]
    network_metadata: Option<NetworkDoc>,
}

#[derive(Deserialize)]
struct NetworkDoc {
    #[serde(default)]
    physnets: Vec<String>,
    #[serde(default)]
    tunneled: bool,
}

/// LIMITS.json as the core model.
pub fn limits_from_json(text: &str, strategy: Strategy) -> Result<Limits, String> {
    let doc: LimitsDoc = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(Limits {
        cpu_allocation_ratio: doc.cpu_allocation_ratio,
        ram_allocation_ratio: doc.ram_allocation_ratio,
        network: doc.network_metadata.map(|n| NetworkNeed { physnets: n.physnets, tunneled: n.tunneled }),
        strategy,
    })
}
