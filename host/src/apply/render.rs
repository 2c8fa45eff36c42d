//! A binding in the words of the runtimes that enforce it: libvirt domain XML (element for
//! element what Nova's libvirt driver writes for the same instance topology:
//! `_get_guest_numa_config`, `_get_guest_memory_backing_config`, `_get_cpu_numa_config_from_instance`),
//! an OCI runtime-spec fragment, docker/podman flags, numactl and taskset command lines. CPU and
//! node lists are in the kernel's range syntax (Nova's `format_cpu_spec` writes the same).

use std::fmt::Write as _;

use numafit_plugin::HostTopology;

use super::{list, ApplyError, Binding, MemPolicy};

/// The formats `render` writes; `name` is how the CLI and the HTTP API spell each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The domain XML elements Nova writes for the placement.
    Libvirt,
    /// Those elements inside a complete minimal `<domain>` (for `virt-xml-validate`).
    LibvirtDomain,
    Oci,
    Docker,
    Numactl,
    Taskset,
}

impl Format {
    pub const ALL: [Format; 6] = [Format::Libvirt, Format::LibvirtDomain, Format::Oci, Format::Docker, Format::Numactl, Format::Taskset];

    pub fn name(self) -> &'static str {
        match self {
            Format::Libvirt => "libvirt",
            Format::LibvirtDomain => "libvirt-domain",
            Format::Oci => "oci",
            Format::Docker => "docker",
            Format::Numactl => "numactl",
            Format::Taskset => "taskset",
        }
    }

    /// The format a name spells; the error lists the names.
    pub fn parse(name: &str) -> Result<Format, String> {
        Format::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
            format!("{name:?} is not a format (one of {})", names.join(", "))
        })
    }

    /// The media type an HTTP answer carries it as.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Libvirt | Format::LibvirtDomain => "application/xml",
            Format::Oci => "application/json",
            Format::Docker | Format::Numactl | Format::Taskset => "text/plain; charset=utf-8",
        }
    }
}

/// What a render needs besides the binding: the instance's name (the domain's) and the memory
/// policy the placement is applied with.
pub struct RenderContext<'a> {
    pub instance: &'a str,
    pub mem_policy: MemPolicy,
}

/// The binding in `format`, ending with a newline.
pub fn render(format: Format, b: &Binding, host: &HostTopology, cx: &RenderContext) -> Result<String, ApplyError> {
    match format {
        Format::Libvirt => libvirt_parts(b, host, cx, ""),
        Format::LibvirtDomain => libvirt_domain(b, host, cx),
        Format::Oci => Ok(oci(b)),
        Format::Docker => Ok(docker(b)),
        Format::Numactl => Ok(numactl(b, cx.mem_policy)),
        Format::Taskset => Ok(format!("taskset -c {}\n", list(&b.cpus))),
    }
}

/// The page sizes libvirt can back guest memory with: Nova takes host cell 0's sizes and drops
/// the smallest (libvirt cannot use the base page size as a backend).
fn smallest_page_kb(host: &HostTopology) -> u32 {
    host.cells.first().and_then(|c| c.mempages.iter().map(|p| p.size_kb).min()).unwrap_or(4)
}

fn wants_hugepages(b: &Binding, host: &HostTopology) -> bool {
    let Some(cell0) = host.cells.first() else { return false };
    let smallest = smallest_page_kb(host);
    let large: Vec<u32> = cell0.mempages.iter().map(|p| p.size_kb).filter(|&s| s != smallest).collect();
    b.cells.iter().any(|c| c.pagesize_kb.is_some_and(|p| large.contains(&p)))
}

