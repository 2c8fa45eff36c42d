"""Nova's own `numa_fit_instance_to_host`, per benchmark case, on this machine: the other side of
`cargo bench --bench fit` (whose `fit/<case>/component` is numafit's call for the same case).

    python integrations/nova/bench/fit_one.py [--calls 2000] [--rounds 7] [CASE-PREFIX ...]

Each case's host.json, request.json and limits.json become Nova objects once (a NUMATopology, an
InstanceNUMATopology and NUMATopologyLimits with the case's ratios, Nova's defaults where it gives
none); each round times CALLS calls on them, and the median round is reported in µs per call, with
whether Nova found a fit. Cases 11-14 are left out unless named: Nova's permutation walk does not
end on them.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import nova_objects as n  # noqa: E402
from nova import objects  # noqa: E402
from nova.virt import hardware  # noqa: E402

ENDLESS = ("11", "12", "13", "14")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    print("| case | Nova µs per call (median of rounds) | rounds | Nova fits |")
    print("|---|---|---|---|")
    for case in n.CASES:
        wanted = any(case.name.startswith(p) for p in args.cases) if args.cases else not case.name.startswith(ENDLESS)
        if not wanted:
            continue
        host, request, ratios = n.read(case)
        topology, instance = n.host_topology(host), n.instance_topology(request)
        limits = objects.NUMATopologyLimits(
            cpu_allocation_ratio=ratios["cpu_allocation_ratio"], ram_allocation_ratio=ratios["ram_allocation_ratio"])
        rounds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(args.calls):
                hardware.numa_fit_instance_to_host(topology, instance, limits)
            rounds.append((time.perf_counter() - started) / args.calls * 1e6)
        fits = hardware.numa_fit_instance_to_host(topology, instance, limits) is not None
        spread = f"{min(rounds):.1f}-{max(rounds):.1f}"
        print(f"| {case.name} | {statistics.median(rounds):.1f} | {spread} | {fits} |")


if __name__ == "__main__":
    main()
