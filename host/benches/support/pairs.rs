//! Two calls timed in pairs, back to back: on this VM, whose speed drifts by ±20% within minutes,
//! a ratio read from two runs minutes apart says little; a pair's two halves see the same drift.
#![allow(dead_code)]

/// `rounds` pairs of a native and a component call, timed back to back, each going first in every
/// other pair (so neither always finds the caches the other left): their mean times and the
/// distribution of the ratio per pair.
pub fn in_pairs(rounds: usize, mut native: impl FnMut(), mut component: impl FnMut()) -> String {
    in_pairs_named(rounds, "component/native", &mut native, &mut component)
}

/// `in_pairs` of any two calls, the ratio (second over first) named `ratio`.
pub fn in_pairs_named(rounds: usize, ratio: &str, first: &mut dyn FnMut(), second: &mut dyn FnMut()) -> String {
    let timed = |call: &mut dyn FnMut()| {
        let started = std::time::Instant::now();
        call();
        started.elapsed().as_secs_f64()
    };
    let (mut ratios, mut first_total, mut second_total) = (Vec::with_capacity(rounds), 0.0, 0.0);
    for pair in 0..rounds {
        let (a, b) = if pair % 2 == 0 {
            let a = timed(first);
            (a, timed(second))
        } else {
            let b = timed(second);
            (timed(first), b)
        };
        ratios.push(b / a);
        (first_total, second_total) = (first_total + a, second_total + b);
    }
    ratios.sort_by(f64::total_cmp);
    format!(
        "{:.3} and {:.3} ms on average; {ratio} per pair: median {:.2}, quartiles {:.2}-{:.2}, range {:.2}-{:.2}",
        first_total / rounds as f64 * 1e3,
        second_total / rounds as f64 * 1e3,
        ratios[rounds / 2],
        ratios[rounds / 4],
        ratios[3 * rounds / 4],
        ratios[0],
        ratios[rounds - 1],
    )
}
