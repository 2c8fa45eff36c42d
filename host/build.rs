//! Builds the policies of this workspace's `plugin/` crate (`nova`, the default, and `balanced`)
//! into WebAssembly components and hands them to the host crate to embed, so `numafit` works with
//! no flags and `--policy balanced` needs no file.
//!
//! The plugin is compiled for `wasm32-unknown-unknown` (no WASI imports) by a nested cargo in its
//! own target directory (the outer build holds the lock on the normal one), then wrapped into a
//! component with `wit-component`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

fn main() -> Result<()> {
    let host_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = host_dir.parent().context("host crate has no parent directory")?;
    let plugin_dir = root.join("plugin");
    for watched in ["plugin/src", "plugin/Cargo.toml", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let target_root =
        env::var_os("NUMAFIT_PLUGIN_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target").join("plugin-wasm"));
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // One component per policy, each from its own target directory so neither rebuild evicts the other.
    for (policy, features) in [("nova", None), ("balanced", Some("policy-balanced"))] {
        let target_dir = target_root.join(policy);
        build_plugin(&plugin_dir, &target_dir, features)?;
        let module_path = target_dir.join("wasm32-unknown-unknown/wasm/numafit_plugin.wasm");
        let out = out_dir.join(format!("{policy}.wasm"));
        let component = componentize(&module_path)?;
        std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
        // Its SHA-256, so a process does not hash the embedded bytes at every start.
        let digest: String = Sha256::digest(&component).iter().map(|b| format!("{b:02x}")).collect();
        let out = out_dir.join(format!("{policy}.wasm.sha256"));
        std::fs::write(&out, digest).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn build_plugin(plugin_dir: &Path, target_dir: &Path, features: Option<&str>) -> Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--lib", "--locked", "--target", "wasm32-unknown-unknown", "--profile", "wasm"])
        .arg("--manifest-path")
        .arg(plugin_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if let Some(f) = features {
        build.args(["--features", f]);
    }
    // Flags meant for the host (coverage, sanitizers, a host target) must not reach the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        build.env_remove(var);
    }
    let status = build.status().context("running cargo to build the plugin for wasm32-unknown-unknown")?;
    if !status.success() {
        bail!(
            "building the plugin for wasm32-unknown-unknown failed (is the target installed? `rustup target add wasm32-unknown-unknown`)"
        );
    }
    Ok(())
}

fn componentize(module_path: &Path) -> Result<Vec<u8>> {
    let module = std::fs::read(module_path).with_context(|| format!("reading {}", module_path.display()))?;
    wit_component::ComponentEncoder::default()
        .module(&module)
        .context("reading the plugin's core module")?
        .validate(true)
        .encode()
        .context("wrapping the plugin module into a component")
}
