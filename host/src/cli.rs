//! The `numafit` command line: parse arguments, read the JSON files, call the policy, verify its
//! answer, print for a person or (`--json`) for a program. Exit status: 0 fits / done, 1 does not
//! fit / accounting conflict, 2 invalid input, 3 the plugin failed (trap, fuel, memory, bad answer).

use std::cell::RefCell;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

thread_local! {
    /// What the command prints, written out once at the end: a failure part-way prints nothing
    /// half-done, and a write error is reported instead of panicking.
    static OUT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// `println!` into the command's output buffer.
macro_rules! outln {
    ($($arg:tt)*) => {
        OUT.with(|o| {
            use std::fmt::Write as _;
            let mut o = o.borrow_mut();
            let _ = write!(o, $($arg)*);
            o.push('\n');
        })
    };
}

pub(crate) use outln;

mod fleet;
mod placed;
mod simulate;

use clap::{Args, Parser, Subcommand, ValueEnum};

use numafit_plugin::{HostTopology, Placement};

use crate::contract;
use crate::discover::{self, HostConfig};
use crate::failure::{Failure, FlagError, OutputError};
use crate::formats::{self, HostJson, InputError, LimitsJson, PlacementJson, RejectionJson, RequestJson};
use crate::ledger::{self, Claim, Ledger, PolicyVersion};
use crate::placing::{self, ClaimOutcome, ClaimRequest};
use crate::runtime::{cell_ids, placement_rows, wit, CacheUse, Plugin, PluginLimits};
use crate::verify;

#[derive(Parser, Debug)]
#[command(name = "numafit", version, about = "NUMA placement for VMs and containers: which host cells, CPUs and pages an instance gets")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct PluginArgs {
    /// A policy component to use instead of an embedded policy.
    #[arg(long, value_name = "FILE.wasm", global = true, conflicts_with = "policy")]
    plugin: Option<PathBuf>,
    /// Which embedded policy decides: nova (Nova's answer) or balanced (compact, core-preserving).
    #[arg(long, value_enum, default_value = "nova", global = true)]
    policy: PolicyArg,
    /// Fuel (about one unit per wasm instruction) one plugin call may burn.
    #[arg(long, default_value_t = PluginLimits::default().fuel, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    fuel: u64,
    /// Memory cap for the plugin, MiB.
    #[arg(long, default_value_t = (PluginLimits::default().memory_bytes >> 20) as u64, global = true,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    memory_limit_mb: u64,
    /// Wall-clock time one plugin call may take, milliseconds.
    #[arg(long, default_value_t = PluginLimits::default().deadline.as_millis() as u64, global = true,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    deadline_ms: u64,
    /// Print JSON for programs instead of text for people.
    #[arg(long, global = true)]
    json: bool,
}

/// Where the host comes from when no `--host` file is given: this machine, a recorded sysfs tree,
/// or captured `numactl --hardware` output, with the CPU sets and reservations to apply.
#[derive(Args, Debug, Clone)]
struct DiscoverArgs {
    /// Read sysfs and procfs under DIR instead of `/` (a recorded machine).
    #[arg(long, value_name = "DIR", conflicts_with = "numactl_output")]
    sysfs_root: Option<PathBuf>,
    /// Read the topology from captured `numactl --hardware` output.
    #[arg(long, value_name = "FILE")]
    numactl_output: Option<PathBuf>,
    /// CPUs for floating vCPUs (Nova's cpu_shared_set), kernel list syntax: 0-3,8-11,^2.
    #[arg(long, value_name = "LIST")]
    shared_cpus: Option<String>,
    /// CPUs that may be pinned (Nova's cpu_dedicated_set).
    #[arg(long, value_name = "LIST")]
    dedicated_cpus: Option<String>,
    /// Memory held back for the host on a node, like the kubelet's --reserved-memory. Repeatable.
    #[arg(long, value_name = "NODE:MiB")]
    reserved_memory: Vec<String>,
    /// Huge pages held back for the host: NODE:SIZE_KB:COUNT. Repeatable.
    #[arg(long, value_name = "NODE:SIZE_KB:COUNT")]
    reserved_hugepages: Vec<String>,
}

impl DiscoverArgs {
    fn config(&self) -> Result<HostConfig, Failure> {
        let bad = |flag: &str, v: &str, why: String| Failure::from(FlagError(format!("{flag} {v:?}: {why}")));
        let list = |flag: &str, v: &Option<String>| -> Result<Option<Vec<u32>>, Failure> {
            v.as_ref().map(|t| discover::parse_list(t).map_err(|m| bad(flag, t, m))).transpose()
        };
        let mut reserved_memory_mb = std::collections::BTreeMap::new();
        for v in &self.reserved_memory {
            let (node, mb) = v.split_once(':').ok_or_else(|| bad("--reserved-memory", v, "expected NODE:MiB".into()))?;
            let node = node.parse::<u32>().map_err(|_| bad("--reserved-memory", v, format!("node {node:?} is not a number")))?;
            let mb = mb.parse::<u64>().map_err(|_| bad("--reserved-memory", v, format!("{mb:?} is not a number of MiB")))?;
            reserved_memory_mb.insert(node, mb);
        }
        let mut reserved_hugepages = std::collections::BTreeMap::new();
        for v in &self.reserved_hugepages {
            let parts: Vec<&str> = v.split(':').collect();
            let nums: Vec<Option<u64>> = parts.iter().map(|p| p.trim_end_matches("kB").parse::<u64>().ok()).collect();
            match nums.as_slice() {
                [Some(node), Some(size), Some(count)] if *node <= u64::from(u32::MAX) && *size <= u64::from(u32::MAX) => {
                    if !size.is_power_of_two() {
                        return Err(bad("--reserved-hugepages", v, format!("{size} KiB is not a page size (a power of two KiB)")));
                    }
                    reserved_hugepages.insert((*node as u32, *size as u32), *count);
                }
                _ => return Err(bad("--reserved-hugepages", v, "expected NODE:SIZE_KB:COUNT, all numbers".into())),
            }
        }
        Ok(HostConfig {
            shared_cpus: list("--shared-cpus", &self.shared_cpus)?,
            dedicated_cpus: list("--dedicated-cpus", &self.dedicated_cpus)?,
            reserved_memory_mb,
            reserved_hugepages,
        })
    }

