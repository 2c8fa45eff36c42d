//! Nova's flavor parsing: the guest topology a flavor and its image imply, exactly as Nova's
//! `numa_get_constraints` derives it, with Nova's exception names as error codes. `from_flavor` is
//! a sequence of small named steps (sizes and keys, policies, resources and traits, dedicated
//! vCPUs, cells and pages); the guest model it produces lives in `request`.

use crate::cpuset::CpuSet;
use crate::names::Named;
use crate::request::{
    CpuPolicy, EmulatorThreads, GuestCell, GuestTopology, PageSizeWish, PciNumaPolicy, PciRequest, RequestError, ThreadPolicy,
};

/// A flavor with the image properties that refine it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flavor {
    pub vcpus: u32,
    pub memory_mb: u64,
    pub extra_specs: Vec<(String, String)>,
    pub image_props: Vec<(String, String)>,
    pub pci_requests: Vec<PciRequest>,
}

impl Flavor {
    fn spec(&self, key: &str) -> Option<&str> {
        self.extra_specs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn prop(&self, key: &str) -> Option<&str> {
        self.image_props.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `hw:NAME` from the flavor and `hw_NAME` from the image, empty strings read as unset.
    fn both(&self, name: &str) -> (Option<&str>, Option<&str>) {
        let f = self.spec(&format!("hw:{name}")).filter(|v| !v.is_empty());
        let i = self.prop(&format!("hw_{name}")).filter(|v| !v.is_empty());
        (f, i)
    }

    fn all_vcpus(&self) -> CpuSet {
        (0..self.vcpus).collect()
    }
}

/// Nova's `parse_cpu_spec`: `0-3,^2,8` with `^` exclusions; error code `Invalid`.
pub fn parse_cpu_spec(spec: &str) -> Result<CpuSet, RequestError> {
    let mut include = CpuSet::new();
    let mut exclude = CpuSet::new();
    let num = |s: &str, rule: &str, what: &str| -> Result<u32, RequestError> {
        s.trim()
            .parse::<u32>()
            .map_err(|_| RequestError::new("Invalid", format!("invalid {what} expression {rule:?} in CPU spec {spec:?}")))
    };
    for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let (reject, body) = match rule.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, rule),
        };
        let target = if reject { &mut exclude } else { &mut include };
        if let Some((a, b)) = body.split_once('-') {
            let (start, end) = (num(a, rule, "range")?, num(b, rule, "range")?);
            if start > end || end - start > 65_535 {
                return Err(RequestError::new("Invalid", format!("invalid range expression {rule:?} in CPU spec {spec:?}")));
            }
            target.extend(start..=end);
        } else {
            target.insert(num(body, rule, if reject { "exclusion" } else { "inclusion" })?);
        }
    }
    Ok(include.difference(&exclude))
}

fn parse_bool(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "t" | "true" | "on" | "y" | "yes")
}

/// A policy by name; `code` is Nova's exception for any other value, `key` the spec it was under.
fn parse_named<T: Named>(v: &str, key: &str, code: &str) -> Result<T, RequestError> {
    T::from_name(v).ok_or_else(|| RequestError::new(code, format!("{key}={v:?} is not one of {}", T::choices())))
}

fn parse_cpu_policy(v: &str, source: &str) -> Result<CpuPolicy, RequestError> {
    parse_named(v, &format!("{source}cpu_policy"), "InvalidCPUAllocationPolicy")
}

fn parse_thread_policy(v: &str, source: &str) -> Result<ThreadPolicy, RequestError> {
    parse_named(v, &format!("{source}cpu_thread_policy"), "InvalidCPUThreadAllocationPolicy")
}

