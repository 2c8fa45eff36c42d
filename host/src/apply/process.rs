//! A process started inside its placement (`numafit run`): CPU affinity and memory policy set in
//! the child between fork and exec (so not one instruction of the program runs outside them),
//! the placement exported in its environment, signals sent to numafit passed on, its exit status
//! returned. A process is named by its pid and its start time, so a reused pid is not it.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, Command, ExitStatus};

use super::{list, ApplyError, Binding, MemPolicy};
use crate::ledger::Owner;

// The kernel's memory policy modes (`include/uapi/linux/mempolicy.h`); libc does not carry them.
const MPOL_PREFERRED: libc::c_int = 1;
const MPOL_BIND: libc::c_int = 2;
const MPOL_INTERLEAVE: libc::c_int = 3;
const MPOL_PREFERRED_MANY: libc::c_int = 5;

/// The signals `run` passes on to its child. SIGCHLD is waited for with them.
const FORWARDED: [libc::c_int; 8] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH, libc::SIGCONT];

/// The signals blocked in numafit (and so in every thread it starts after this) so that they
/// queue until `wait` takes them; the child's mask is emptied before exec.
pub struct HeldSignals {
    set: libc::sigset_t,
}

/// Blocks the forwarded signals and SIGCHLD. Call it before starting any thread: a thread started
/// before would take a signal with its default action (and end numafit without releasing).
pub fn hold_signals() -> Result<HeldSignals, ApplyError> {
    // SAFETY: sigemptyset/sigaddset fill a sigset_t we own; pthread_sigmask reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED.iter().chain(&[libc::SIGCHLD]) {
            libc::sigaddset(&mut set, *s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(ApplyError::os("pthread_sigmask", &std::io::Error::from_raw_os_error(rc)));
        }
        Ok(HeldSignals { set })
    }
}

/// A process's identity: its pid and start time (`/proc/PID/stat` field 22); `None` when there is
/// no such process, or it has exited and waits to be reaped (a zombie runs nothing).
pub fn identity(pid: u32) -> Option<Owner> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
        return None;
    }
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some(Owner { pid, start_ticks })
}

/// This process's identity.
pub fn me() -> Result<Owner, ApplyError> {
    identity(std::process::id()).ok_or_else(|| ApplyError::new("/proc/self/stat", "cannot read this process's start time"))
}

/// Whether the process a claim belongs to still runs.
pub fn alive(owner: Owner) -> bool {
    identity(owner.pid) == Some(owner)
}

/// The environment a placed process gets: its instance, all its CPUs and nodes, and each guest
/// cell's, for programs that pin their own threads.
pub fn environment(instance: &str, b: &Binding) -> Vec<(String, String)> {
    let mut env = vec![
        ("NUMAFIT_INSTANCE".to_string(), instance.to_string()),
        ("NUMAFIT_CPUS".to_string(), list(&b.cpus)),
        ("NUMAFIT_MEMS".to_string(), list(&b.mems)),
    ];
    for (i, c) in b.cells.iter().enumerate() {
        env.push((format!("NUMAFIT_CELL{i}_CPUS"), list(&c.cpus)));
        env.push((format!("NUMAFIT_CELL{i}_MEMS"), c.host_node.to_string()));
    }
    env
}

/// The CPUs and memory nodes this process may use (its own affinity and cpuset): a placement
/// outside them is refused before anything starts, naming what is missing.
pub fn check_allowed(b: &Binding) -> Result<(), ApplyError> {
    // SAFETY: sched_getaffinity fills the cpu_set_t we own.
    let allowed: Vec<u32> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(ApplyError::os("sched_getaffinity", &std::io::Error::last_os_error()));
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).map(|c| c as u32).collect()
    };
    let missing: Vec<u32> = b.cpus.iter().copied().filter(|c| !allowed.contains(c)).collect();
    if !missing.is_empty() {
        return Err(ApplyError::new(
            "the placement",
            format!("CPUs {} are outside the CPUs numafit may run on ({})", list(&missing), list(&allowed)),
        ));
    }
    if let Some(max) = b.cpus.iter().max() {
        if *max as usize >= libc::CPU_SETSIZE as usize {
            return Err(ApplyError::new("the placement", format!("CPU {max} is past what sched_setaffinity takes here")));
        }
    }
    Ok(())
}

