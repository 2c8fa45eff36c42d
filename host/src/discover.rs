//! Reads the machine's NUMA topology: Linux sysfs and procfs under a root directory (`/` live, a
//! recorded tree in tests), or the text of `numactl --hardware`. Every node is kept as it is:
//! ids need not be contiguous, a node may have CPUs and no memory or memory and no CPUs, offline
//! and disallowed CPUs are left out, and hyperthread siblings come from `thread_siblings_list`,
//! never from numbering. A file that exists but cannot be parsed is an error naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use numafit_plugin::topology::{HostCell, HostTopology, PagePool};
use numafit_plugin::CpuSet;

use crate::formats::HostJson;

/// A sysfs or numactl reading that cannot be understood.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct DiscoverError {
    pub file: String,
    pub message: String,
}

fn err(file: &Path, message: impl Into<String>) -> DiscoverError {
    DiscoverError { file: file.display().to_string(), message: message.into() }
}

/// A pool of huge pages on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugePool {
    pub size_kb: u32,
    pub total: u64,
    pub free: u64,
    pub surplus: u64,
}

/// One logical CPU as the kernel describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    pub id: u32,
    /// Online, allowed CPUs sharing this CPU's core, itself included.
    pub siblings: Vec<u32>,
    pub core_id: Option<i64>,
    pub package: Option<i64>,
    pub die: Option<i64>,
    pub cluster: Option<i64>,
    /// Online, allowed CPUs sharing this CPU's L3 cache, when the tree says.
    pub l3: Option<Vec<u32>>,
}

/// One NUMA node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: u32,
    /// Online CPUs the process may use, ascending.
    pub cpus: Vec<u32>,
    pub memory_kib: u64,
    pub free_kib: Option<u64>,
    pub hugepages: Vec<HugePool>,
    /// Distance to each node of the topology, in its node order; empty when unknown.
    pub distances: Vec<u32>,
}

/// What was read: nodes by ascending id, the CPUs' details, and what was noticed on the way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub nodes: Vec<Node>,
    pub cpus: BTreeMap<u32, Cpu>,
    /// Base page size in KiB (4 unless the machine says otherwise).
    pub base_page_kb: u32,
    /// CPUs that exist but are offline or not allowed to this process.
    pub excluded_cpus: Vec<u32>,
    pub notes: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Kernel list and mask syntax

/// The kernel's CPU / node list syntax: `0-3,8-11`, with `^N` or `^N-M` exclusions (numafit's own
/// command-line extension) and an optional `:stride` is not supported. Empty text is the empty set.
pub fn parse_list(text: &str) -> Result<Vec<u32>, String> {
    let mut include = BTreeSet::new();
    let mut exclude = BTreeSet::new();
    for part in text.trim().trim_end_matches('\0').trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (target, body) = match part.strip_prefix('^') {
            Some(rest) => (&mut exclude, rest),
            None => (&mut include, part),
        };
        let num = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("{part:?} is not a number or range"));
        match body.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 1 << 20 {
                    return Err(format!("{part:?} is not a valid range"));
                }
                target.extend(a..=b);
            }
            None => {
                target.insert(num(body)?);
            }
        }
    }
    Ok(include.difference(&exclude).copied().collect())
}

/// A kernel bitmask such as `0000,0000003f` (32-bit words, most significant first).
pub fn parse_mask(text: &str) -> Result<Vec<u32>, String> {
    let words: Vec<&str> = text.trim().trim_end_matches('\0').trim().split(',').collect();
    let mut cpus = Vec::new();
    for (i, word) in words.iter().rev().enumerate() {
        let w = u32::from_str_radix(word.trim(), 16).map_err(|_| format!("{word:?} is not a hexadecimal mask word"))?;
        for bit in 0..32 {
            if w >> bit & 1 == 1 {
                cpus.push(i as u32 * 32 + bit);
            }
        }
    }
    cpus.sort_unstable();
    Ok(cpus)
}

// ---------------------------------------------------------------------------------------------
// sysfs

struct Tree {
    root: PathBuf,
}