/// Nova's `get_cpu_policy_constraint`: a flavor's dedicated wins; an image may not loosen or
/// contradict a flavor's mixed or shared; an unset flavor takes the image's.
fn cpu_policy(f: &Flavor) -> Result<Option<CpuPolicy>, RequestError> {
    let (fv, iv) = f.both("cpu_policy");
    let fp = fv.map(|v| parse_cpu_policy(v, "flavor extra spec hw:")).transpose()?;
    let ip = iv.map(|v| parse_cpu_policy(v, "image property hw_")).transpose()?;
    let forbidden = || {
        RequestError::new(
            "ImageCPUPinningForbidden",
            format!(
                "image property hw_cpu_policy={} conflicts with flavor extra spec hw:cpu_policy={}",
                iv.unwrap_or_default(),
                fv.unwrap_or_default()
            ),
        )
    };
    match fp {
        Some(CpuPolicy::Dedicated) => Ok(fp),
        Some(CpuPolicy::Mixed) if ip == Some(CpuPolicy::Dedicated) => Err(forbidden()),
        Some(CpuPolicy::Shared) if matches!(ip, Some(CpuPolicy::Mixed | CpuPolicy::Dedicated)) => Err(forbidden()),
        Some(_) => Ok(fp),
        None => Ok(ip),
    }
}

/// Nova's `get_cpu_thread_policy_constraint`: a flavor's prefer (or nothing) yields to the image;
/// any other flavor policy must not be contradicted by the image.
fn thread_policy(f: &Flavor) -> Result<Option<ThreadPolicy>, RequestError> {
    let (fv, iv) = f.both("cpu_thread_policy");
    let fp = fv.map(|v| parse_thread_policy(v, "flavor extra spec hw:")).transpose()?;
    let ip = iv.map(|v| parse_thread_policy(v, "image property hw_")).transpose()?;
    match fp {
        None | Some(ThreadPolicy::Prefer) => Ok(fp.or(ip)),
        Some(p) if ip.is_some_and(|i| i != p) => Err(RequestError::new(
            "ImageCPUThreadPolicyForbidden",
            format!(
                "image property hw_cpu_thread_policy={} conflicts with flavor extra spec hw:cpu_thread_policy={}",
                iv.unwrap_or_default(),
                fv.unwrap_or_default()
            ),
        )),
        Some(p) => Ok(Some(p)),
    }
}

fn emulator_threads(f: &Flavor) -> Result<Option<EmulatorThreads>, RequestError> {
    let v = f.spec("hw:emulator_threads_policy").filter(|v| !v.is_empty());
    v.map(|v| parse_named(v, "flavor extra spec hw:emulator_threads_policy", "InvalidEmulatorThreadsPolicy")).transpose()
}

/// `^`-masks are relative to all of the flavor's vCPUs.
fn parse_mask(f: &Flavor, mask: &str) -> Result<CpuSet, RequestError> {
    if mask.trim().starts_with('^') {
        parse_cpu_spec(&format!("0-{},{mask}", f.vcpus.saturating_sub(1)))
    } else {
        parse_cpu_spec(mask)
    }
}

/// Nova's `get_dedicated_cpu_constraint` (`hw:cpu_dedicated_mask`, flavor only).
fn dedicated_mask(f: &Flavor) -> Result<Option<CpuSet>, RequestError> {
    let Some(mask) = f.spec("hw:cpu_dedicated_mask").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let pcpus = parse_mask(f, mask)?;
    let all = f.all_vcpus();
    if pcpus.is_empty() || all.difference(&pcpus).is_empty() {
        return Err(RequestError::new(
            "InvalidMixedInstanceDedicatedMask",
            format!("hw:cpu_dedicated_mask={mask:?} must leave at least one shared and one dedicated vCPU of {}", f.vcpus),
        ));
    }
    if !pcpus.is_subset(&all) {
        return Err(RequestError::new(
            "InvalidMixedInstanceDedicatedMask",
            format!("hw:cpu_dedicated_mask={mask:?} names vCPUs {} the flavor's {} vCPUs do not have", pcpus.difference(&all), f.vcpus),
        ));
    }
    Ok(Some(pcpus))
}

