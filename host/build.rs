//! Builds the default `nova` policy from this workspace's `plugin/` crate into a WebAssembly
//! component and hands it to the host crate to embed, so `numafit` works with no flags.
//!
//! The plugin is compiled for `wasm32-unknown-unknown` (no WASI imports) by a nested cargo in its
//! own target directory (the outer build holds the lock on the normal one), then wrapped into a
//! component with `wit-component`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let host_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = host_dir.parent().context("host crate has no parent directory")?;
    let plugin_dir = root.join("plugin");
    for watched in ["plugin/src", "plugin/Cargo.toml", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let target_dir = env::var_os("NUMAFIT_PLUGIN_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target").join("plugin-wasm"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--lib", "--locked", "--target", "wasm32-unknown-unknown", "--profile", "wasm"])
        .arg("--manifest-path")
        .arg(plugin_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
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

    let module_path = target_dir.join("wasm32-unknown-unknown/wasm/numafit_plugin.wasm");
    let component = componentize(&module_path)?;
    let out = PathBuf::from(env::var("OUT_DIR")?).join("nova.wasm");
    std::fs::write(&out, component).with_context(|| format!("writing {}", out.display()))?;
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