impl Tree {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The file's text without trailing whitespace and NULs; `None` when it does not exist.
    fn text(&self, rel: &str) -> Result<Option<String>, DiscoverError> {
        let p = self.path(rel);
        // A FIFO, socket or device where a sysfs file belongs would block or never end: only
        // regular files (sysfs and procfs files are) are read.
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => return Err(err(&p, "expected a file, found a directory")),
            Ok(m) if !m.is_file() => return Err(err(&p, "not a regular file (a FIFO, socket or device): refusing to read it")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(&p, format!("cannot read: {e}"))),
        }
        match std::fs::read(&p) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).trim_end_matches(['\0', '\n', ' ', '\t']).to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if p.is_dir() => Err(err(&p, format!("expected a file: {e}"))),
            Err(e) => Err(err(&p, format!("cannot read: {e}"))),
        }
    }

    fn list(&self, rel: &str) -> Result<Option<Vec<u32>>, DiscoverError> {
        self.text(rel)?.map(|t| parse_list(&t).map_err(|m| err(&self.path(rel), m))).transpose()
    }

    fn mask(&self, rel: &str) -> Result<Option<Vec<u32>>, DiscoverError> {
        self.text(rel)?.map(|t| parse_mask(&t).map_err(|m| err(&self.path(rel), m))).transpose()
    }

    /// A CPU set from `NAME_list` (or `NAMElist`), else from the `NAME` / `NAMEmap` mask.
    fn cpus(&self, list_rel: &str, mask_rel: &str) -> Result<Option<Vec<u32>>, DiscoverError> {
        match self.list(list_rel)? {
            Some(v) => Ok(Some(v)),
            None => self.mask(mask_rel),
        }
    }

    fn int(&self, rel: &str) -> Result<Option<i64>, DiscoverError> {
        self.text(rel)?
            .map(|t| t.trim().parse::<i64>().map_err(|_| err(&self.path(rel), format!("{t:?} is not a whole number"))))
            .transpose()
    }

    /// Numbered entries `PREFIX<N>` of a directory, ascending.
    fn numbered(&self, rel: &str, prefix: &str) -> Result<Vec<u32>, DiscoverError> {
        let p = self.path(rel);
        let entries = match std::fs::read_dir(&p) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err(&p, format!("cannot list: {e}"))),
        };
        let mut ids: Vec<u32> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix(prefix)).and_then(|n| n.parse::<u32>().ok()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }
}

/// `Key: value kB` lines of a meminfo file (`Node N ` prefixes allowed): none when the key is
/// missing, an error naming the value when it is not a number of KiB that fits.
fn meminfo_value(text: &str, key: &str) -> Result<Option<u64>, String> {
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        if k.split_whitespace().last() != Some(key) {
            continue;
        }
        let value = v.split_whitespace().next().unwrap_or("");
        return value.parse::<u64>().ok().filter(|kib| kib / 1024 <= crate::formats::MAX_MEMORY_MB).map(Some).ok_or_else(|| {
            format!("{key} {value:?} is not a number of KiB numafit accepts (at most {} MiB)", crate::formats::MAX_MEMORY_MB)
        });
    }
    Ok(None)
}

fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    meminfo_value(text, key).ok().flatten()
}

/// `Cpus_allowed_list` / `Mems_allowed_list` of a `/proc/self/status`.
fn status_list(tree: &Tree, key: &str) -> Result<Option<Vec<u32>>, DiscoverError> {
    let Some(text) = tree.text("proc/self/status")? else {
        return Ok(None);
    };
    match text.lines().find_map(|l| l.strip_prefix(key)) {
        Some(v) => {
            parse_list(v.trim_start_matches(':').trim()).map(Some).map_err(|m| err(&tree.path("proc/self/status"), format!("{key}: {m}")))
        }
        None => Ok(None),
    }
}

/// A cpuset cgroup's CPUs and memory nodes, each when it says.
type CpusAndNodes = (Option<Vec<u32>>, Option<Vec<u32>>);

