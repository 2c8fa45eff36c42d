"""filter_all over 1,000 HostStates per benchmark case: NUMAFitFilter against Nova's own
NUMATopologyFilter, side by side in one run, per host, with NUMAFitFilter's cost split.

    python integrations/nova/bench/filter_all.py [--hosts 1000] [--rounds 5] [CASE-PREFIX ...]

Each case's host.json becomes HOSTS HostStates, each with Nova objects of its own; its
request.json the RequestSpec. Reported per host, median over ROUNDS passes:
- nova: NUMATopologyFilter.filter_all (not run on 11-14: Nova's permutation walk gives no answer);
- cold: NUMAFitFilter.filter_all on hosts it has not seen (every host changed since the last
  request: read, converted and loaded into the policy, then fitted);
- warm: the next request on the same hosts (unchanged hosts come from the cache);
and the split of a cold pass: reading Nova's objects into documents, converting them into the
module (numafit.Host), loading them into the policy with the first fit, the component call on
loaded hosts, and the filter's own Python around them (the rest of a warm pass). The garbage
collector runs between passes, not during one, on both sides.
Build the module optimised first (`pip install ./integrations/python`).
"""

import argparse
import gc
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numafit  # noqa: E402
import nova_objects as n  # noqa: E402
from nova.scheduler.filters.numa_topology_filter import NUMATopologyFilter  # noqa: E402

from numafit_nova import NUMAFitFilter, convert  # noqa: E402

NOVA_ENDLESS = ("11", "12", "13", "14")
DEFAULT_CASES = ("01", "02", "04", "07", "10", "14")


def fresh(states):
    for hs in states:
        hs.allocation_candidates = [{"mappings": {}}]
        hs.limits = {}
    return states


def timed(f, count):
    """Microseconds per host of one pass. The collector runs before, not during, a pass: the
    host states just built would otherwise make a full collection land in whichever pass comes
    next (Nova's or numafit's), by luck."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        f()
        return (time.perf_counter() - start) / count * 1e6
    finally:
        gc.enable()


def median(xs):
    return statistics.median(xs)


def run_case(c, hosts, rounds):
    host, request, ratios = n.read(c)
    spec = n.request_spec(request)
    prefix = c.name[:2]
    row = {"case": c.name}

    if prefix not in NOVA_ENDLESS:
        nova = NUMATopologyFilter()
        states = [n.host_state(host, ratios, name=f"h{i}") for i in range(hosts)]
        row["nova"] = median([timed(lambda: list(nova.filter_all(fresh(states), spec)), hosts) for _ in range(rounds)])
        row["nova_passed"] = len(list(nova.filter_all(fresh(states), spec)))

    ours = NUMAFitFilter()
    cold, warm = [], []
    for _ in range(rounds):
        states = [n.host_state(host, ratios, name=f"h{i}") for i in range(hosts)]  # all new objects
        cold.append(timed(lambda: ours.filter_all(fresh(states), spec), hosts))
        warm.append(timed(lambda: ours.filter_all(fresh(states), spec), hosts))
    row["cold"], row["warm"] = median(cold), median(warm)
    row["passed"] = len(ours.filter_all(fresh(states), spec))

    # The cold pass's parts, each over the same hosts.
    policy = ours.watched.policy
    document = convert.request_document(spec.numa_topology)
    limits = convert.limits_document(ratios["cpu_allocation_ratio"], ratios["ram_allocation_ratio"])
    read, into, load, call = [], [], [], []
    for _ in range(rounds):
        states = [n.host_state(host, ratios, name=f"h{i}") for i in range(hosts)]
        docs = []
        read.append(timed(lambda: docs.extend(convert.host_document(hs.numa_topology, convert.pci_pools(hs.pci_stats))
                                               for hs in states), hosts))
        loaded = []
        into.append(timed(lambda: loaded.extend(numafit.Host(d) for d in docs), hosts))
        brief = {"placements": False, "reasons": False}  # as the filter asks, debug logging off
        load.append(timed(lambda: policy.fit_many(loaded, document, limits, **brief), hosts))
        call.append(timed(lambda: policy.fit_many(loaded, document, limits, **brief), hosts))
    row["read"], row["into"], row["call"] = median(read), median(into), median(call)
    row["load"] = median(load) - row["call"]
    row["python"] = row["warm"] - row["call"]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("cases", nargs="*", default=DEFAULT_CASES)
    args = ap.parse_args()
    logging.getLogger("nova.virt.hardware").setLevel(logging.ERROR)

    print(f"filter_all over {args.hosts} HostStates, median of {args.rounds} passes, microseconds per host")
    print("| case | Nova | numafit cold | numafit warm | Nova/cold | Nova/warm | passed (Nova, numafit) "
          "| read Nova objects | into the module | load into policy | component call | filter's Python |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for prefix in args.cases:
        c = next(c for c in n.CASES if c.name.startswith(prefix))
        r = run_case(c, args.hosts, args.rounds)
        nova = r.get("nova")
        ratio = (lambda x: f"{nova / x:.0f}x") if nova else (lambda x: "-")
        print(f"| {r['case']} | {f'{nova:.1f}' if nova else 'no answer'} | {r['cold']:.1f} | {r['warm']:.1f} "
              f"| {ratio(r['cold'])} | {ratio(r['warm'])} | {r.get('nova_passed', '-')}, {r['passed']} "
              f"| {r['read']:.1f} | {r['into']:.1f} | {r['load']:.1f} | {r['call']:.1f} | {r['python']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
