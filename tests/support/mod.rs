//! Shared helpers of the end-to-end tests: paths, running the `numafit` binary, and building the
//! hostile test plugin into a component.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod apiserver;
pub mod http;

use numafit_host::formats::{self, HostJson, LimitsJson, RequestInput, RequestJson};
use numafit_host::runtime::wit;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

pub fn example(name: &str) -> PathBuf {
    root().join("examples").join(name)
}

/// Bench case folders (copies of shared/bench), sorted.
pub fn bench_cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture("bench"))
        .expect("bench fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// Runs the `numafit` binary with a private compile cache.
pub fn numafit(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join(format!("numafit-test-cache-{}", std::process::id()));
    Command::new(env!("CARGO_BIN_EXE_numafit")).args(args).env("NUMAFIT_CACHE_DIR", cache).output().expect("numafit runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("numafit-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Builds a crate for wasm32 (`cargo build` with `args`, in its own target directory) and wraps the
/// module at `module` (relative to that directory) into a component.
fn build_component(manifest: &Path, target: &Path, args: &[&str], module: &str) -> Vec<u8> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--locked", "--target", "wasm32-unknown-unknown"])
        .args(args)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {} failed", manifest.display());
    let module = std::fs::read(target.join("wasm32-unknown-unknown").join(module)).expect("wasm module");
    wit_component::ComponentEncoder::default().module(&module).expect("module").validate(true).encode().expect("component")
}

/// The default policy built against contract 0.2 (the plugin crate's `contract-0-2` feature).
pub fn nova_built_against_contract_0_2() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| nova_built_with("contract-0-2"))
}

/// The default policy built against contract 0.4 (the plugin crate's `contract-0-4` feature).
pub fn nova_built_against_contract_0_4() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| nova_built_with("contract-0-4"))
}

/// The default policy built with the plugin crate's `feature`, in a target directory of its own.
fn nova_built_with(feature: &str) -> Vec<u8> {
    build_component(
        &root().join("plugin/Cargo.toml"),
        &root().join(format!("target/plugin-{feature}")),
        &["--lib", "--profile", "wasm", "--features", feature],
        "wasm/numafit_plugin.wasm",
    )
}

/// The hostile plugin (tests/hostile-plugin) built for wasm32 and wrapped into a component.
pub fn hostile_plugin() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        build_component(
            &root().join("tests/hostile-plugin/Cargo.toml"),
            &root().join("target/hostile-plugin"),
            &["--release"],
            "release/hostile_plugin.wasm",
        )
    })
}

/// The faults of tests/misbehaving-policy, each a feature of its own build.
pub const FAULTS: &[&str] = &["endless-loop", "memory-bomb", "panic", "foreign-cell", "double-pin", "overcommit", "slow"];

/// The misbehaving policy with `fault` always ("on-request": only for the request that asks,
/// guest cell 0 of 7001..=7007 MiB, so it passes the self-test). All builds are made once, in
/// turn, in one target directory.
pub fn misbehaving(fault: &str) -> &'static [u8] {
    static BUILDS: OnceLock<std::collections::BTreeMap<String, Vec<u8>>> = OnceLock::new();
    let builds = BUILDS.get_or_init(|| {
        let manifest = root().join("tests/misbehaving-policy/Cargo.toml");
        let target = root().join("target/misbehaving-policy");
        let mut builds = std::collections::BTreeMap::new();
        builds.insert("on-request".to_string(), build_component(&manifest, &target, &["--release"], "release/misbehaving_policy.wasm"));
        for f in FAULTS {
            builds.insert(
                f.to_string(),
                build_component(&manifest, &target, &["--release", "--features", f], "release/misbehaving_policy.wasm"),
            );
        }
        builds
    });
    builds.get(fault).unwrap_or_else(|| panic!("no misbehaving build {fault}"))
}

/// Each pinned CPU in the ledger under `state`, with the instances pinning it.
pub fn pins(state: &Path) -> std::collections::BTreeMap<u32, Vec<String>> {
    let mut pins: std::collections::BTreeMap<u32, Vec<String>> = std::collections::BTreeMap::new();
    for c in numafit_host::ledger::Ledger::open(state).expect("the ledger opens").claims().expect("claims read") {
        for cell in &c.placement.cells {
            for &cpu in cell.cpu_pinning.values() {
                pins.entry(cpu).or_default().push(c.instance.clone());
            }
        }
    }
    pins
}

/// The crash-storm invariant after a round of SIGKILLs: the ledger under `state` opens, no CPU
/// is pinned twice, every claim derives on `base`, every acknowledged claim no release was tried
/// for is present, and every acknowledged release is gone. Returns the instances present.
pub fn assert_storm_survived(
    round: u64,
    state: &Path,
    base: &numafit_plugin::HostTopology,
    claimed: &std::collections::BTreeSet<String>,
    release_tried: &std::collections::BTreeSet<String>,
    released: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    let claims = numafit_host::ledger::Ledger::open(state).expect("the ledger opens after SIGKILLs").claims().unwrap();
    let present: std::collections::BTreeSet<String> = claims.iter().map(|c| c.instance.clone()).collect();
    let twice: Vec<_> = pins(state).into_iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(twice.is_empty(), "round {round}: CPUs pinned twice: {twice:?}");
    let admit = |h: &numafit_plugin::HostTopology, p: &numafit_plugin::Placement| numafit_host::verify::admit(h, p, None);
    let derived = numafit_host::ledger::derive(base, &claims, &admit);
    assert!(derived.lost.is_empty(), "round {round}: claims that do not derive: {:?}", derived.lost);
    for id in claimed.difference(release_tried) {
        assert!(present.contains(id), "round {round}: acknowledged claim {id} is gone");
    }
    for id in released {
        assert!(!present.contains(id), "round {round}: acknowledged release {id} is back");
    }
    present
}

/// A bench case in the contract's types, as the CLI reads it.
pub fn load_case(dir: &Path) -> (wit::Host, wit::Request, wit::Limits) {
    let host: HostJson = formats::read_json(&dir.join("host.json")).expect("host");
    let req: RequestJson = formats::read_json(&dir.join("request.json")).expect("request");
    let RequestInput::Explicit(request) = req.to_input("request.json").expect("valid") else { panic!("bench requests are explicit") };
    let limits_path = dir.join("limits.json");
    let limits = if limits_path.exists() { formats::read_json::<LimitsJson>(&limits_path).expect("limits") } else { LimitsJson::default() };
    (host.to_wit("host.json").expect("valid host"), request, limits.to_wit("limits.json", wit::Strategy::Spread).expect("limits"))
}
