"""numafit's documents (the bench cases' host.json, request.json, limits.json) as the Nova objects
a scheduler holds: a HostState with its NUMATopology, PCI stats and ratios, and a RequestSpec
with its InstanceNUMATopology."""

import json
import os
import unittest
from pathlib import Path

from nova import objects
from nova.pci import stats
from nova.scheduler import host_manager
from nova.virt import hardware

objects.register_all()

ROOT = Path(__file__).resolve().parents[3]
CASES = sorted(p for p in (ROOT / "tests" / "fixtures" / "bench").iterdir() if (p / "host.json").exists())
# Nova's defaults, used where a case gives no limits.
DEFAULT_RATIOS = {"cpu_allocation_ratio": 16.0, "ram_allocation_ratio": 1.5}

PAGE_SIZES = {"small": hardware.MEMPAGES_SMALL, "large": hardware.MEMPAGES_LARGE, "any": hardware.MEMPAGES_ANY}


def cli():
    """The numafit binary the tests run: NUMAFIT_BIN (test.sh always sets it), else a local build."""
    if os.environ.get("NUMAFIT_BIN"):
        return os.environ["NUMAFIT_BIN"]
    for profile in ("debug", "release"):
        p = ROOT / "target" / profile / "numafit"
        if p.exists():
            return str(p)
    raise unittest.SkipTest("no numafit binary")


def read(case):
    host = json.loads((case / "host.json").read_text())
    request = json.loads((case / "request.json").read_text())
    limits_file = case / "limits.json"
    limits = json.loads(limits_file.read_text()) if limits_file.exists() else {}
    return host, request, {**DEFAULT_RATIOS, **limits}


def host_topology(doc):
    cells = []
    for c in doc["cells"]:
        cell = objects.NUMACell(
            id=c["id"], cpuset=set(c["cpuset"]), pcpuset=set(c["pcpuset"]), memory=c["memory"],
            cpu_usage=c.get("cpu_usage", 0), memory_usage=c.get("memory_usage", 0),
            pinned_cpus=set(c.get("pinned_cpus", [])), siblings=[set(s) for s in c.get("siblings", [])],
            mempages=[objects.NUMAPagesTopology(size_kb=p["size_kb"], total=p["total"], used=p.get("used", 0),
                                                reserved=p.get("reserved", 0)) for p in c.get("mempages", [])],
            socket=c.get("socket"))
        if "network_metadata" in c:
            cell.network_metadata = objects.NetworkMetadata(physnets=set(c["network_metadata"]["physnets"]),
                                                            tunneled=c["network_metadata"]["tunneled"])
        cells.append(cell)
    return objects.NUMATopology(cells=cells)


def host_state(doc, ratios, name="host1"):
    topology = host_topology(doc)
    hs = host_manager.HostState(name, f"{name}-node", "cell1")
    hs.numa_topology = topology
    hs.pci_stats = stats.PciDeviceStats(topology)
    hs.cpu_allocation_ratio = ratios["cpu_allocation_ratio"]
    hs.ram_allocation_ratio = ratios["ram_allocation_ratio"]
    hs.allocation_candidates = [{"mappings": {}}]
    return hs


def instance_topology(doc):
    cells = [
        objects.InstanceNUMACell(
            id=i, cpuset=set(c["cpuset"]), pcpuset=set(c["pcpuset"]), memory=c["memory"],
            pagesize=PAGE_SIZES.get(c["pagesize"], c["pagesize"]),
            cpu_policy=doc.get("cpu_policy"), cpu_thread_policy=doc.get("cpu_thread_policy"))
        for i, c in enumerate(doc["cells"])
    ]
    return objects.InstanceNUMATopology(cells=cells, emulator_threads_policy=doc.get("emulator_threads_policy"))


def request_spec(doc):
    extra_specs = {}
    if doc.get("cpu_policy"):
        extra_specs["hw:cpu_policy"] = doc["cpu_policy"]
    if doc.get("cpu_thread_policy"):
        extra_specs["hw:cpu_thread_policy"] = doc["cpu_thread_policy"]
    return objects.RequestSpec(
        numa_topology=instance_topology(doc), pci_requests=None, instance_uuid="00000000-0000-0000-0000-000000000001",
        flavor=objects.Flavor(extra_specs=extra_specs), image=objects.ImageMeta(properties=objects.ImageMetaProps()))


def host_with_devices_on_both_nodes(uuids, candidates):
    """Two cells of 4 CPUs and 2 GiB, cell 0's memory all used; one device in each cell, each
    its own resource provider (rp_0 on cell 0, rp_1 on cell 1)."""
    topology = objects.NUMATopology(cells=[
        objects.NUMACell(id=i, cpuset=set(range(4 * i, 4 * i + 4)), pcpuset=set(), memory=2048,
                         cpu_usage=0, memory_usage=2048 if i == 0 else 0, pinned_cpus=set(), mempages=[],
                         siblings=[{c} for c in range(4 * i, 4 * i + 4)], socket=0)
        for i in range(2)
    ])
    pools = objects.PciDevicePoolList(objects=[
        objects.PciDevicePool(vendor_id="8086", product_id="154d", numa_node=i, count=1,
                              tags={"dev_type": "type-PCI", "rp_uuid": getattr(uuids, f"rp_{i}")})
        for i in range(2)
    ])
    return _fake_host_state({
        "numa_topology": topology,
        "pci_stats": stats.PciDeviceStats(topology, stats=pools),
        "cpu_allocation_ratio": 16.0,
        "ram_allocation_ratio": 1.0,
        "allocation_candidates": candidates,
    })


def _fake_host_state(values):
    hs = host_manager.HostState("host1", "node1", "cell1")
    for k, v in values.items():
        setattr(hs, k, v)
    return hs


def spec_with_device(request_id):
    """A 1-cell shared guest with one PCI device (flavor alias "nic", NUMA policy required)."""
    spec = objects.RequestSpec(
        numa_topology=objects.InstanceNUMATopology(cells=[
            objects.InstanceNUMACell(id=0, cpuset={0}, pcpuset=set(), memory=512)]),
        pci_requests=objects.InstancePCIRequests(requests=[objects.InstancePCIRequest(
            count=1, alias_name="nic", request_id=request_id, numa_policy="required",
            spec=[{"vendor_id": "8086", "product_id": "154d"}])]),
        instance_uuid="00000000-0000-0000-0000-000000000002",
        flavor=objects.Flavor(extra_specs={}), image=objects.ImageMeta(properties=objects.ImageMetaProps()))
    return spec