/// Nova's `get_realtime_cpu_constraint`: with `hw:cpu_realtime`, the realtime vCPUs (image mask
/// before flavor mask; all vCPUs without one).
fn realtime_cpus(f: &Flavor, emulator: Option<EmulatorThreads>) -> Result<Option<CpuSet>, RequestError> {
    if !f.spec("hw:cpu_realtime").is_some_and(parse_bool) {
        return Ok(None);
    }
    let (fm, im) = f.both("cpu_realtime_mask");
    let mask = im.or(fm);
    let all = f.all_vcpus();
    let rt = match mask {
        Some(m) => parse_mask(f, m)?,
        None => all.clone(),
    };
    let invalid = |why: String| RequestError::new("RealtimeMaskNotFoundOrInvalid", why);
    if rt.is_empty() {
        return Err(invalid(format!("hw:cpu_realtime_mask={:?} selects no vCPU", mask.unwrap_or_default())));
    }
    if rt == all && emulator.is_none() {
        return Err(invalid(format!(
            "hw:cpu_realtime_mask={:?} makes every vCPU realtime; leave one for the emulator or set hw:emulator_threads_policy",
            mask.unwrap_or_default()
        )));
    }
    if !rt.is_subset(&all) {
        return Err(invalid(format!(
            "hw:cpu_realtime_mask names vCPUs {} the flavor's {} vCPUs do not have",
            rt.difference(&all),
            f.vcpus
        )));
    }
    Ok(Some(rt))
}

/// Sums of `resources[N]:VCPU` and `resources[N]:PCPU`.
fn vcpu_pcpu_resources(f: &Flavor) -> (u32, u32) {
    let mut v = 0u32;
    let mut p = 0u32;
    for (k, val) in &f.extra_specs {
        let Some((group, class)) = k.split_once(':') else {
            continue;
        };
        let Some(suffix) = group.strip_prefix("resources") else {
            continue;
        };
        if !(suffix.is_empty() || (!suffix.starts_with('0') && suffix.chars().all(|c| c.is_ascii_digit()))) {
            continue;
        }
        let n = val.trim().parse::<u32>().unwrap_or(0);
        match class {
            "VCPU" => v = v.saturating_add(n),
            "PCPU" => p = p.saturating_add(n),
            _ => {}
        }
    }
    (v, p)
}

fn hyperthreading_trait(f: &Flavor) -> Option<String> {
    for (k, val) in &f.extra_specs {
        if let Some((group, name)) = k.split_once(':') {
            let suffix = group.strip_prefix("trait");
            if name == "HW_CPU_HYPERTHREADING" && suffix.is_some_and(|s| s.chars().all(|c| c.is_ascii_digit())) {
                return Some(val.clone());
            }
        }
    }
    let required = f.prop("traits_required").unwrap_or_default();
    if required.split(|c: char| c == ',' || c.is_whitespace() || c == '"' || c == '[' || c == ']').any(|t| t == "HW_CPU_HYPERTHREADING") {
        return Some("required".into());
    }
    None
}

/// `hw:mem_page_size` / `hw_mem_page_size`: small, large, any, KiB, or a size with unit.
pub fn parse_page_size(v: &str) -> Result<PageSizeWish, RequestError> {
    let invalid = || {
        RequestError::new(
            "MemoryPageSizeInvalid",
            format!("page size {v:?} is not small, large, any, a KiB count or a size such as 2MB or 1GB"),
        )
    };
    if let Some(wish) = PageSizeWish::from_keyword(v) {
        return Ok(wish);
    }
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) {
        let kib = v.parse::<u32>().map_err(|_| invalid())?;
        return if kib == 0 { Err(invalid()) } else { Ok(PageSizeWish::Kib(kib)) };
    }
    // oslo's string_to_bytes in IEC mode: NUMBER [K|M|G|T][i] (B|b|bit), base 1024.
    let t = v.trim();
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    let rest = t[digits.len()..].trim();
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let (mult, unit) = match rest.chars().next() {
        Some('K') => (1u64 << 10, &rest[1..]),
        Some('M') => (1 << 20, &rest[1..]),
        Some('G') => (1 << 30, &rest[1..]),
        Some('T') => (1 << 40, &rest[1..]),
        _ => (1, rest),
    };
    let unit = unit.strip_prefix('i').unwrap_or(unit);
    let bytes = match unit {
        "B" => n.checked_mul(mult),
        "b" | "bit" => n.checked_mul(mult).map(|b| b / 8),
        _ => None,
    }
    .ok_or_else(invalid)?;
    let kib = bytes / 1024;
    if kib == 0 || kib > u64::from(u32::MAX) {
        return Err(invalid());
    }
    Ok(PageSizeWish::Kib(kib as u32))
}