    fn read(&self) -> Result<discover::Topology, Failure> {
        match (&self.numactl_output, &self.sysfs_root) {
            (Some(file), _) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| FlagError(format!("--numactl-output {}: cannot read: {e}", file.display())))?;
                Ok(discover::parse_numactl(&text, file)?)
            }
            (None, root) => Ok(discover::read_sysfs(root.as_deref().unwrap_or(Path::new("/")))?),
        }
    }

    /// The discovered host of record.
    fn host(&self) -> Result<HostTopology, Failure> {
        let cfg = self.config()?;
        Ok(self.read()?.host(&cfg).map_err(FlagError)?)
    }
}

/// Where the ledger lives.
#[derive(Args, Debug, Clone)]
struct StateArgs {
    /// The ledger's directory (default: $XDG_STATE_HOME/numafit; as root /var/lib/numafit).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl StateArgs {
    fn dir(&self) -> Result<PathBuf, Failure> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(ledger::default_dir()
                .ok_or_else(|| FlagError("--state-dir: no default (neither XDG_STATE_HOME nor HOME is set); give one".into()))?),
        }
    }

    fn open(&self) -> Result<Ledger, Failure> {
        Ok(Ledger::open(&self.dir()?)?)
    }
}

/// The options of `DiscoverArgs`: a HOST.json already says what they would (its cpuset,
/// pcpuset, reserved pages and memory), so giving them with `--host` is refused, not ignored.
const DISCOVERY_FLAGS: [&str; 6] =
    ["sysfs_root", "numactl_output", "shared_cpus", "dedicated_cpus", "reserved_memory", "reserved_hugepages"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    Nova,
    Balanced,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StrategyArg {
    /// Try the most free host cells first (Nova's default).
    Spread,
    /// Try the least free host cells first.
    Pack,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Place an instance on a host: prints the placement, or why every host cell refused.
    Fit {
        /// The host; without it, this machine (or --sysfs-root / --numactl-output) is read.
        /// The discovery options describe a discovered host, so they cannot go with --host.
        #[arg(long, value_name = "HOST.json", conflicts_with_all = DISCOVERY_FLAGS)]
        host: Option<PathBuf>,
        #[command(flatten)]
        discover: DiscoverArgs,
        #[arg(long, value_name = "REQUEST.json")]
        request: PathBuf,
        #[arg(long, value_name = "LIMITS.json")]
        limits: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "spread")]
        strategy: StrategyArg,
        #[command(flatten)]
        plugin: PluginArgs,
    },
    /// Fit one request on every host of a fleet inventory in one policy call: per host, the
    /// placement (or why not) `fit` gives for it alone, and its score by the weighers.
    Filter {
        /// `[{"name": "node-1", "host": HOST}, ...]`.
        #[arg(long, value_name = "INVENTORY.json")]
        hosts: PathBuf,
        #[arg(long, value_name = "REQUEST.json")]
        request: PathBuf,
        #[arg(long, value_name = "LIMITS.json")]
        limits: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "spread")]
        strategy: StrategyArg,
        /// A weigher and its weight, NAME[=WEIGHT] (default 1), repeatable: pack, spread,
        /// numa-distance, fewest-cells, cell-pack. None given: spread.
        #[arg(long, value_name = "NAME[=WEIGHT]")]
        weigher: Vec<String>,
        #[command(flatten)]
        plugin: PluginArgs,
    },
    /// Replay a trace of arrivals and departures over a fleet through the component, per policy:
    /// placed and rejected counts, the first rejection, stranded capacity, NUMA spans.
    Simulate {
        /// The fleet: an inventory, `[{"name": "host-1", "host": HOST}, ...]`.
        #[arg(long, value_name = "FLEET.json")]
        fleet: PathBuf,
        /// `[{"t": SECONDS, "instance": ID, "request": REQUEST} | {"t": ..., "instance": ID, "depart": true}, ...]`.
        #[arg(long, value_name = "TRACE.json")]
        trace: PathBuf,
        /// A policy to replay with, and its weighers: nova, balanced, or e.g. balanced=pack,fewest-cells=0.5
        /// (none: spread). Repeatable: each is replayed on the same fleet and trace. Default: nova.
        #[arg(long = "policy", value_name = "POLICY[=WEIGHERS]")]
        policies: Vec<String>,
        /// Draw utilisation over time per policy to this SVG.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// Per-call fuel for the policy.
        #[arg(long, default_value_t = 5_000_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        fuel: u64,
        #[arg(long)]
        json: bool,
    },
    /// Generate a fleet or a trace for `numafit simulate` (deterministic per seed).
    Generate {
        #[command(subcommand)]
        what: GenerateWhat,
    },
    /// Take a placement's resources from a host; prints the host after the claim. With
    /// --instance: fit REQUEST.json on this machine's live state and record it in the ledger.
    Claim {
        /// The host; without it, this machine (or --sysfs-root / --numactl-output) is read.
        /// The discovery options describe a discovered host, so they cannot go with --host.
        #[arg(long, value_name = "HOST.json", conflicts_with_all = DISCOVERY_FLAGS)]
        host: Option<PathBuf>,
        #[command(flatten)]
        discover: DiscoverArgs,
        #[arg(long, value_name = "PLACEMENT.json", required_unless_present = "instance")]
        placement: Option<PathBuf>,
        /// The instance to record the claim under, in the ledger (idempotent per id).
        #[arg(long, value_name = "ID", requires = "request", conflicts_with_all = ["host", "placement"])]
        instance: Option<String>,
        /// With --instance: the request to fit on this machine's live state.
        #[arg(long, value_name = "REQUEST.json", requires = "instance")]
        request: Option<PathBuf>,
        /// The allocation ratios the fit ran under: memory and floating vCPUs may go past a cell
        /// only up to them (without: each instance within its cell, as Nova's fit allows).
        #[arg(long, value_name = "LIMITS.json")]
        limits: Option<PathBuf>,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        plugin: PluginArgs,
    },
    /// Give a placement's resources back to a host; prints the host after the release. With
    /// --instance: remove the instance's claim from the ledger.
    Release {
        /// The host; without it, this machine (or --sysfs-root / --numactl-output) is read.
        /// The discovery options describe a discovered host, so they cannot go with --host.
        #[arg(long, value_name = "HOST.json", conflicts_with_all = DISCOVERY_FLAGS)]
        host: Option<PathBuf>,
        #[command(flatten)]
        discover: DiscoverArgs,
        #[arg(long, value_name = "PLACEMENT.json", required_unless_present = "instance")]
        placement: Option<PathBuf>,
        /// The instance whose claim the ledger gives back.
        #[arg(long, value_name = "ID", conflicts_with_all = ["host", "placement"])]
        instance: Option<String>,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        plugin: PluginArgs,
    },
    /// List the ledger's claims: each instance with the placement `fit --json` printed for it.
    Claims {
        #[command(flatten)]
        state: StateArgs,
        /// Print JSON for programs instead of text for people.
        #[arg(long)]
        json: bool,
    },
    /// The ledger against this machine's topology: claims that no longer fit, and the usage.
    Status {
        #[command(flatten)]
        discover: DiscoverArgs,
        #[command(flatten)]
        state: StateArgs,
        /// Print JSON for programs instead of text for people.
        #[arg(long)]
        json: bool,
    },
    /// Print the guest NUMA topology a request (flavor and image) implies, or Nova's error for it.
    Request {
        #[arg(long, value_name = "REQUEST.json")]
        request: PathBuf,
        #[command(flatten)]
        plugin: PluginArgs,
    },
    /// Read this machine's NUMA topology (or a recorded one) and print it as HOST.json (--json) or for a person.
    Topology {
        #[command(flatten)]
        discover: DiscoverArgs,
        /// Print HOST.json.
        #[arg(long)]
        json: bool,
        /// Also draw the topology into this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        svg: Option<PathBuf>,
    },
    /// Print the policy's name and versions.
    Info {
        #[command(flatten)]
        plugin: PluginArgs,
    },
    /// Serve the node API: fits, claims and policy swaps over a Unix socket (and TCP with --listen).
    Serve {
        /// A recorded host of record (HOST.json) instead of this machine's topology.
        #[arg(long, value_name = "HOST.json", conflicts_with_all = DISCOVERY_FLAGS)]
        host: Option<PathBuf>,
        #[command(flatten)]
        discover: DiscoverArgs,
        #[command(flatten)]
        state: StateArgs,
        /// The Unix socket to listen on (default: serve.sock in the state directory; mode 0600).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Also listen on TCP; needs --token-file.
        #[arg(long, value_name = "ADDR:PORT", requires = "token_file")]
        listen: Option<std::net::SocketAddr>,
        /// The bearer token TCP clients must send for every request that changes anything.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Swap in the --plugin file whenever it is replaced.
        #[arg(long, requires = "plugin")]
        watch: bool,
        /// Limits fits run under and claims are admitted under (LIMITS.json).
        #[arg(long, value_name = "LIMITS.json")]
        limits: Option<PathBuf>,
        /// Largest JSON request body, KiB (larger: 413).
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        max_body_kib: u64,
        /// Largest policy component PUT /v1/policy takes, MiB.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        max_policy_mib: u64,
        /// The cgroup v2 hierarchy claims with `"apply": {"cgroup": PATH}` write under.
        #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
        cgroup_root: PathBuf,
        /// This node's name in GET /v1/noderesourcetopology (default: the machine's hostname).
        #[arg(long, value_name = "NAME")]
        node_name: Option<String>,
        /// The kubelet's topology manager policy, published with the node's zones.
        #[arg(long, default_value = "single-numa-node", value_parser = ["none", "best-effort", "restricted", "single-numa-node"])]
        topology_manager_policy: String,
        /// The kubelet's topology manager scope, published with the node's zones.
        #[arg(long, default_value = "container", value_parser = ["container", "pod"])]
        topology_manager_scope: String,
        /// Also serve the Kubernetes scheduler-extender verbs (/scheduler/filter, /prioritize,
        /// /bind) for the cluster's node services this file names (CLUSTER.json).
        #[arg(long, value_name = "CLUSTER.json")]
        cluster: Option<PathBuf>,
        /// Also serve the extender verbs alone on this loopback address, without a token:
        /// kube-scheduler's HTTP extender sends no credentials.
        #[arg(long, value_name = "127.0.0.1:PORT", requires = "cluster")]
        extender_listen: Option<std::net::SocketAddr>,
        #[command(flatten)]
        plugin: PluginArgs,
    },
    /// Claim on this machine and run a program inside the placement: CPU affinity and memory
    /// policy set before it starts, the placement in its environment (NUMAFIT_CPUS, NUMAFIT_MEMS,
    /// NUMAFIT_CELL<i>_CPUS/_MEMS), signals passed on, the claim released when it exits, and its
    /// exit status returned.
    Run {
        /// The instance to claim as (default: run-PID-STARTTIME).
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
        #[arg(long, value_name = "REQUEST.json")]
        request: PathBuf,
        /// How memory is bound to the placement's nodes (default: the flavor's hw:numa_mempolicy, else strict).
        #[arg(long, value_name = "strict|preferred|interleave", value_parser = crate::apply::MemPolicy::parse)]
        mem_policy: Option<crate::apply::MemPolicy>,
        #[arg(long, value_name = "LIMITS.json")]
        limits: Option<PathBuf>,
        #[command(flatten)]
        discover: DiscoverArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        plugin: PluginArgs,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Release the claims of `numafit run` processes that are gone (numafit was killed).
    Gc {
        #[command(flatten)]
        state: StateArgs,
        /// Print JSON for programs instead of text for people.
        #[arg(long)]
        json: bool,
    },
    /// Write an instance's CPUs and nodes into a cgroup v2 group's cpuset.cpus and cpuset.mems.
    Apply {
        #[arg(long, value_name = "ID")]
        instance: String,
        /// The group, relative to the cgroup root (e.g. machine.slice/vm-1).
        #[arg(long, value_name = "PATH")]
        cgroup: String,
        /// The cgroup v2 hierarchy (a scratch tree laid out like cgroupfs works too).
        #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
        cgroup_root: PathBuf,
        /// Make the group (and missing parents) and enable the cpuset controller in each parent.
        #[arg(long)]
        create: bool,
        #[command(flatten)]
        discover: DiscoverArgs,
        #[command(flatten)]
        state: StateArgs,
        /// Print JSON for programs instead of text for people.
        #[arg(long)]
        json: bool,
    },
    /// Print a placement as another runtime takes it: libvirt XML (what Nova's driver writes),
    /// an OCI fragment, docker/podman flags, a numactl or taskset command line.
    Render {
        /// A claim in the ledger.
        #[arg(long, value_name = "ID", required_unless_present = "placement", conflicts_with = "placement")]
        instance: Option<String>,
        /// A placement file (`fit --json`), with --host, instead of a claim.
        #[arg(long, value_name = "PLACEMENT.json", requires = "host")]
        placement: Option<PathBuf>,
        #[arg(long, value_name = "HOST.json", requires = "placement", conflicts_with_all = DISCOVERY_FLAGS)]
        host: Option<PathBuf>,
        /// libvirt, libvirt-domain, oci, docker, numactl or taskset.
        #[arg(long, value_parser = crate::apply::render::Format::parse)]
        format: crate::apply::render::Format,
        /// The memory policy (numactl, libvirt): default the request's hw:numa_mempolicy, else strict.
        #[arg(long, value_name = "strict|preferred|interleave", value_parser = crate::apply::MemPolicy::parse)]
        mem_policy: Option<crate::apply::MemPolicy>,
        #[command(flatten)]
        discover: DiscoverArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Record a placement made outside numafit (an existing container's cpuset and memory), so
    /// the ledger accounts for it.
    Adopt {
        #[arg(long, value_name = "ID")]
        instance: String,
        /// Its CPUs, kernel list syntax (a container's cpuset_cpus: "1,2,3").
        #[arg(long, value_name = "LIST")]
        cpus: String,
        /// Its memory nodes (cpuset_mems: "0").
        #[arg(long, value_name = "LIST")]
        mems: String,
        /// Its memory: 512M, 2G, 1Gi, or bytes.
        #[arg(long, value_name = "SIZE")]
        memory: String,
        /// Its CPUs float, shared with other instances.
        #[arg(long, conflicts_with = "dedicated")]
        shared: bool,
        /// Its CPUs are its own (the default).
        #[arg(long)]
        dedicated: bool,
        #[command(flatten)]
        discover: DiscoverArgs,
        #[command(flatten)]
        state: StateArgs,
        /// Print JSON for programs instead of text for people.
        #[arg(long)]
        json: bool,
    },
    /// Write an embedded policy component to a file (to run it elsewhere, e.g. under `wasmtime`).
    ExportPlugin {
        #[arg(value_name = "OUT.wasm")]
        out: PathBuf,
        /// Which embedded policy.
        #[arg(long, value_enum, default_value = "nova")]
        policy: PolicyArg,
    },
}

#[derive(Subcommand, Debug)]
enum GenerateWhat {
    /// A fleet of mixed 2-, 4-, 8- and 16-cell hosts (an inventory).
    Fleet {
        #[arg(long, default_value_t = 200)]
        hosts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// A trace of arrivals and departures drawn from flavor mixes.
    Trace {
        #[arg(long, default_value_t = 2000)]
        instances: usize,
        /// general, nfv, hpc (repeatable; arrivals take them in turn). Default: all three.
        #[arg(long)]
        mix: Vec<String>,
        /// Mean seconds between arrivals.
        #[arg(long, default_value_t = 10.0)]
        gap: f64,
        /// Mean seconds an instance stays.
        #[arg(long, default_value_t = 20000.0)]
        life: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// How a command ended, mapped to the exit status.
enum Outcome {
    Done,
    Refused,
}

impl PluginArgs {
    fn limits(&self) -> PluginLimits {
        PluginLimits {
            fuel: self.fuel,
            memory_bytes: (self.memory_limit_mb as usize).saturating_mul(1 << 20),
            deadline: std::time::Duration::from_millis(self.deadline_ms),
        }
    }
}

fn load_plugin(args: &PluginArgs) -> Result<Plugin, Failure> {
    let limits = args.limits();
    let plugin = match &args.plugin {
        Some(path) => Plugin::from_file(path, limits).map_err(Failure::PluginLoad)?,
        None => {
            Plugin::embedded_named(if args.policy == PolicyArg::Balanced { "balanced" } else { "nova" }, limits).map_err(Failure::Plugin)?
        }
    };
    match plugin.cache_use() {
        CacheUse::Refused(why) => eprintln!("numafit: warning: {why}; not using it (compiled in memory)"),
        CacheUse::Discarded(why) => eprintln!("numafit: warning: discarded cached artifact {why}; recompiled"),
        CacheUse::None | CacheUse::Hit | CacheUse::Compiled => {}
    }
    Ok(plugin)
}

fn name_of(path: &Path) -> String {
    path.display().to_string()
}

/// The host of record from `--host`, else discovered.
fn read_host(path: Option<&Path>, discover: &DiscoverArgs) -> Result<HostTopology, Failure> {
    match path {
        Some(path) => Ok(formats::read_json::<HostJson>(path)?.to_record(&name_of(path))?),
        None => discover.host(),
    }
}

/// The guest request, asking the plugin to interpret a flavor.
fn read_request(path: &Path, plugin: &mut Plugin) -> Result<wit::Request, Failure> {
    request_of(&formats::read_json(path)?, &name_of(path), plugin)
}

/// The guest request a REQUEST.json (`file`) states, asking the plugin to interpret a flavor.
fn request_of(json: &RequestJson, file: &str, plugin: &mut Plugin) -> Result<wit::Request, Failure> {
    placing::request_of(json, file, |flavor| plugin.request_from_flavor(flavor).map_err(Failure::Plugin))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| OutputError { target: "the JSON output".into(), source: std::io::Error::other(e) })?;
    outln!("{text}");
    Ok(())
}

use crate::cpulist::text as cpus_text;

/// A size in KiB as people say it: 4 KiB, 2 MiB, 1 GiB.
fn kib_text(k: u32) -> String {
    match k {
        k if k >= 1 << 20 && k % (1 << 20) == 0 => format!("{} GiB", k >> 20),
        k if k >= 1 << 10 && k % (1 << 10) == 0 => format!("{} MiB", k >> 10),
        k => format!("{k} KiB"),
    }
}

/// What a guest cell asks its memory to be backed by.
fn page_size_text(p: Option<wit::PageSize>) -> String {
    match p {
        None => "small pages (no page size asked)".into(),
        Some(wit::PageSize::Small) => "small pages".into(),
        Some(wit::PageSize::Large) => "large pages (any huge page size)".into(),
        Some(wit::PageSize::Any) => "pages of any size".into(),
        Some(wit::PageSize::Kib(k)) => format!("{} pages", kib_text(k)),
    }
}

fn print_placement(p: &wit::Placement) {
    if p.cells.is_empty() {
        outln!("fits: the request has no NUMA constraint, so every host passes (policy {})", p.policy);
        return;
    }
    let mut how = vec![format!("policy {}", p.policy)];
    if let Some(c) = p.cpu_policy {
        how.push(format!("cpu policy {}", formats::cpu_policy_name(c)));
    }
    if let Some(t) = p.thread_policy {
        how.push(format!("thread policy {}", formats::thread_policy_name(t)));
    }
    outln!("fits ({})", how.join(", "));
    for c in placement_rows(p) {
        let pages = match c.page_size_kb {
            Some(k) => format!("{} pages", kib_text(k)),
            None => "default pages".into(),
        };
        outln!("  guest cell {} -> host cell {}: {} MiB in {pages}", c.guest_cell, c.host_cell, c.memory_mb);
        if !c.shared_vcpus.is_empty() {
            outln!("    shared vCPUs {} float on the cell's shared CPUs", cpus_text(&c.shared_vcpus));
        }
        if !c.pinning.is_empty() {
            let pins: Vec<String> = c.pinning.iter().map(|(v, p)| format!("{v}->{p}")).collect();
            outln!("    pinned vCPU->pCPU: {}", pins.join(" "));
        }
        if !c.emulator_pcpus.is_empty() {
            outln!("    emulator threads on pCPU {}", cpus_text(&c.emulator_pcpus));
        }
    }
}

fn print_rejection(r: &wit::Rejection) {
    outln!("does not fit: {}", r.summary);
    let mut by_guest: Vec<u32> = r.refusals.iter().map(|c| c.guest_cell).collect();
    by_guest.dedup();
    by_guest.sort_unstable();
    by_guest.dedup();
    if !r.refusals.is_empty() {
        outln!("  {:<6} {:<6} {:<16} {:>8} {:>9}  why", "guest", "host", "shortfall", "needed", "available");
    }
    for g in by_guest {
        for c in r.refusals.iter().filter(|c| c.guest_cell == g) {
            let why = c.detail.split_once(": ").map(|(_, w)| w).unwrap_or(&c.detail);
            outln!(
                "  {:<6} {:<6} {:<16} {:>8} {:>9}  {why}",
                c.guest_cell,
                c.host_cell,
                formats::shortfall_name(c.shortfall),
                c.needed,
                c.available
            );
        }
    }
    for reason in &r.reasons {
        outln!("  {reason}");
    }
}

/// A rejection, named by the policy that made it.
fn report_rejection(plugin: &mut Plugin, r: &wit::Rejection, json: bool) -> Result<(), Failure> {
    if json {
        let policy = plugin.info().map(|i| i.name).unwrap_or_else(|_| plugin.name().to_string());
        print_json(&RejectionJson::from_wit(&policy, r))
    } else {
        print_rejection(r);
        Ok(())
    }
}

fn print_host_usage(host: &HostJson) {
    for c in &host.cells {
        let pages: Vec<String> =
            c.mempages.iter().flatten().map(|p| format!("{} pages {}/{} used", kib_text(p.size_kb), p.used, p.total)).collect();
        outln!(
            "  host cell {}: memory {}/{} MiB used, shared vCPUs {}, pinned CPUs {}{}",
            c.id,
            c.memory_usage,
            c.memory,
            c.cpu_usage,
            cpus_text(&c.pinned_cpus),
            if pages.is_empty() { String::new() } else { format!(", {}", pages.join(", ")) }
        );
    }
}

fn fit(
    host: Option<&Path>,
    discover: &DiscoverArgs,
    request: &Path,
    limits: Option<&Path>,
    strategy: StrategyArg,
    args: &PluginArgs,
) -> Result<Outcome, Failure> {
    let mut plugin = load_plugin(args)?;
    let whost = contract::host_view(&read_host(host, discover)?);
    let wrequest = read_request(request, &mut plugin)?;
    let wlimits = fit_limits(limits, strategy)?;
    match plugin.fit(&whost, &wrequest, &wlimits).map_err(Failure::Plugin)? {
        Ok(p) => {
            verify::placement(plugin.name(), &whost, &wrequest, &p)?;
            if args.json {
                print_json(&PlacementJson::from_wit(&p))?;
            } else {
                print_placement(&p);
            }
            Ok(Outcome::Done)
        }
        Err(r) => {
            report_rejection(&mut plugin, &r, args.json)?;
            Ok(Outcome::Refused)
        }
    }
}

/// The limits a fit runs under: `--limits`, else none, with `--strategy`.
fn fit_limits(limits: Option<&Path>, strategy: StrategyArg) -> Result<wit::Limits, Failure> {
    let strategy = match strategy {
        StrategyArg::Spread => wit::Strategy::Spread,
        StrategyArg::Pack => wit::Strategy::Pack,
    };
    Ok(match limits {
        Some(path) => formats::read_json::<LimitsJson>(path)?.to_wit(&name_of(path), strategy)?,
        None => LimitsJson::default().to_wit("", strategy)?,
    })
}

fn print_conflict(claim: bool, json: bool, code: &str, host_cell: Option<u32>, cpus: &[u32], message: &str) -> Result<(), Failure> {
    if json {
        print_json(&formats::AccountingConflictJson::new(code, host_cell, cpus, message))
    } else {
        outln!("{} refused: {code}: {message}", if claim { "claim" } else { "release" });
        Ok(())
    }
}

fn account(
    host: Option<&Path>,
    discover: &DiscoverArgs,
    placement: &Path,
    limits: Option<&Path>,
    args: &PluginArgs,
    claim: bool,
) -> Result<Outcome, Failure> {
    let mut plugin = load_plugin(args)?;
    let record = read_host(host, discover)?;
    let wplacement = formats::read_json::<PlacementJson>(placement)?.to_wit(&name_of(placement))?;
    let wlimits = match limits {
        Some(path) => Some(formats::read_json::<LimitsJson>(path)?.to_wit(&name_of(path), wit::Strategy::Spread)?),
        None => None,
    };
    let name = plugin.name().to_string();
    let outcome = placing::account(&name, &record, wplacement, wlimits.as_ref(), claim, &name_of(placement), |h, p| {
        if claim { plugin.claim(h, p) } else { plugin.release(h, p) }.map_err(Failure::Plugin)
    })?;
    match outcome {
        Ok(next) => {
            let next = HostJson::from_record(&next);
            if args.json {
                print_json(&next)?;
            } else {
                outln!("{} done; the host now:", if claim { "claim" } else { "release" });
                print_host_usage(&next);
            }
            Ok(Outcome::Done)
        }
        Err(c) => {
            print_conflict(claim, args.json, &c.code, c.host_cell, &c.cpus, &c.message)?;
            Ok(Outcome::Refused)
        }
    }
}

fn instance_id(id: &str) -> Result<&str, Failure> {
    placing::check_instance(id).map_err(|m| FlagError(format!("--{m}")).into())
}

fn policy_version(plugin: &mut Plugin) -> Result<PolicyVersion, Failure> {
    let info = plugin.info().map_err(Failure::Plugin)?;
    Ok(PolicyVersion { name: info.name, version: info.version, sha256: plugin.sha256().to_string() })
}

fn print_claim(claim: &Claim, json: bool, what: &str) -> Result<(), Failure> {
    if json {
        return print_json(claim);
    }
    outln!("{what} instance {} (policy {} {})", claim.instance, claim.policy.name, claim.policy.version);
    if let Ok(p) = claim.placement.to_wit("the ledger") {
        print_placement(&p);
    }
    Ok(())
}

/// A claim fitted and recorded on this machine's live state (`claim --instance`, `run`).
struct LedgerClaim {
    outcome: ClaimOutcome,
    plugin: Plugin,
    base: HostTopology,
    /// The request as given.
    document: serde_json::Value,
    ledger: Ledger,
}

/// Fits on the live state (the base topology plus every claim) and records the claim; a fit
/// overtaken by another writer is fitted again.
fn claim_on_ledger(
    id: &str,
    request_path: &Path,
    discover: &DiscoverArgs,
    state: &StateArgs,
    limits: Option<&Path>,
    args: &PluginArgs,
    owner: Option<ledger::Owner>,
) -> Result<LedgerClaim, Failure> {
    let mut plugin = load_plugin(args)?;
    let base = discover.host()?;
    // Read once: recorded as given, and compared as the document it is (not as text).
    let name = name_of(request_path);
    let text =
        std::fs::read_to_string(request_path).map_err(|e| InputError { file: name.clone(), message: format!("cannot read: {e}") })?;
    let request_doc: serde_json::Value = formats::parse_json(&name, &text)?;
    let request_json: RequestJson = formats::parse_json(&name, &text)?;
    let wrequest = request_of(&request_json, &name, &mut plugin)?;
    let wlimits = match limits {
        Some(path) => Some(formats::read_json::<LimitsJson>(path)?.to_wit(&name_of(path), wit::Strategy::Spread)?),
        None => None,
    };
    let fit_limits = wlimits.clone().map_or_else(|| LimitsJson::default().to_wit("", wit::Strategy::Spread), Ok)?;
    let policy = policy_version(&mut plugin)?;
    let mut ledger = state.open()?;
    let admit = |host: &HostTopology, p: &Placement| verify::admit(host, p, wlimits.as_ref());
    let ask = ClaimRequest { instance: id, document: &request_doc, request: &request_json, policy: &policy, owner, generation: None };
    let outcome = placing::claim(&mut ledger, &base, &ask, &admit, |whost| {
        let answer = plugin.fit(whost, &wrequest, &fit_limits).map_err(Failure::Plugin)?;
        if let Ok(p) = &answer {
            verify::placement(plugin.name(), whost, &wrequest, p)?;
        }
        Ok(answer)
    })?;
    Ok(LedgerClaim { outcome, plugin, base, document: request_doc, ledger })
}

/// Prints a claim that was not made, and says so.
fn report_unclaimed(id: &str, outcome: ClaimOutcome, plugin: &mut Plugin, json: bool) -> Result<Outcome, Failure> {
    match outcome {
        ClaimOutcome::Claimed { claim, .. } => {
            print_claim(&claim, json, "claimed")?;
            Ok(Outcome::Done)
        }
        ClaimOutcome::Rejected(r) => {
            report_rejection(plugin, &r, json)?;
            Ok(Outcome::Refused)
        }
        ClaimOutcome::Exists(existing) => {
            print_conflict(true, json, "InstanceExists", None, &[], &placing::exists_message(id, &existing))?;
            Ok(Outcome::Refused)
        }
        ClaimOutcome::Overtaken => {
            print_conflict(true, json, "ComputeResourcesUnavailable", None, &[], &placing::overtaken_message())?;
            Ok(Outcome::Refused)
        }
        // The CLI claims on whatever generation it finds.
        ClaimOutcome::Moved { generation } => {
            print_conflict(true, json, "StaleGeneration", None, &[], &format!("the ledger moved to generation {generation}"))?;
            Ok(Outcome::Refused)
        }
    }
}

/// `claim --instance`.
fn claim_instance(
    id: &str,
    request_path: &Path,
    discover: &DiscoverArgs,
    state: &StateArgs,
    limits: Option<&Path>,
    args: &PluginArgs,
) -> Result<Outcome, Failure> {
    let id = instance_id(id)?;
    let mut made = claim_on_ledger(id, request_path, discover, state, limits, args, None)?;
    report_unclaimed(id, made.outcome, &mut made.plugin, args.json)
}

fn release_instance(id: &str, state: &StateArgs, json: bool) -> Result<Outcome, Failure> {
    let id = instance_id(id)?;
    match state.open()?.release(id) {
        Ok(claim) => {
            print_claim(&claim, json, "released")?;
            Ok(Outcome::Done)
        }
        Err(ledger::LedgerError::Unknown(_)) => {
            print_conflict(false, json, "InstanceNotFound", None, &[], &format!("instance {id:?} has no claim in the ledger"))?;
            Ok(Outcome::Refused)
        }
        Err(e) => Err(e.into()),
    }
}

fn list_claims(state: &StateArgs, json: bool) -> Result<Outcome, Failure> {
    let claims = state.open()?.claims()?;
    if json {
        print_json(&claims)?;
    } else if claims.is_empty() {
        outln!("no claims");
    } else {
        for c in &claims {
            let cells: Vec<String> = c.placement.cells.iter().map(|p| format!("host cell {}", p.host_cell)).collect();
            outln!(
                "{}: {} ({} {})",
                c.instance,
                if cells.is_empty() { "no NUMA constraint".into() } else { cells.join(", ") },
                c.policy.name,
                c.policy.version
            );
        }
    }
    Ok(Outcome::Done)
}

fn status(discover: &DiscoverArgs, state: &StateArgs, json: bool) -> Result<Outcome, Failure> {
    let base = discover.host()?;
    let ledger = state.open()?;
    let claims = ledger.claims()?;
    let derived = ledger::derive(&base, &claims, &|host: &HostTopology, p: &Placement| verify::admit(host, p, None));
    let host = HostJson::from_record(&derived.host);
    if json {
        print_json(&formats::StatusJson {
            claims: claims.len(),
            host,
            ledger: ledger.path().display().to_string(),
            lost: derived.lost.iter().map(|l| formats::LostJson { instance: l.instance.clone(), reason: l.reason.clone() }).collect(),
        })?;
        return Ok(Outcome::Done);
    }
    outln!("{} claim(s) in {}", claims.len(), ledger.path().display());
    for l in &derived.lost {
        outln!("no longer fits: instance {}: {}", l.instance, l.reason);
    }
    outln!("the host now:");
    print_host_usage(&host);
    Ok(Outcome::Done)
}

fn request(path: &Path, args: &PluginArgs) -> Result<Outcome, Failure> {
    let mut plugin = load_plugin(args)?;
    let r = read_request(path, &mut plugin)?;
    if args.json {
        print_json(&formats::GuestTopologyJson::from_wit(&r))?;
    } else if r.cells.is_empty() {
        outln!("no NUMA constraint: every host passes");
    } else {
        outln!("{} guest NUMA cell(s)", r.cells.len());
        for (i, c) in r.cells.iter().enumerate() {
            outln!(
                "  cell {i}: shared vCPUs {}, dedicated vCPUs {}, {} MiB in {}",
                cpus_text(&cell_ids(&r.shared_vcpus, i as u32)),
                cpus_text(&cell_ids(&r.dedicated_vcpus, i as u32)),
                c.memory_mb,
                page_size_text(c.page_size)
            );
        }
    }
    Ok(Outcome::Done)
}

fn topology(args: &DiscoverArgs, json: bool, svg: Option<&Path>) -> Result<Outcome, Failure> {
    let topo = args.read()?;
    let host = topo.to_host(&args.config()?).map_err(FlagError)?;
    if let Some(path) = svg {
        let title = format!("{} NUMA node(s), {} CPUs", host.cells.len(), topo.nodes.iter().map(|n| n.cpus.len()).sum::<usize>());
        std::fs::write(path, crate::draw::svg(&host, &title)).map_err(|e| OutputError { target: path.display().to_string(), source: e })?;
    }
    if json {
        print_json(&host)?;
        return Ok(Outcome::Done);
    }
    let source = match (&args.numactl_output, &args.sysfs_root) {
        (Some(f), _) => format!("numactl output {}", f.display()),
        (None, Some(r)) => format!("sysfs under {}", r.display()),
        (None, None) => "this machine".to_string(),
    };
    outln!("{} NUMA node(s), read from {source}", topo.nodes.len());
    for (node, cell) in topo.nodes.iter().zip(&host.cells) {
        let free = node.free_kib.map(|f| format!(", {} MiB free", f / 1024)).unwrap_or_default();
        let socket = cell.socket.map(|s| format!(", socket {s}")).unwrap_or_default();
        outln!("node {}: {} CPUs, {} MiB{free}{socket}", node.id, node.cpus.len(), node.memory_kib / 1024);
        if !cell.siblings.is_empty() {
            let cores: Vec<String> = cell.siblings.iter().map(|g| format!("{{{}}}", cpus_text(g))).collect();
            outln!("  cores: {}", cores.join(" "));
        }
        let reserved: Vec<u32> = node.cpus.iter().copied().filter(|c| !cell.cpuset.contains(c) && !cell.pcpuset.contains(c)).collect();
        outln!(
            "  shared CPUs: {}; pinnable: {}; reserved for the host: {}",
            cpus_text(&cell.cpuset),
            cpus_text(&cell.pcpuset),
            cpus_text(&reserved)
        );
        for p in cell.mempages.iter().flatten() {
            let free = p.total.saturating_sub(p.used.saturating_add(p.reserved));
            let mib = |n: u64| n.saturating_mul(u64::from(p.size_kb)) / 1024;
            outln!(
                "  {} pages: {} MiB total ({} pages), {} MiB free, {} MiB reserved",
                kib_text(p.size_kb),
                mib(p.total),
                p.total,
                mib(free),
                mib(p.reserved)
            );
        }
        if let Some(d) = &cell.distances {
            let text: Vec<String> = d.iter().map(|x| x.to_string()).collect();
            outln!("  distances: {}", text.join(" "));
        }
    }
    if !topo.excluded_cpus.is_empty() {
        outln!("offline or not allowed CPUs, left out: {}", cpus_text(&topo.excluded_cpus));
    }
    for note in &topo.notes {
        outln!("note: {note}");
    }
    Ok(Outcome::Done)
}

fn run(cli: Cli) -> Result<Outcome, Failure> {
    crate::runtime::check_environment().map_err(FlagError)?;
    match cli.command {
        Command::Fit { host, discover, request, limits, strategy, plugin } => {
            fit(host.as_deref(), &discover, &request, limits.as_deref(), strategy, &plugin)
        }
        Command::Simulate { fleet, trace, policies, plot, fuel, json } => {
            let limits = PluginLimits { fuel, ..PluginLimits::default() };
            simulate::simulate(&fleet, &trace, &policies, plot.as_deref(), json, limits)
        }
        Command::Generate { what: GenerateWhat::Fleet { hosts, seed } } => simulate::generate_fleet(hosts, seed),
        Command::Generate { what: GenerateWhat::Trace { instances, mix, gap, life, seed } } => {
            simulate::generate_trace(instances, &mix, gap, life, seed)
        }
        Command::Filter { hosts, request, limits, strategy, weigher, plugin } => {
            fleet::filter(&hosts, &request, limits.as_deref(), strategy, &weigher, &plugin)
        }
        Command::Claim { host, discover, placement, instance, request, limits, state, plugin } => match (instance, request, placement) {
            (Some(id), Some(request), _) => claim_instance(&id, &request, &discover, &state, limits.as_deref(), &plugin),
            (_, _, Some(placement)) => account(host.as_deref(), &discover, &placement, limits.as_deref(), &plugin, true),
            _ => Err(FlagError("claim: give --placement, or --instance with --request".into()).into()),
        },
        Command::Release { host, discover, placement, instance, state, plugin } => match (instance, placement) {
            (Some(id), _) => release_instance(&id, &state, plugin.json),
            (None, Some(placement)) => account(host.as_deref(), &discover, &placement, None, &plugin, false),
            (None, None) => Err(FlagError("release: give --placement or --instance".into()).into()),
        },
        Command::Claims { state, json } => list_claims(&state, json),
        Command::Status { discover, state, json } => status(&discover, &state, json),
        Command::Topology { discover, json, svg } => topology(&discover, json, svg.as_deref()),
        Command::Request { request: path, plugin } => request(&path, &plugin),
        Command::Info { plugin } => {
            let mut p = load_plugin(&plugin)?;
            let info = p.info().map_err(Failure::Plugin)?;
            if plugin.json {
                print_json(&formats::InfoJson {
                    contract: info.contract,
                    name: info.name,
                    source: p.name().to_string(),
                    version: info.version,
                })?;
            } else {
                outln!("policy {} {} (contract numafit:policy@{}) from {}", info.name, info.version, info.contract, p.name());
            }
            Ok(Outcome::Done)
        }
        Command::Serve {
            host,
            discover,
            state,
            socket,
            listen,
            token_file,
            watch,
            limits,
            max_body_kib,
            max_policy_mib,
            cgroup_root,
            node_name,
            topology_manager_policy,
            topology_manager_scope,
            cluster,
            extender_listen,
            plugin,
        } => {
            if let Some(addr) = extender_listen.filter(|a| !a.ip().is_loopback()) {
                return Err(FlagError(format!(
                    "--extender-listen {addr}: not a loopback address; the extender verbs are served without a token, so only next to the scheduler (127.0.0.1 or ::1)"
                ))
                .into());
            }
            let state_dir = state.dir()?;
            let token = match &token_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| FlagError(format!("--token-file {}: cannot read: {e}", path.display())))?;
                    let token = text.trim().to_string();
                    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return Err(FlagError(format!(
                            "--token-file {}: a token is at least 16 characters with no whitespace",
                            path.display()
                        ))
                        .into());
                    }
                    Some(token)
                }
                None => None,
            };
            let admit_limits = match &limits {
                Some(path) => Some(formats::read_json::<LimitsJson>(path)?.to_wit(&name_of(path), wit::Strategy::Spread)?),
                None => None,
            };
            let fit_limits = admit_limits.clone().map_or_else(|| LimitsJson::default().to_wit("", wit::Strategy::Spread), Ok)?;
            let config = crate::service::ServeConfig {
                base: read_host(host.as_deref(), &discover)?,
                socket: socket.unwrap_or_else(|| state_dir.join("serve.sock")),
                state_dir,
                listen,
                token,
                policy: match &plugin.plugin {
                    Some(path) => crate::service::PolicySource::File(path.clone()),
                    None => crate::service::PolicySource::Embedded(if plugin.policy == PolicyArg::Balanced { "balanced" } else { "nova" }),
                },
                watch,
                limits: plugin.limits(),
                fit_limits,
                admit_limits,
                json_body: (max_body_kib as usize) << 10,
                policy_body: (max_policy_mib as usize) << 20,
                cgroup_root,
                node: crate::service::NodeIdentity {
                    name: node_name.unwrap_or_else(crate::service::hostname),
                    topology_manager_policy,
                    topology_manager_scope,
                },
                cluster: match &cluster {
                    Some(path) => Some(crate::service::cluster::ClusterConfig::read(path)?),
                    None => None,
                },
                extender_listen,
            };
            crate::service::run(config)?;
            Ok(Outcome::Done)
        }
        Command::Run { instance, request, mem_policy, limits, discover, state, plugin, command } => {
            placed::run(instance.as_deref(), &request, mem_policy, limits.as_deref(), &discover, &state, &plugin, &command)
        }
        Command::Gc { state, json } => placed::gc(&state, json),
        Command::Apply { instance, cgroup, cgroup_root, create, discover, state, json } => {
            placed::apply(&instance, &cgroup, &cgroup_root, create, &discover, &state, json)
        }
        Command::Render { instance, placement, host, format, mem_policy, discover, state } => {
            let source = match (&instance, &placement, &host) {
                (Some(id), _, _) => placed::RenderSource::Claim(id),
                (None, Some(placement), Some(host)) => placed::RenderSource::Files { placement, host },
                _ => return Err(FlagError("render: give --instance, or --placement with --host".into()).into()),
            };
            placed::render(source, format, mem_policy, &discover, &state)
        }
        Command::Adopt { instance, cpus, mems, memory, shared, dedicated: _, discover, state, json } => {
            placed::adopt(&instance, &cpus, &mems, &memory, !shared, &discover, &state, json)
        }
        Command::ExportPlugin { out, policy } => {
            let bytes = if policy == PolicyArg::Balanced { crate::runtime::EMBEDDED_BALANCED } else { crate::runtime::EMBEDDED_NOVA };
            std::fs::write(&out, bytes).map_err(|e| OutputError { target: out.display().to_string(), source: e })?;
            Ok(Outcome::Done)
        }
    }
}

/// Writes the buffered output to stdout.
fn write_output() -> std::io::Result<()> {
    let text = OUT.with(|o| std::mem::take(&mut *o.borrow_mut()));
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Entry point: runs the command and maps its outcome to the exit status.
pub fn main() -> ExitCode {
    // A reader that closes the pipe early (`numafit fit ... | head -1`) ends numafit the way it
    // ends any filter, by SIGPIPE, not by a panic on the failed write.
    // SAFETY: restoring a signal's default disposition has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Refused) => ExitCode::from(1),
        Err(e) => {
            eprintln!("numafit: error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match write_output() {
        Ok(()) => code,
        // Only reached where SIGPIPE stays ignored: end quietly as a closed pipe asks.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
        Err(e) => {
            let failure = Failure::from(OutputError { target: "the output".into(), source: e });
            eprintln!("numafit: error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
