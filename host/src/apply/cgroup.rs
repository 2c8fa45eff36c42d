//! A placement written into a cgroup v2 group's cpuset (`cpuset.cpus`, `cpuset.mems`), so the
//! containers and VMs other tools start in that group run inside it. With `create`, the group
//! (and its missing parents) is made and the cpuset controller enabled in each parent's
//! `cgroup.subtree_control`. A failure part-way undoes what was done: the old values written
//! back, the groups made removed.
//!
//! `root` is normally `/sys/fs/cgroup`; a scratch directory laid out like cgroupfs (for tests) is
//! recognised by its filesystem not being cgroup2, and there the files are created as written.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use super::{errno_text, list, ApplyError, Binding};
use crate::discover;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub group: PathBuf,
    pub cpus: String,
    pub mems: String,
    /// The groups this call made, outermost first.
    pub created: Vec<PathBuf>,
}

fn is_cgroup2(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs fills the struct we own from a NUL-terminated path.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

/// The group's directories from the first under `root` to the group itself; the path must be
/// relative and plain (no `..`), so a group cannot be outside the hierarchy.
fn group_dirs(root: &Path, group: &str) -> Result<Vec<PathBuf>, ApplyError> {
    let bad = |why: &str| ApplyError::new(format!("cgroup {group:?}"), why.to_string());
    let rel = Path::new(group.trim_start_matches('/'));
    let mut dirs = Vec::new();
    let mut at = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(name) => {
                at.push(name);
                dirs.push(at.clone());
            }
            Component::CurDir => {}
            _ => return Err(bad("a cgroup is a path inside the hierarchy, without '..'")),
        }
    }
    if dirs.is_empty() {
        return Err(bad("the root group cannot be given a cpuset; name a group under it"));
    }
    Ok(dirs)
}

/// Whether `group` names a group under a hierarchy's root (checked before anything is claimed).
pub fn check_group(group: &str) -> Result<(), String> {
    group_dirs(Path::new("/"), group).map(|_| ()).map_err(|e| e.message)
}

fn read(file: &Path) -> Result<String, ApplyError> {
    std::fs::read_to_string(file).map_err(|e| ApplyError::new(format!("reading {}", file.display()), errno_text(&e)))
}

/// Writes `value` the way cgroupfs takes it: one write(2) of the whole value.
fn write(file: &Path, value: &str, create: bool) -> Result<(), ApplyError> {
    let what = || format!("writing {value:?} to {}", file.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(create)
        .open(file)
        .map_err(|e| ApplyError::new(what(), errno_text(&e)))?;
    f.write_all(format!("{value}\n").as_bytes()).map_err(|e| ApplyError::new(what(), errno_text(&e)))
}

/// Writes the binding's CPUs and nodes into `group` (a path under `root`).
pub fn apply(root: &Path, group: &str, create: bool, b: &Binding) -> Result<Written, ApplyError> {
    let real = is_cgroup2(root);
    let controllers = root.join("cgroup.controllers");
    let available = read(&controllers)
        .map_err(|e| ApplyError::new(format!("--cgroup-root {}", root.display()), format!("not a cgroup v2 hierarchy: {}", e)))?;
    if !available.split_whitespace().any(|c| c == "cpuset") {
        return Err(ApplyError::new(
            controllers.display().to_string(),
            format!("the cpuset controller is not available here (controllers: {:?})", available.trim()),
        ));
    }
    let dirs = group_dirs(root, group)?;
    let mut undo = Undo { created: Vec::new(), restore: Vec::new(), scratch: !real };
    match write_all(root, &dirs, create, real, b, &mut undo) {
        Ok(w) => Ok(Written { created: std::mem::take(&mut undo.created), ..w }),
        Err(e) => {
            undo.run();
            Err(e)
        }
    }
}

fn write_all(root: &Path, dirs: &[PathBuf], create: bool, real: bool, b: &Binding, undo: &mut Undo) -> Result<Written, ApplyError> {
    let mut parent = root.to_path_buf();
    for dir in dirs {
        // The parent hands the cpuset controller down, or the group has no cpuset files.
        let control = parent.join("cgroup.subtree_control");
        let enabled = if real || control.exists() { read(&control)? } else { String::new() };
        if !enabled.split_whitespace().any(|c| c == "cpuset" || c == "+cpuset") {
            if !create {
                return Err(ApplyError::new(
                    control.display().to_string(),
                    "does not enable the cpuset controller for its children (give --create to enable it)",
                ));
            }
            write(&control, "+cpuset", !real)?;
            // cgroupfs takes a delta; a scratch file gets its old text back.
            undo.restore.push((control.clone(), if real { "-cpuset".into() } else { enabled.trim().to_string() }));
        }
        if !dir.is_dir() {
            if !create {
                return Err(ApplyError::new(format!("cgroup {}", dir.display()), "does not exist (give --create to make it)"));
            }
            std::fs::create_dir(dir).map_err(|e| ApplyError::new(format!("creating cgroup {}", dir.display()), errno_text(&e)))?;
            undo.created.push(dir.clone());
        }
        parent = dir.clone();
    }
    let group = parent;
    let cpus = list(&b.cpus);
    let mems = list(&b.mems);
    for (name, value) in [("cpuset.cpus", &cpus), ("cpuset.mems", &mems)] {
        let file = group.join(name);
        let old = if real || file.exists() { Some(read(&file)?) } else { None };
        write(&file, value, !real)?;
        if let Some(old) = old {
            undo.restore.push((file.clone(), old.trim().to_string()));
        }
        // Read back: the kernel may normalise the list, but it must name the same CPUs.
        let back = read(&file)?;
        let same = discover::parse_list(back.trim()).map(|mut v| {
            v.sort_unstable();
            v
        });
        let want = discover::parse_list(value).unwrap_or_default();
        if same.as_deref() != Ok(want.as_slice()) {
            return Err(ApplyError::new(file.display().to_string(), format!("wrote {value:?} but it reads {:?}", back.trim())));
        }
    }
    Ok(Written { group, cpus, mems, created: Vec::new() })
}

/// What to put back when a step fails.
struct Undo {
    created: Vec<PathBuf>,
    /// Files to write back, with the value that undoes this call's write.
    restore: Vec<(PathBuf, String)>,
    scratch: bool,
}

impl Undo {
    fn run(&mut self) {
        for (file, value) in self.restore.drain(..).rev() {
            let _ = write(&file, &value, false);
        }
        for dir in self.created.drain(..).rev() {
            if self.scratch {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                // A cgroup directory is removed with rmdir(2), its interface files and all.
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}