/// The CPUs and memory nodes of this process' cpuset cgroup (v1 or v2), when the tree has one.
fn cgroup_cpuset(tree: &Tree) -> Result<CpusAndNodes, DiscoverError> {
    let Some(path) = tree.text("proc/self/cpuset")? else {
        return Ok((None, None));
    };
    let Some(mounts) = tree.text("proc/mounts")? else {
        return Ok((None, None));
    };
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(mount), Some(fstype), opts) = (fields.get(1), fields.get(2), fields.get(3).copied().unwrap_or("")) else {
            continue;
        };
        let v1 = *fstype == "cpuset" || (*fstype == "cgroup" && opts.split(',').any(|o| o == "cpuset"));
        let v2 = *fstype == "cgroup2";
        if !v1 && !v2 {
            continue;
        }
        let dir = format!("{}/{}", mount.trim_end_matches('/'), path.trim().trim_start_matches('/'));
        let names: &[(&str, &str)] = if v1 {
            &[("cpus", "mems"), ("cpuset.cpus", "cpuset.mems"), ("cpuset.effective_cpus", "cpuset.effective_mems")]
        } else {
            &[("cpuset.cpus.effective", "cpuset.mems.effective")]
        };
        for (cpus, mems) in names {
            let c = tree.list(&format!("{dir}/{cpus}"))?;
            if c.is_some() {
                return Ok((c, tree.list(&format!("{dir}/{mems}"))?));
            }
        }
    }
    Ok((None, None))
}

fn read_cpu(tree: &Tree, id: u32, usable: &BTreeSet<u32>) -> Result<Cpu, DiscoverError> {
    let base = format!("sys/devices/system/cpu/cpu{id}");
    let keep = |v: Vec<u32>| -> Vec<u32> { v.into_iter().filter(|c| usable.contains(c)).collect() };
    let siblings = tree
        .cpus(&format!("{base}/topology/thread_siblings_list"), &format!("{base}/topology/thread_siblings"))?
        .map(keep)
        .filter(|s| s.contains(&id))
        .unwrap_or_else(|| vec![id]);
    let mut l3 = None;
    for index in tree.numbered(&format!("{base}/cache"), "index")? {
        let dir = format!("{base}/cache/index{index}");
        if tree.int(&format!("{dir}/level"))? == Some(3) {
            l3 = tree.cpus(&format!("{dir}/shared_cpu_list"), &format!("{dir}/shared_cpu_map"))?.map(keep);
        }
    }
    Ok(Cpu {
        id,
        siblings,
        core_id: tree.int(&format!("{base}/topology/core_id"))?,
        package: tree.int(&format!("{base}/topology/physical_package_id"))?,
        die: tree.int(&format!("{base}/topology/die_id"))?,
        cluster: tree.int(&format!("{base}/topology/cluster_id"))?,
        l3,
    })
}