/// Nova's `_get_numa_pagesize_constraint`: the image may only narrow a flavor's large or any.
fn page_size(f: &Flavor) -> Result<Option<PageSizeWish>, RequestError> {
    let (fv, iv) = f.both("mem_page_size");
    let forbidden = |against: &str| {
        RequestError::new(
            "MemoryPageSizeForbidden",
            format!("image property hw_mem_page_size={} is not allowed against flavor hw:mem_page_size={against}", iv.unwrap_or_default()),
        )
    };
    let Some(fv) = fv else {
        return match iv {
            Some(_) => Err(forbidden("<empty>")),
            None => Ok(None),
        };
    };
    let wish = parse_page_size(fv)?;
    match iv {
        Some(iv) if matches!(wish, PageSizeWish::Any | PageSizeWish::Large) => parse_page_size(iv).map(Some),
        Some(_) => Err(forbidden(fv)),
        None => Ok(Some(wish)),
    }
}

fn numa_nodes(f: &Flavor) -> Result<Option<u32>, RequestError> {
    let (fv, iv) = f.both("numa_nodes");
    if fv.is_some() && iv.is_some() {
        return Err(RequestError::new(
            "ImageNUMATopologyForbidden",
            "image property hw_numa_nodes may not be set when flavor extra spec hw:numa_nodes is".into(),
        ));
    }
    match fv.or(iv) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(RequestError::new("InvalidNUMANodesNumber", format!("hw:numa_nodes={v:?} must be a whole number of at least 1"))),
        },
    }
}

/// `PREFIX.0`, `PREFIX.1`, ... until the first missing index, from one source.
fn per_node<'a>(get: impl Fn(&str) -> Option<&'a str>, prefix: &str) -> Vec<(String, &'a str)> {
    (0..)
        .map_while(|i| {
            let key = format!("{prefix}.{i}");
            get(&key).map(|v| (key, v))
        })
        .collect()
}

/// `hw:numa_cpus.N` and `hw:numa_mem.N`, each when given.
type NodeLists = (Option<Vec<CpuSet>>, Option<Vec<u64>>);