/// The node mask `set_mempolicy` takes: one bit per node, in words.
fn node_mask(nodes: &[u32]) -> Vec<libc::c_ulong> {
    let bits = libc::c_ulong::BITS;
    let words = nodes.iter().max().map_or(1, |m| *m / bits + 1) as usize;
    let mut mask = vec![0 as libc::c_ulong; words];
    for &n in nodes {
        mask[(n / bits) as usize] |= 1 << (n % bits);
    }
    mask
}

/// A program to start in a placement.
pub struct Launch<'a> {
    pub instance: &'a str,
    pub binding: &'a Binding,
    pub mem_policy: MemPolicy,
    pub program: &'a OsString,
    pub args: &'a [OsString],
}

/// Starts the program with its affinity, memory policy and environment set before exec (the
/// placement checked with `check_allowed` first); an error here is the program's start failing.
pub fn spawn(l: &Launch) -> Result<Child, ApplyError> {
    let b = l.binding;
    // Everything the child's pre-exec step uses is made here: between fork and exec only
    // async-signal-safe system calls run.
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it (checked above).
    let cpu_set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in &b.cpus {
            libc::CPU_SET(c as usize, &mut set);
        }
        set
    };
    let mask = node_mask(&b.mems);
    // The kernel reads one bit less than it is told (`get_nodes` decrements maxnode).
    let max_node = (mask.len() as libc::c_ulong) * libc::c_ulong::from(libc::c_ulong::BITS) + 1;
    let first_node = node_mask(&b.mems[..b.mems.len().min(1)]);
    let mode = match (b.numa, l.mem_policy) {
        (false, _) => None,
        (true, MemPolicy::Strict) => Some(MPOL_BIND),
        (true, MemPolicy::Preferred) if b.mems.len() == 1 => Some(MPOL_PREFERRED),
        (true, MemPolicy::Preferred) => Some(MPOL_PREFERRED_MANY),
        (true, MemPolicy::Interleave) => Some(MPOL_INTERLEAVE),
    };
    let mut cmd = Command::new(l.program);
    cmd.args(l.args);
    for (k, v) in environment(l.instance, b) {
        cmd.env(k, v);
    }
    // SAFETY: the closure makes only async-signal-safe system calls on memory prepared above.
    unsafe {
        cmd.pre_exec(move || {
            // Blocked signals survive exec: the program starts with none blocked.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cpu_set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(mode) = mode {
                let rc = libc::syscall(libc::SYS_set_mempolicy, mode, mask.as_ptr(), max_node);
                if rc != 0 {
                    let err = std::io::Error::last_os_error();
                    // Kernels before 5.15 know no MPOL_PREFERRED_MANY: prefer the first node.
                    if mode != MPOL_PREFERRED_MANY || err.raw_os_error() != Some(libc::EINVAL) {
                        return Err(err);
                    }
                    if libc::syscall(libc::SYS_set_mempolicy, MPOL_PREFERRED, first_node.as_ptr(), max_node) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        ApplyError::os(format!("starting {:?} on CPUs {} with memory on nodes {}", l.program, list(&b.cpus), list(&b.mems)), &e)
    })
}

/// The exit status a failed start maps to, as `env` and shells answer: 127 not found, 126 found
/// but not runnable.
pub fn start_failure_code(e: &ApplyError) -> u8 {
    if e.message.contains("ENOENT") {
        127
    } else {
        126
    }
}

/// Waits for the child, passing on every held signal someone sent numafit. A signal the terminal
/// sent (Ctrl-C) reached the child's process group already, so it is not sent twice.
pub fn wait(child: &mut Child, held: &HeldSignals) -> Result<ExitStatus, ApplyError> {
    let pid = child.id() as libc::pid_t;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| ApplyError::os("waitpid", &e))? {
            return Ok(status);
        }
        // SAFETY: sigwaitinfo fills the siginfo_t we own from the set we hold.
        let (sig, code) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&held.set, &mut info);
            (sig, info.si_code)
        };
        if sig < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ApplyError::os("sigwaitinfo", &e));
        }
        if sig != libc::SIGCHLD && code != libc::SI_KERNEL {
            // SAFETY: kill has no memory preconditions; the child is ours and not yet reaped.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
}

/// Ends numafit the way its child ended: the same exit code, or the same signal (numafit's own
/// disposition reset, so the parent sees the child's WTERMSIG); 128 + the signal if it survives.
pub fn exit_like(status: ExitStatus) -> ! {
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    let sig = status.signal().unwrap_or(libc::SIGKILL);
    // SAFETY: resetting a disposition, unblocking and raising a signal in our own process.
    unsafe {
        // No core file for numafit itself: the child's crash was the child's.
        let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig);
}