fn read_hugepages(tree: &Tree, node_dir: &str) -> Result<Vec<HugePool>, DiscoverError> {
    let dir = tree.path(&format!("{node_dir}/hugepages"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut pools = Vec::new();
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().map(str::to_string)).collect();
    names.sort();
    for name in names {
        let Some(size) = name.strip_prefix("hugepages-").and_then(|s| s.strip_suffix("kB")) else {
            continue;
        };
        let size_kb = size
            .parse::<u32>()
            .ok()
            .filter(|k| k.is_power_of_two())
            .ok_or_else(|| err(&dir.join(&name), "the size in the directory name is not a power-of-two number of KiB"))?;
        let count = |f: &str| -> Result<u64, DiscoverError> {
            let rel = format!("{node_dir}/hugepages/{name}/{f}");
            match tree.int(&rel)? {
                Some(v) if v < 0 => Err(err(&tree.path(&rel), format!("{v} is not a page count"))),
                v => Ok(v.unwrap_or(0) as u64),
            }
        };
        pools.push(HugePool {
            size_kb,
            total: count("nr_hugepages")?,
            free: count("free_hugepages")?,
            surplus: count("surplus_hugepages")?,
        });
    }
    pools.sort_by_key(|p| p.size_kb);
    Ok(pools)
}

/// Reads the topology under `root` (`/` for this machine).
pub fn read_sysfs(root: &Path) -> Result<Topology, DiscoverError> {
    let tree = Tree { root: root.to_path_buf() };
    let cpu_dir = "sys/devices/system/cpu";
    if !tree.path(cpu_dir).is_dir() {
        return Err(err(&tree.path(cpu_dir), "not found: is this a Linux sysfs tree?"));
    }
    let mut notes = Vec::new();

    // Which CPUs exist, which are online, which this process may use.
    let present: Vec<u32> = tree.numbered(cpu_dir, "cpu")?;
    let online: BTreeSet<u32> = match tree.list(&format!("{cpu_dir}/online"))? {
        Some(v) => v.into_iter().collect(),
        None => {
            let mut on = BTreeSet::new();
            for &c in &present {
                let rel = format!("{cpu_dir}/cpu{c}/online");
                // Some recorded trees hold an empty `online` file: the CPU is taken as online.
                if tree.text(&rel)?.is_some_and(|t| t.trim().is_empty()) {
                    notes.push(format!("cpu{c}: its online file is empty; taken as online"));
                    on.insert(c);
                } else if tree.int(&rel)? != Some(0) {
                    on.insert(c);
                }
            }
            on
        }
    };
    let (cg_cpus, cg_mems) = cgroup_cpuset(&tree)?;
    let allowed: Option<BTreeSet<u32>> = status_list(&tree, "Cpus_allowed_list")?.or(cg_cpus).map(|v| v.into_iter().collect());
    let usable: BTreeSet<u32> = online.iter().copied().filter(|c| allowed.as_ref().is_none_or(|a| a.contains(c))).collect();
    let mut excluded: BTreeSet<u32> = present.iter().copied().filter(|c| !usable.contains(c)).collect();
    excluded.extend(online.iter().filter(|c| !usable.contains(c)));
    let status_mems = status_list(&tree, "Mems_allowed_list")?;
    // Named in notes: which file limited the memory nodes.
    let mems_source = if status_mems.is_some() { "Mems_allowed_list" } else { "the cgroup's cpuset.mems" };
    let mems_allowed: Option<BTreeSet<u32>> = status_mems.or(cg_mems).map(|v| v.into_iter().collect());

    // The nodes.
    let node_root = "sys/devices/system/node";
    let mut node_ids = tree.numbered(node_root, "node")?;
    if let Some(online_nodes) = tree.list(&format!("{node_root}/online"))? {
        node_ids.retain(|n| online_nodes.contains(n));
    }
    let mut nodes = Vec::new();
    if node_ids.is_empty() {
        // No NUMA information: one node holding every usable CPU and all memory.
        let meminfo = tree.text("proc/meminfo")?;
        let memory_kib = meminfo.as_deref().and_then(|t| meminfo_kib(t, "MemTotal")).unwrap_or(0);
        notes.push("no node directory in sysfs: one node with every CPU and the memory of /proc/meminfo".into());
        nodes.push(Node {
            id: 0,
            cpus: usable.iter().copied().collect(),
            memory_kib,
            free_kib: meminfo.as_deref().and_then(|t| meminfo_kib(t, "MemFree")),
            hugepages: Vec::new(),
            distances: Vec::new(),
        });
    }
    for &id in &node_ids {
        let dir = format!("{node_root}/node{id}");
        let cpus = tree.cpus(&format!("{dir}/cpulist"), &format!("{dir}/cpumap"))?.unwrap_or_default();
        let cpus: Vec<u32> = cpus.into_iter().filter(|c| usable.contains(c)).collect();
        let meminfo_path = format!("{dir}/meminfo");
        let meminfo = tree.text(&meminfo_path)?;
        let memory_kib = match &meminfo {
            Some(t) => meminfo_value(t, "MemTotal")
                .map_err(|m| err(&tree.path(&meminfo_path), m))?
                .ok_or_else(|| err(&tree.path(&meminfo_path), "no MemTotal line"))?,
            None => 0,
        };
        let distances = match tree.text(&format!("{dir}/distance"))? {
            Some(t) => t
                .split_whitespace()
                .map(|d| d.parse::<u32>().map_err(|_| err(&tree.path(&format!("{dir}/distance")), format!("{d:?} is not a distance"))))
                .collect::<Result<Vec<u32>, _>>()?,
            None => Vec::new(),
        };
        let memory_allowed = mems_allowed.as_ref().is_none_or(|m| m.contains(&id));
        if !memory_allowed && cpus.is_empty() {
            notes.push(format!("node {id}: neither its memory nor any of its CPUs is allowed to this process: left out"));
            continue;
        }
        if !memory_allowed {
            notes.push(format!("node {id}: memory not allowed to this process ({mems_source}); its memory is reported as 0"));
        }
        nodes.push(Node {
            id,
            cpus,
            memory_kib: if memory_allowed { memory_kib } else { 0 },
            free_kib: if memory_allowed { meminfo.as_deref().and_then(|t| meminfo_kib(t, "MemFree")) } else { None },
            hugepages: if memory_allowed { read_hugepages(&tree, &dir)? } else { Vec::new() },
            distances,
        });
    }
    // Distances are listed for every online node in id order: keep the columns of the nodes kept.
    // A table that is not a SLIT (wrong size, local distance not 10, a distance under 10) is
    // left out rather than trusted.
    let listed = node_ids.len();
    let kept: Vec<usize> = node_ids.iter().enumerate().filter(|(_, id)| nodes.iter().any(|n| n.id == **id)).map(|(i, _)| i).collect();
    let matrix: Option<Vec<u32>> = (kept.len() == nodes.len() && nodes.iter().all(|n| n.distances.len() == listed))
        .then(|| nodes.iter().flat_map(|n| kept.iter().map(|&k| n.distances[k])).collect());
    // The same rule as a HOST.json's distances (`formats::slit_problem`).
    if let Some(matrix) = matrix.filter(|m| crate::formats::slit_problem(m, nodes.len()).is_none()) {
        let n = nodes.len();
        for (i, node) in nodes.iter_mut().enumerate() {
            node.distances = matrix[i * n..(i + 1) * n].to_vec();
        }
    } else {
        if nodes.iter().any(|node| !node.distances.is_empty()) {
            notes.push(format!("node distance files are not a valid SLIT over the {listed} nodes: distances left out"));
        }
        for node in &mut nodes {
            node.distances.clear();
        }
    }

    // Firmware that lists one CPU under several nodes would let a fit pin it through two cells.
    let mut home: BTreeMap<u32, u32> = BTreeMap::new();
    let mut shared_by: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    for node in &nodes {
        for &c in &node.cpus {
            if let Some(&first) = home.get(&c) {
                shared_by.entry((first, node.id)).or_default().push(c);
            } else {
                home.insert(c, node.id);
            }
        }
    }
    if let Some(((a, b), both)) = shared_by.iter().next() {
        return Err(err(
            &tree.path(node_root),
            format!(
                "nodes {a} and {b} both list CPUs {} (and {} more node pairs overlap): the firmware's NUMA description is inconsistent; refusing to report a CPU in two cells",
                crate::cpulist::text(both),
                shared_by.len() - 1
            ),
        ));
    }

    let mut cpus = BTreeMap::new();
    for &c in &usable {
        cpus.insert(c, read_cpu(&tree, c, &usable)?);
    }
    let placed: BTreeSet<u32> = nodes.iter().flat_map(|n| n.cpus.iter().copied()).collect();
    let homeless: Vec<u32> = usable.difference(&placed).copied().collect();
    if !homeless.is_empty() {
        notes.push(format!("CPUs {} are online but in no node's cpulist: left out", crate::cpulist::text(&homeless)));
        excluded.extend(homeless);
    }
    Ok(Topology { nodes, cpus, base_page_kb: base_page_kb(&tree, &mut notes)?, excluded_cpus: excluded.into_iter().collect(), notes })
}

/// The base page size: this machine's own when reading `/`; for a recorded tree, its
/// `proc/self/smaps` (`KernelPageSize`) when it has one, else 4 KiB with a note (64 KiB kernels
/// are common on arm64 and ppc64, so the assumption is said).
fn base_page_kb(tree: &Tree, notes: &mut Vec<String>) -> Result<u32, DiscoverError> {
    if tree.root == Path::new("/") {
        // SAFETY: sysconf only reads a constant of the running system.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 {
            return Ok((size / 1024) as u32);
        }
    }
    if let Some(smaps) = tree.text("proc/self/smaps")? {
        let path = tree.path("proc/self/smaps");
        if let Some(kib) = meminfo_value(&smaps, "KernelPageSize").map_err(|m| err(&path, m))? {
            return u32::try_from(kib)
                .ok()
                .filter(|k| k.is_power_of_two())
                .ok_or_else(|| err(&path, format!("KernelPageSize {kib} kB is not a page size")));
        }
    }
    notes.push("the recorded tree does not say its base page size (no proc/self/smaps): 4 KiB assumed".into());
    Ok(4)
}