fn libvirt_parts(b: &Binding, host: &HostTopology, cx: &RenderContext, indent: &str) -> Result<String, ApplyError> {
    if !b.numa {
        return Err(ApplyError::new(
            "format libvirt",
            "the placement has no NUMA constraint: Nova writes no NUMA elements for it (the guest floats on the host's shared CPUs)",
        ));
    }
    let mode = cx.mem_policy.name();
    let mut x = String::new();
    let i = indent;
    let _ = writeln!(x, "{i}<vcpu>{}</vcpu>", b.vcpu_count());
    let _ = writeln!(x, "{i}<iothreads>1</iothreads>");
    let _ = writeln!(x, "{i}<cputune>");
    let emulator = list(&b.emulator_cpus);
    let _ = writeln!(x, "{i}  <emulatorpin cpuset=\"{emulator}\"/>");
    // Nova pins its one I/O thread where the emulator threads go, and leaves the element out
    // when that set is empty (libvirt refuses an empty cpuset).
    if !emulator.is_empty() {
        let _ = writeln!(x, "{i}  <iothreadpin cpuset=\"{emulator}\" iothread=\"1\"/>");
    }
    for v in &b.vcpus {
        let _ = writeln!(x, "{i}  <vcpupin vcpu=\"{}\" cpuset=\"{}\"/>", v.vcpu, list(&v.cpus));
    }
    let _ = writeln!(x, "{i}</cputune>");
    let _ = writeln!(x, "{i}<numatune>");
    let _ = writeln!(x, "{i}  <memory mode=\"{mode}\" nodeset=\"{}\"/>", list(&b.mems));
    for (guest, c) in b.cells.iter().enumerate() {
        let _ = writeln!(x, "{i}  <memnode cellid=\"{guest}\" mode=\"{mode}\" nodeset=\"{}\"/>", c.host_node);
    }
    let _ = writeln!(x, "{i}</numatune>");
    let shared = if wants_hugepages(b, host) { " memAccess=\"shared\"" } else { "" };
    let _ = writeln!(x, "{i}<cpu>");
    let _ = writeln!(x, "{i}  <numa>");
    for (guest, c) in b.cells.iter().enumerate() {
        let kib = c
            .memory_mb
            .checked_mul(1024)
            .ok_or_else(|| ApplyError::new("the placement", format!("guest cell {guest}: {} MiB is too large", c.memory_mb)))?;
        let _ = writeln!(x, "{i}    <cell id=\"{guest}\" cpus=\"{}\" memory=\"{kib}\"{shared}/>", list(&c.vcpus));
    }
    let _ = writeln!(x, "{i}  </numa>");
    let _ = writeln!(x, "{i}</cpu>");
    let smallest = smallest_page_kb(host);
    let pages: Vec<(usize, u32)> =
        b.cells.iter().enumerate().filter_map(|(g, c)| c.pagesize_kb.filter(|&p| p > smallest).map(|p| (g, p))).collect();
    if !pages.is_empty() {
        let _ = writeln!(x, "{i}<memoryBacking>");
        let _ = writeln!(x, "{i}  <hugepages>");
        for (guest, size) in pages {
            let _ = writeln!(x, "{i}    <page size=\"{size}\" nodeset=\"{guest}\" unit=\"KiB\"/>");
        }
        let _ = writeln!(x, "{i}  </hugepages>");
        let _ = writeln!(x, "{i}</memoryBacking>");
    }
    Ok(x)
}

/// A complete minimal domain around the parts: what `virt-xml-validate FILE domain` checks.
fn libvirt_domain(b: &Binding, host: &HostTopology, cx: &RenderContext) -> Result<String, ApplyError> {
    let parts = libvirt_parts(b, host, cx, "  ")?;
    let memory_kib: u64 = b.cells.iter().map(|c| c.memory_mb.saturating_mul(1024)).sum();
    let name: String = cx.instance.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let mut x = String::new();
    let _ = writeln!(x, "<domain type=\"kvm\">");
    let _ = writeln!(x, "  <name>{name}</name>");
    let _ = writeln!(x, "  <memory unit=\"KiB\">{memory_kib}</memory>");
    x.push_str(&parts);
    let _ = writeln!(x, "  <os>");
    let _ = writeln!(x, "    <type>hvm</type>");
    let _ = writeln!(x, "  </os>");
    let _ = writeln!(x, "</domain>");
    Ok(x)
}

/// `linux.resources.cpu` of the OCI runtime spec: `cpus` and (with a NUMA constraint) `mems`.
fn oci(b: &Binding) -> String {
    let mut cpu = serde_json::Map::new();
    cpu.insert("cpus".into(), list(&b.cpus).into());
    if b.numa {
        cpu.insert("mems".into(), list(&b.mems).into());
    }
    let doc = serde_json::json!({"linux": {"resources": {"cpu": cpu}}});
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// `docker run` / `podman run` flags.
fn docker(b: &Binding) -> String {
    if b.numa {
        format!("--cpuset-cpus={} --cpuset-mems={}\n", list(&b.cpus), list(&b.mems))
    } else {
        format!("--cpuset-cpus={}\n", list(&b.cpus))
    }
}

fn numactl(b: &Binding, policy: MemPolicy) -> String {
    let cpus = list(&b.cpus);
    if !b.numa {
        return format!("numactl --physcpubind={cpus}\n");
    }
    let mems = list(&b.mems);
    let memory = match policy {
        MemPolicy::Strict => format!("--membind={mems}"),
        MemPolicy::Preferred if b.mems.len() == 1 => format!("--preferred={mems}"),
        MemPolicy::Preferred => format!("--preferred-many={mems}"),
        MemPolicy::Interleave => format!("--interleave={mems}"),
    };
    format!("numactl --physcpubind={cpus} {memory}\n")
}