fn node_lists(f: &Flavor) -> Result<NodeLists, RequestError> {
    let mut cpus = None;
    let mut mems = None;
    for (name, cpu) in [("numa_cpus", true), ("numa_mem", false)] {
        let fl = per_node(|k| f.spec(k), &format!("hw:{name}"));
        let il = per_node(|k| f.prop(k), &format!("hw_{name}"));
        if !fl.is_empty() && !il.is_empty() {
            return Err(RequestError::new(
                "ImageNUMATopologyForbidden",
                format!("image property hw_{name}.N may not be set when flavor extra spec hw:{name}.N is"),
            ));
        }
        let list = if fl.is_empty() { il } else { fl };
        if list.is_empty() {
            continue;
        }
        if cpu {
            cpus = Some(list.iter().map(|(_, v)| parse_cpu_spec(v)).collect::<Result<_, _>>()?);
        } else {
            mems = Some(
                list.iter()
                    .map(|(k, v)| match v.trim().parse::<u64>() {
                        Ok(m) if m >= 1 => Ok(m),
                        _ => Err(RequestError::new(
                            "ImageNUMATopologyMemoryOutOfRange",
                            format!("{k}={v:?} is not a whole number of MiB of at least 1"),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            );
        }
    }
    Ok((cpus, mems))
}

fn cells_auto(f: &Flavor, nodes: u32, dedicated: &CpuSet) -> Result<Vec<GuestCell>, RequestError> {
    if !f.vcpus.is_multiple_of(nodes) || !f.memory_mb.is_multiple_of(u64::from(nodes)) {
        return Err(RequestError::new(
            "ImageNUMATopologyAsymmetric",
            format!("{} vCPUs and {} MiB cannot be split evenly over hw:numa_nodes={nodes}", f.vcpus, f.memory_mb),
        ));
    }
    let per = f.vcpus / nodes;
    let mem = f.memory_mb / u64::from(nodes);
    Ok((0..nodes)
        .map(|n| {
            let cpus: CpuSet = (n * per..(n + 1) * per).collect();
            GuestCell { pcpuset: cpus.intersection(dedicated), cpuset: cpus.difference(dedicated), memory: mem, pagesize: None }
        })
        .collect())
}

fn cells_manual(f: &Flavor, cpu_list: &[CpuSet], mem_list: &[u64], dedicated: &CpuSet) -> Result<Vec<GuestCell>, RequestError> {
    let mut avail = f.all_vcpus();
    let mut cells = Vec::new();
    for (node, (cpus, &mem)) in cpu_list.iter().zip(mem_list).enumerate() {
        for cpu in cpus.iter() {
            if cpu >= f.vcpus {
                return Err(RequestError::new(
                    "ImageNUMATopologyCPUOutOfRange",
                    format!("hw:numa_cpus.{node} names vCPU {cpu}; the flavor's vCPUs are 0-{}", f.vcpus.saturating_sub(1)),
                ));
            }
            if !avail.remove(cpu) {
                return Err(RequestError::new(
                    "ImageNUMATopologyCPUDuplicates",
                    format!("vCPU {cpu} appears in more than one hw:numa_cpus.N"),
                ));
            }
        }
        cells.push(GuestCell { pcpuset: cpus.intersection(dedicated), cpuset: cpus.difference(dedicated), memory: mem, pagesize: None });
    }
    if !avail.is_empty() {
        return Err(RequestError::new("ImageNUMATopologyCPUsUnassigned", format!("vCPUs {avail} are in no hw:numa_cpus.N")));
    }
    let total = mem_list.iter().try_fold(0u64, |sum, &m| sum.checked_add(m));
    if total != Some(f.memory_mb) {
        let sum = total.map_or_else(|| "more than 2^64".to_string(), |t| t.to_string());
        return Err(RequestError::new(
            "ImageNUMATopologyMemoryOutOfRange",
            format!("hw:numa_mem.N sum to {sum} MiB but the flavor has {} MiB", f.memory_mb),
        ));
    }
    Ok(cells)
}

/// Nova's `get_pci_numa_policy_constraint`: flavor and image may not disagree.
fn pci_numa_policy(f: &Flavor) -> Result<Option<PciNumaPolicy>, RequestError> {
    let (fv, iv) = f.both("pci_numa_affinity_policy");
    if let (Some(a), Some(b)) = (fv, iv) {
        if a != b {
            return Err(RequestError::new(
                "ImagePCINUMAPolicyForbidden",
                format!("image property hw_pci_numa_affinity_policy={b} conflicts with flavor extra spec hw:pci_numa_affinity_policy={a}"),
            ));
        }
    }
    fv.or(iv).map(|v| parse_named(v, "hw:pci_numa_affinity_policy", "InvalidPCINUMAAffinity")).transpose()
}

/// The CPU, thread and emulator-thread policies a flavor (and image) ask for.
#[derive(Clone, Copy, Debug, Default)]
struct Policies {
    cpu: Option<CpuPolicy>,
    thread: Option<ThreadPolicy>,
    emulator: Option<EmulatorThreads>,
}

/// Step: sizes Nova's flavor API refuses, and `hw:` keys its validators do not know.
fn check_flavor(f: &Flavor) -> Result<(), RequestError> {
    if f.vcpus == 0 {
        return Err(RequestError::new("InvalidRequest", "flavor vcpus must be at least 1".into()));
    }
    if f.memory_mb == 0 {
        return Err(RequestError::new("InvalidRequest", "flavor memory_mb must be at least 1".into()));
    }
    crate::extra_specs::check(&f.extra_specs, &f.image_props)
}

/// Step: the policies the `hw:` keys and image properties name.
fn named_policies(f: &Flavor) -> Result<Policies, RequestError> {
    let cpu = cpu_policy(f)?;
    let thread = thread_policy(f)?;
    Ok(Policies { cpu, thread, emulator: emulator_threads(f)? })
}

/// Step: `resources:VCPU` / `resources:PCPU` and `trait:HW_CPU_HYPERTHREADING`, which stand in
/// for the CPU and thread policies (and may not be combined with them).
fn resources_and_traits(f: &Flavor, p: &mut Policies) -> Result<(), RequestError> {
    let (mut cpu_policy, mut thread_policy, emulator) = (p.cpu, p.thread, p.emulator);
    let (req_v, req_p) = vcpu_pcpu_resources(f);
    if cpu_policy.is_some() && (req_v > 0 || req_p > 0) {
        return Err(RequestError::new(
            "InvalidRequest",
            "resources:VCPU or resources:PCPU cannot be combined with hw:cpu_policy / hw_cpu_policy; use one or the other".into(),
        ));
    }
    if req_v > 0 && req_p > 0 {
        return Err(RequestError::new(
            "InvalidRequest",
            "resources:VCPU and resources:PCPU cannot both be set; use one or the other".into(),
        ));
    }
    if req_p > 0 {
        let want = f.vcpus + u32::from(emulator == Some(EmulatorThreads::Isolate));
        if req_p != want {
            return Err(RequestError::new(
                "InvalidRequest",
                format!(
                    "resources:PCPU={req_p} must equal the flavor's vCPUs{} = {want}",
                    if want > f.vcpus { " + 1 (emulator threads isolate)" } else { "" }
                ),
            ));
        }
        cpu_policy = Some(CpuPolicy::Dedicated);
    }
    if req_v > 0 {
        cpu_policy = Some(CpuPolicy::Shared);
    }

    if let Some(ht) = hyperthreading_trait(f) {
        if thread_policy.is_some() {
            return Err(RequestError::new(
                "InvalidRequest",
                "trait:HW_CPU_HYPERTHREADING cannot be combined with hw:cpu_thread_policy / hw_cpu_thread_policy; use one or the other"
                    .into(),
            ));
        }
        thread_policy = match ht.as_str() {
            "forbidden" => Some(ThreadPolicy::Isolate),
            "required" => Some(ThreadPolicy::Require),
            _ => None,
        };
    }

    p.cpu = cpu_policy;
    p.thread = thread_policy;
    Ok(())
}

/// Step: which vCPUs are dedicated under the policies (the masks of `mixed`), refusing the
/// combinations Nova refuses.
fn dedicated_vcpus(f: &Flavor, p: &Policies, realtime: Option<CpuSet>, mut dedicated: Option<CpuSet>) -> Result<CpuSet, RequestError> {
    let (cpu_policy, thread_policy, emulator) = (p.cpu, p.thread, p.emulator);
    match cpu_policy {
        None | Some(CpuPolicy::Shared) => {
            if let Some(p) = thread_policy {
                return Err(RequestError::new(
                    "CPUThreadPolicyConfigurationInvalid",
                    format!("cpu_thread_policy {p:?} needs hw:cpu_policy dedicated or mixed").to_lowercase(),
                ));
            }
            if emulator == Some(EmulatorThreads::Isolate) {
                return Err(RequestError::new(
                    "BadRequirementEmulatorThreadsPolicy",
                    "hw:emulator_threads_policy=isolate needs hw:cpu_policy dedicated or mixed".into(),
                ));
            }
            if dedicated.is_some() {
                return Err(RequestError::new("RequiredMixedInstancePolicy", "hw:cpu_dedicated_mask needs hw:cpu_policy=mixed".into()));
            }
            if realtime.is_some() {
                return Err(RequestError::new(
                    "RealtimeConfigurationInvalid",
                    "hw:cpu_realtime needs hw:cpu_policy dedicated or mixed".into(),
                ));
            }
        }
        Some(CpuPolicy::Dedicated) => {
            if dedicated.is_some() {
                return Err(RequestError::new(
                    "RequiredMixedInstancePolicy",
                    "hw:cpu_dedicated_mask needs hw:cpu_policy=mixed, not dedicated".into(),
                ));
            }
        }
        Some(CpuPolicy::Mixed) => {
            if realtime.is_some() && dedicated.is_some() {
                return Err(RequestError::new(
                    "InvalidRequest",
                    "hw:cpu_realtime_mask and hw:cpu_dedicated_mask cannot both be set; use one or the other".into(),
                ));
            }
            if realtime.is_some() {
                dedicated = realtime.clone();
            }
            if dedicated.is_none() {
                return Err(RequestError::new(
                    "RequiredMixedOrRealtimeCPUMask",
                    "hw:cpu_policy=mixed needs hw:cpu_dedicated_mask or hw:cpu_realtime with hw:cpu_realtime_mask".into(),
                ));
            }
        }
    }

    Ok(match cpu_policy {
        Some(CpuPolicy::Dedicated) => f.all_vcpus(),
        _ => dedicated.unwrap_or_default(),
    })
}

/// Step: the guest cells, split evenly or by `hw:numa_cpus.N` / `hw:numa_mem.N`, with the page
/// size.
fn guest_cells(f: &Flavor, nodes: Option<u32>, dedicated: &CpuSet, pagesize: Option<PageSizeWish>) -> Result<Vec<GuestCell>, RequestError> {
    let nodes = nodes.unwrap_or(1);
    let mut cells = match node_lists(f)? {
        (None, None) => cells_auto(f, nodes, dedicated)?,
        (Some(c), Some(m)) if c.len() == nodes as usize && m.len() == nodes as usize => cells_manual(f, &c, &m, dedicated)?,
        (c, m) => {
            return Err(RequestError::new(
                "ImageNUMATopologyIncomplete",
                format!(
                    "hw:numa_nodes={nodes} needs exactly {nodes} hw:numa_cpus.N and {nodes} hw:numa_mem.N; found {} and {}",
                    c.map_or(0, |c| c.len()),
                    m.map_or(0, |m| m.len())
                ),
            ))
        }
    };
    for cell in &mut cells {
        cell.pagesize = pagesize;
    }
    Ok(cells)
}

/// Nova's `numa_get_constraints`: the guest topology a flavor and image imply. A topology exists
/// only with `hw:numa_nodes`, a page size, vPMEM, or CPU pinning; otherwise `cells` is empty.
/// Checked in Nova's order, so the first error is Nova's.
pub fn from_flavor(f: &Flavor) -> Result<GuestTopology, RequestError> {
    check_flavor(f)?;
    let mut policies = named_policies(f)?;
    let realtime = realtime_cpus(f, policies.emulator)?;
    let dedicated = dedicated_mask(f)?;
    resources_and_traits(f, &mut policies)?;
    let dedicated = dedicated_vcpus(f, &policies, realtime, dedicated)?;
    let nodes = numa_nodes(f)?;
    let pagesize = page_size(f)?;
    let pci_policy = pci_numa_policy(f)?;
    let pci_requests: Vec<PciRequest> =
        f.pci_requests.iter().map(|r| PciRequest { numa_policy: r.numa_policy.or(pci_policy), ..r.clone() }).collect();
    let Policies { cpu: cpu_policy, thread: thread_policy, emulator } = policies;
    let has_pmem = f.spec("hw:pmem").is_some_and(|v| !v.is_empty());
    let pins = matches!(cpu_policy, Some(CpuPolicy::Dedicated | CpuPolicy::Mixed));
    if nodes.is_none() && pagesize.is_none() && !has_pmem && !pins {
        return Ok(GuestTopology { cpu_policy, thread_policy, emulator_threads: emulator, pci_requests, ..Default::default() });
    }
    let cells = guest_cells(f, nodes, &dedicated, pagesize)?;
    Ok(GuestTopology { cells, cpu_policy, thread_policy, emulator_threads: emulator, pci_requests })
}