// ---------------------------------------------------------------------------------------------
// numactl --hardware

/// Parses `numactl -H` / `numactl --hardware` output. Each line is matched by its node id, so a
/// node without CPUs or without memory shifts nothing. Sibling information is not in this output:
/// every CPU is taken as a core of its own.
pub fn parse_numactl(text: &str, file: &Path) -> Result<Topology, DiscoverError> {
    let mut nodes: BTreeMap<u32, Node> = BTreeMap::new();
    let mut declared: Option<Vec<u32>> = None;
    let lines = text.lines().enumerate();
    let at = |i: usize, m: String| err(file, format!("line {}: {m}", i + 1));
    let mut columns: Option<Vec<u32>> = None;
    let mut rows: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (i, raw) in lines {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("available:") {
            // `available: 2 nodes (0-1)`
            if let (Some(open), Some(close)) = (rest.find('('), rest.rfind(')')) {
                declared = Some(parse_list(&rest[open + 1..close]).map_err(|m| at(i, m))?);
            }
            continue;
        }
        if line == "node distances:" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("node ").map(str::trim_start).filter(|r| r.contains(':')) {
            // `node 0 cpus: 0 2 4 6`, `node 0 size: 32690 MB`, `node 0 free: 19579 MB`
            let first = rest.split_whitespace().next().unwrap_or_default();
            if let Ok(id) = first.parse::<u32>() {
                let (key, value) = rest[first.len()..].split_once(':').map(|(k, v)| (k.trim(), v.trim())).unwrap_or(("", ""));
                let node = nodes.entry(id).or_insert_with(|| Node {
                    id,
                    cpus: vec![],
                    memory_kib: 0,
                    free_kib: None,
                    hugepages: vec![],
                    distances: vec![],
                });
                let mb = |v: &str| -> Result<u64, DiscoverError> {
                    let n = v.split_whitespace().next().unwrap_or_default();
                    n.parse::<u64>().map_err(|_| at(i, format!("node {id} {key}: {v:?} is not a size in MB")))
                };
                match key {
                    "cpus" => {
                        node.cpus = value
                            .split_whitespace()
                            .map(|c| c.parse::<u32>().map_err(|_| at(i, format!("node {id} cpus: {c:?} is not a CPU number"))))
                            .collect::<Result<_, _>>()?;
                        node.cpus.sort_unstable();
                    }
                    "size" => node.memory_kib = mb(value)? * 1024,
                    "free" => node.free_kib = Some(mb(value)? * 1024),
                    _ => {}
                }
                continue;
            }
            return Err(at(i, format!("unexpected line {line:?}")));
        }
        if let Some(rest) = line.strip_prefix("node ") {
            // The distance table header: `node   0   1`.
            columns = Some(
                rest.split_whitespace()
                    .map(|c| c.parse::<u32>().map_err(|_| at(i, format!("distance header: {c:?} is not a node id"))))
                    .collect::<Result<_, _>>()?,
            );
            continue;
        }
        if let (Some(_), Some((id, values))) = (&columns, line.split_once(':')) {
            let id = id.trim().parse::<u32>().map_err(|_| at(i, format!("distance row: {id:?} is not a node id")))?;
            let values = values
                .split_whitespace()
                .map(|d| d.parse::<u32>().map_err(|_| at(i, format!("distance row {id}: {d:?} is not a distance"))))
                .collect::<Result<_, _>>()?;
            rows.insert(id, values);
            continue;
        }
        return Err(at(i, format!("unexpected line {line:?}")));
    }
    if let Some(ids) = &declared {
        for id in ids {
            if !nodes.contains_key(id) {
                return Err(err(file, format!("node {id} is declared available but has no lines")));
            }
        }
    }
    if nodes.is_empty() {
        return Err(err(file, "no `node N ...` lines: not numactl --hardware output"));
    }
    let order: Vec<u32> = nodes.keys().copied().collect();
    if let Some(cols) = &columns {
        for (id, node) in nodes.iter_mut() {
            let row = rows.get(id).ok_or_else(|| err(file, format!("distance table has no row for node {id}")))?;
            if row.len() != cols.len() {
                return Err(err(file, format!("distance row {id} has {} entries for {} columns", row.len(), cols.len())));
            }
            node.distances = order
                .iter()
                .map(|to| {
                    cols.iter()
                        .position(|c| c == to)
                        .map(|k| row[k])
                        .ok_or_else(|| err(file, format!("distance table has no column for node {to}")))
                })
                .collect::<Result<_, _>>()?;
        }
    }
    let cpus = nodes
        .values()
        .flat_map(|n| n.cpus.iter().copied())
        .map(|c| (c, Cpu { id: c, siblings: vec![c], core_id: None, package: None, die: None, cluster: None, l3: None }))
        .collect();
    Ok(Topology {
        nodes: nodes.into_values().collect(),
        cpus,
        base_page_kb: 4,
        excluded_cpus: vec![],
        notes: vec!["from numactl output: no hyperthread sibling information, each CPU is its own core".into()],
    })
}

