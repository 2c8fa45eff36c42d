#!/usr/bin/env python3
"""Prints the benchmark table from criterion's results: numafit through the component on a loaded
host with a loaded request and natively on the same prepared objects (median per call), their
ratio, Nova 34.0.0's reference median (shared/bench/README.md), how many times faster the
component is than Nova, then the same call with the request sent each time, the per-host cost
when one call asks 64 loaded hosts (a scheduler's filter pass), the stateless call (host lowered
and modelled every time), and the cost of loading the host once.
Run after `cargo bench -p numafit --bench fit`."""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRIT = ROOT / "target" / "criterion"
# Nova's median per call (µs) on this machine class, low end of the published range; None where
# Nova gives no answer (wrong acceptance, or no answer within 90 s).
NOVA = {
    "01-2cell-host-2cell-dedicated": (126, "126-146"),
    "02-8cell-legacy-4cell-isolate": (346, "346-413"),
    "03-8cell-4cell-isolate": (1930, "1930-2080 (refuses: bug 1889633)"),
    "04-8cell-4cell-prefer": (344, "344-390"),
    "05-8cell-4cell-require": (390, "about 390"),
    "06-8cell-4cell-prefer-emulator-2M": (373, "373-392"),
    "07-8cell-4cell-too-big": (1710, "1710-1920"),
    "08-8cell-4cell-last-fits-nowhere": (None, "wrongly accepts (bug B1)"),
    "09-8cell-7cell-last-fits-nowhere": (None, "walks 40,320 permutations, wrongly accepts"),
    "10-8cell-4cell-shared-limits": (76, "76-88"),
    "11-16cell-8cell-last-fits-nowhere": (None, "518,918,400 permutations"),
    "12-64cell-16cell-last-fits-nowhere": (None, "~4.9e27 permutations"),
    "13-64cell-16cell-fits": (None, "first permutation"),
    "14-16cell-8cell-too-big": (None, "no answer after 90 s"),
}


def median_us(case, path, group="fit"):
    f = CRIT / f"{group}_{case}" / path / "new" / "estimates.json"
    if not f.exists():
        f = CRIT / f"{group}/{case}" / path / "new" / "estimates.json"
    if not f.exists():
        return None
    return json.loads(f.read_text())["median"]["point_estimate"] / 1000.0


def main():
    rows = []
    for case, (nova, nova_text) in NOVA.items():
        comp, nat = median_us(case, "component"), median_us(case, "native")
        if comp is None or nat is None:
            print(f"missing results for {case}: run cargo bench -p numafit --bench fit", file=sys.stderr)
            continue
        speedup = f"{nova / comp:,.0f}x" if nova else "-"
        sent = median_us(case, "component-request-sent")
        stateless, load = median_us(case, "component-stateless"), median_us(case, "component", "load")
        batch = median_us(case, "component", "fit-batch")
        batch = None if batch is None else batch / 64  # criterion times the whole 64-host call
        extra = " | ".join("-" if v is None else f"{v:,.2f}" for v in (sent, batch, stateless, load))
        rows.append(f"| {case} | {comp:,.2f} | {nat:,.2f} | {comp / nat:.2f} | {nova_text} | {speedup} | {extra} |")
    print("| case | component µs | native µs | component/native | Nova µs | Nova/component "
          "| request sent each call µs | per host in a 64-host call µs | stateless component µs | load µs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


main()
