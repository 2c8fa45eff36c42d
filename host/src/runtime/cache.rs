//! The on-disk cache of compiled components. A compiled artifact is native code that runs outside
//! the wasm sandbox, so nothing found in the cache is trusted as it is found:
//!
//! - the directory must belong to this user and be writable by nobody else (else it is not used:
//!   the component is compiled in memory, with a warning);
//! - each artifact has a record beside it (`<key>.cwasm.sha256`) holding the SHA-256 of the
//!   component it was compiled from and the BLAKE3 digest of the artifact's own bytes (a record
//!   of the older all-SHA-256 form does not match: that artifact is recompiled); the artifact is read into
//!   memory, hashed, and deserialized only when both match (so a foreign policy's artifact copied
//!   over this one, or a corrupted one, is never executed);
//! - anything that fails a check is discarded and recompiled.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the record beside an artifact says: the component it was compiled from (SHA-256) and the
/// artifact's own bytes (BLAKE3: as strong, and several times faster on the megabyte every start
/// checks).
fn record_text(source: &str, artifact: &[u8]) -> String {
    format!("source {source}\nartifact-blake3 {}\n", blake3::hash(artifact).to_hex())
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Where the cache lives by default: `$NUMAFIT_CACHE_DIR`, else `$XDG_CACHE_HOME/numafit`, else
/// `~/.cache/numafit`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("NUMAFIT_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("numafit"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("numafit"))
}

/// Why a cache directory is not used (a warning for the operator), or none when it is safe:
/// created 0700 when missing, a real directory owned by this user, not group- or world-writable.
fn unsafe_dir(dir: &Path) -> Option<String> {
    if std::fs::symlink_metadata(dir).is_err() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        if let Err(e) = b.create(dir) {
            return Some(format!("compile cache {}: cannot create it: {e}", dir.display()));
        }
    }
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(format!("compile cache {}: {e}", dir.display())),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() {
        Some(format!("compile cache {} is not a directory", dir.display()))
    } else if meta.uid() != me {
        Some(format!("compile cache {} belongs to uid {}, not to this user (uid {me})", dir.display(), meta.uid()))
    } else if meta.permissions().mode() & 0o022 != 0 {
        Some(format!("compile cache {} is writable by others (mode {:o})", dir.display(), meta.permissions().mode() & 0o7777))
    } else {
        None
    }
}

/// An artifact file this user owns, read whole; none for anything else (links, other owners).
fn read_own_file(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    // SAFETY: as above.
    let me = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() || meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
        return None;
    }
    std::fs::read(path).ok()
}

/// Writes `bytes` to `path` through a private temporary file and a rename, so a reader never
/// sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let written = f.write_all(bytes).and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

/// What a compile through the cache did, for tests and for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheUse {
    /// No cache was asked for.
    None,
    /// A verified artifact was loaded.
    Hit,
    /// Nothing usable was there: compiled and stored.
    Compiled,
    /// An artifact was there but failed verification: discarded, recompiled and stored again.
    Discarded(String),
    /// The directory is not safe to use: compiled in memory.
    Refused(String),
}

/// Compiles `bytes`, or loads the verified artifact a previous run compiled from the same bytes
/// with the same engine configuration.
/// `source` is the SHA-256 (hex) of `bytes`, which the caller has computed already.
pub fn load(engine: &Engine, bytes: &[u8], source: &str, dir: Option<&Path>) -> Result<(Component, CacheUse)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, bytes)?, CacheUse::None));
    };
    if let Some(why) = unsafe_dir(dir) {
        return Ok((Component::new(engine, bytes)?, CacheUse::Refused(why)));
    }
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let mut k = Sha256::new();
        k.update(source.as_bytes());
        k.update(h.finish().to_le_bytes());
        hex(&k.finalize())
    };
    let path = dir.join(format!("{key}.cwasm"));
    let record_path = dir.join(format!("{key}.cwasm.sha256"));
    let mut used = CacheUse::Compiled;
    if let Some(artifact) = read_own_file(&path) {
        let record = read_own_file(&record_path).and_then(|r| String::from_utf8(r).ok()).unwrap_or_default();
        let want = record_text(source, &artifact);
        if record == want {
            // SAFETY: these bytes are, digest for digest, the artifact this engine compiled from
            // exactly this component (recorded beside it when it was written, in a directory only
            // this user can write), and they are in memory, so they cannot change under the load.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok((component, CacheUse::Hit)),
                Err(e) => used = CacheUse::Discarded(format!("{}: {e}", path.display())),
            }
        } else if record.lines().any(|l| l == format!("source {source}")) && !record.contains("\nartifact-blake3 ") {
            // A record of the older form (the artifact's SHA-256): not a fault, just recompiled.
            used = CacheUse::Compiled;
        } else if !record.lines().any(|l| l == format!("source {source}")) {
            used = CacheUse::Discarded(format!("{}: compiled from another component (or its record is missing)", path.display()));
        } else {
            used = CacheUse::Discarded(format!(
                "{}: its bytes do not match their recorded SHA-256 record (the source's SHA-256, the artifact's BLAKE3)",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&record_path);
    }
    let artifact = engine.precompile_component(bytes)?;
    // A cache that cannot be written only costs the next start a compile. The artifact goes
    // first: a record never vouches for bytes that are not there yet.
    let record = record_text(source, &artifact);
    if write_atomically(&path, &artifact).is_ok() {
        let _ = write_atomically(&record_path, record.as_bytes());
    }
    // SAFETY: `artifact` was produced just now by this engine, and is in memory.
    Ok((unsafe { Component::deserialize(engine, &artifact) }?, used))
}
