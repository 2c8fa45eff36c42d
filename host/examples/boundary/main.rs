//! What wasmtime's component boundary alone costs per call, by the shape of the call: numbers in
//! and out, two borrowed handles, a returned list, contract 0.5's `fit-packed` shape and `info`'s.
//! Each export of the guest does next to nothing, so the time is the boundary's; set beside
//! `cargo bench --bench fit -- '^call/'`, it shows how much of a loaded fit no policy code can
//! remove. The engine is configured as the runtime's (fuel and epoch interruption on, a fresh
//! fuel budget and deadline set before every call, as `Plugin::call` does).
//!
//! ```sh
//! cargo build --release --target wasm32-unknown-unknown --manifest-path host/examples/boundary/guest/Cargo.toml \
//!     --target-dir target/boundary-guest
//! cargo run --release -p numafit --example boundary
//! ```

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Config, Engine, Store};

wasmtime::component::bindgen!({ path: "examples/boundary/guest/wit", world: "boundary" });

const GUEST: &str = "../target/boundary-guest/wasm32-unknown-unknown/release/numafit_boundary_guest.wasm";
const CALLS: u32 = 200_000;
const ROUNDS: usize = 9;
const FUEL: u64 = 1_000_000;

fn main() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GUEST);
    let module =
        std::fs::read(&path).with_context(|| format!("reading {} (build the guest first: see this example's doc)", path.display()))?;
    let bytes = wit_component::ComponentEncoder::default().module(&module)?.validate(true).encode()?;
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;
    let component = Component::new(&engine, &bytes)?;
    let mut store = Store::new(&engine, ());
    store.set_fuel(FUEL)?;
    store.set_epoch_deadline(1 << 20);
    let guest = Boundary::instantiate(&mut store, &component, &Linker::new(&engine))?;
    let shapes = guest.numafit_boundary_shapes();
    let a: ResourceAny = shapes.thing().call_constructor(&mut store)?;
    let b: ResourceAny = shapes.thing().call_constructor(&mut store)?;

    // Each call as the runtime makes it: a fresh budget and deadline, then the export.
    let mut time = |call: &mut dyn FnMut(&mut Store<()>, u32) -> wasmtime::Result<u64>| -> Result<f64> {
        let started = Instant::now();
        let mut sum = 0u64;
        for i in 0..CALLS {
            store.set_fuel(FUEL)?;
            store.set_epoch_deadline(1 << 20);
            sum = sum.wrapping_add(call(&mut store, i)?);
        }
        std::hint::black_box(sum);
        Ok(started.elapsed().as_nanos() as f64 / f64::from(CALLS))
    };
    let names = ["scalar", "borrows", "words", "packed-shape", "info-shape"];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    // Rounds interleave the shapes, so this VM's drift moves them alike.
    for _ in 0..ROUNDS {
        runs[0].push(time(&mut |s, i| shapes.call_scalar(s, i, 3))?);
        runs[1].push(time(&mut |s, _| shapes.call_borrows(s, a, b))?);
        runs[2].push(time(&mut |s, i| shapes.call_words(s, i, 3).map(|w| w.len() as u64))?);
        runs[3].push(time(&mut |s, _| shapes.call_packed_shape(s, a, b).map(|r| r.map_or(0, |w| w.len() as u64)))?);
        runs[4].push(time(&mut |s, _| shapes.call_info_shape(s).map(|(n, ..)| n.len() as u64))?);
    }
    println!("| call shape | ns per call (median of {ROUNDS} rounds of {CALLS}) | range |");
    println!("|---|---|---|");
    for (name, mut times) in names.iter().zip(runs) {
        times.sort_by(f64::total_cmp);
        println!("| {name} | {:.0} | {:.0}-{:.0} |", times[times.len() / 2], times[0], times[times.len() - 1]);
    }
    Ok(())
}