// ---------------------------------------------------------------------------------------------
// Into the host model

/// Which CPUs guests may use and what memory is held back, like Nova's `cpu_shared_set` /
/// `cpu_dedicated_set` and the kubelet's `--reserved-memory`.
#[derive(Clone, Debug, Default)]
pub struct HostConfig {
    pub shared_cpus: Option<Vec<u32>>,
    pub dedicated_cpus: Option<Vec<u32>>,
    /// Node → MiB reserved for the host.
    pub reserved_memory_mb: BTreeMap<u32, u64>,
    /// (node, page size KiB) → pages reserved for the host.
    pub reserved_hugepages: BTreeMap<(u32, u32), u64>,
}

impl Topology {
    /// The host as HOST.json. Default (nothing configured): every CPU both shared and pinnable.
    /// This machine's host of record, checked by the core's rules like any other host.
    pub fn host(&self, cfg: &HostConfig) -> Result<HostTopology, String> {
        let all: BTreeSet<u32> = self.nodes.iter().flat_map(|n| n.cpus.iter().copied()).collect();
        let pick = |list: &Option<Vec<u32>>, name: &str| -> Result<Option<BTreeSet<u32>>, String> {
            let Some(list) = list else { return Ok(None) };
            let set: BTreeSet<u32> = list.iter().copied().collect();
            let unknown: Vec<u32> = set.difference(&all).copied().collect();
            if !unknown.is_empty() {
                return Err(format!("{name}: CPUs {} are not online CPUs of this host", crate::cpulist::text(&unknown)));
            }
            Ok(Some(set))
        };
        let shared = pick(&cfg.shared_cpus, "--shared-cpus")?;
        let dedicated = pick(&cfg.dedicated_cpus, "--dedicated-cpus")?;
        if let (Some(s), Some(d)) = (&shared, &dedicated) {
            let both: Vec<u32> = s.intersection(d).copied().collect();
            if !both.is_empty() {
                return Err(format!(
                    "--shared-cpus and --dedicated-cpus overlap on CPUs {}; a CPU is one or the other",
                    crate::cpulist::text(&both)
                ));
            }
        }
        let (shared, dedicated) = match (shared, dedicated) {
            (None, None) => (all.clone(), all.clone()),
            (s, d) => (s.unwrap_or_default(), d.unwrap_or_default()),
        };
        for node in cfg.reserved_memory_mb.keys().chain(cfg.reserved_hugepages.keys().map(|(n, _)| n)) {
            if !self.nodes.iter().any(|n| n.id == *node) {
                return Err(format!("reserved memory names node {node}, which this host does not have"));
            }
        }
        let mut cells = Vec::new();
        let mut rows = Vec::new();
        for node in &self.nodes {
            let huge_kib: u64 = node.hugepages.iter().map(|p| p.total * u64::from(p.size_kb)).sum();
            let reserved_mb = cfg.reserved_memory_mb.get(&node.id).copied().unwrap_or(0);
            let memory_mb = node.memory_kib / 1024;
            if reserved_mb > memory_mb {
                return Err(format!("--reserved-memory {}:{reserved_mb}: node {} has only {memory_mb} MiB", node.id, node.id));
            }
            let base = u64::from(self.base_page_kb.max(1));
            let mut mempages = vec![PagePool {
                size_kb: self.base_page_kb,
                total: node.memory_kib.saturating_sub(huge_kib) / base,
                used: 0,
                reserved: reserved_mb * 1024 / base,
            }];
            for p in &node.hugepages {
                let reserved = cfg.reserved_hugepages.get(&(node.id, p.size_kb)).copied().unwrap_or(0);
                if reserved > p.total {
                    return Err(format!(
                        "reserved hugepages {}:{}kB:{reserved}: node {} has {} such pages",
                        node.id, p.size_kb, node.id, p.total
                    ));
                }
                // Pages another process holds are used already.
                mempages.push(PagePool {
                    size_kb: p.size_kb,
                    total: p.total,
                    used: p.total.saturating_sub(p.free).saturating_sub(reserved),
                    reserved,
                });
            }
            let mut cores: Vec<Vec<u32>> = Vec::new();
            for c in &node.cpus {
                let sib: Vec<u32> = self
                    .cpus
                    .get(c)
                    .map(|cpu| cpu.siblings.iter().copied().filter(|s| node.cpus.contains(s)).collect())
                    .unwrap_or_else(|| vec![*c]);
                if !cores.iter().any(|g| g.contains(c)) {
                    cores.push(sib);
                }
            }
            let l3_groups = |cpus: &[u32]| -> Option<Vec<Vec<u32>>> {
                let mut groups: Vec<Vec<u32>> = Vec::new();
                for c in cpus {
                    let l3: Vec<u32> = self.cpus.get(c)?.l3.as_ref()?.iter().copied().filter(|x| cpus.contains(x)).collect();
                    if !groups.contains(&l3) {
                        groups.push(l3);
                    }
                }
                (!groups.is_empty()).then_some(groups)
            };
            let packages: BTreeSet<i64> =
                node.cpus.iter().filter_map(|c| self.cpus.get(c).and_then(|cpu| cpu.package)).filter(|p| *p >= 0).collect();
            let set = |keep: &dyn Fn(u32) -> bool| node.cpus.iter().copied().filter(|&c| keep(c)).collect::<CpuSet>();
            cells.push(HostCell {
                id: node.id,
                cpuset: set(&|c| shared.contains(&c)),
                pcpuset: set(&|c| dedicated.contains(&c)),
                memory: memory_mb - reserved_mb,
                cpu_usage: 0,
                memory_usage: 0,
                pinned_cpus: CpuSet::new(),
                host_cpus: set(&|c| !shared.contains(&c) && !dedicated.contains(&c)),
                siblings: cores.iter().map(|g| g.iter().copied().collect()).collect(),
                cache_groups: l3_groups(&node.cpus).unwrap_or_default().iter().map(|g| g.iter().copied().collect()).collect(),
                mempages,
                socket: (packages.len() == 1).then(|| packages.iter().next().map(|p| *p as u32)).flatten(),
                network_metadata: None,
            });
            rows.push(node.distances.clone());
        }
        // The distance matrix when every node has its row (discovery refuses a partial one).
        let n = rows.len();
        let distances = if rows.iter().all(|r| r.len() == n) { rows.concat() } else { Vec::new() };
        let host = HostTopology { cells, distances, pci_pools: vec![] };
        host.check().map_err(|p| format!("the discovered host: {p}"))?;
        Ok(host)
    }

    /// `host` as HOST.json.
    pub fn to_host(&self, cfg: &HostConfig) -> Result<HostJson, String> {
        Ok(HostJson::from_record(&self.host(cfg)?))
    }
}
