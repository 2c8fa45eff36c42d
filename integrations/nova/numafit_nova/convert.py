"""Nova's objects as numafit's documents (the README's JSON shapes, as plain Python data).

Nova objects raise on a field that was never set, so optional fields are read through
``obj_attr_is_set``; every set is written as a sorted list, as numafit reads CPU sets.
"""

from nova.virt import hardware

# Nova writes page size constraints into an instance cell as negative numbers.
PAGE_SIZE_NAMES = {
    hardware.MEMPAGES_SMALL: "small",
    hardware.MEMPAGES_LARGE: "large",
    hardware.MEMPAGES_ANY: "any",
}

# Keys of a PCI pool that are not device tags: the pool's own bookkeeping (``devices`` holds
# PciDevice objects) and the ones Nova's PciDeviceStats ignores when matching a request.
POOL_BOOKKEEPING = frozenset(("count", "numa_node", "devices", "rp_uuid", "resource_class", "traits"))
# Keys of a PCI request's spec that Nova matches elsewhere (placement) rather than on pool tags.
SPEC_MATCHED_ELSEWHERE = frozenset(("rp_uuids", "resource_class", "traits"))


def _field(obj, name, default=None):
    return getattr(obj, name) if obj.obj_attr_is_set(name) else default


def network(metadata):
    """A NetworkMetadata as numafit's ``network_metadata``."""
    return {
        "physnets": sorted(_field(metadata, "physnets", ())),
        "tunneled": bool(_field(metadata, "tunneled", False)),
    }


def host_cell(cell):
    doc = {
        "id": cell.id,
        "cpuset": sorted(cell.cpuset),
        "pcpuset": sorted(_field(cell, "pcpuset", ())),
        "memory": cell.memory,
        "cpu_usage": _field(cell, "cpu_usage", 0) or 0,
        "memory_usage": _field(cell, "memory_usage", 0) or 0,
        "pinned_cpus": sorted(_field(cell, "pinned_cpus", ()) or ()),
        "siblings": [sorted(s) for s in _field(cell, "siblings", ()) or ()],
    }
    pages = _field(cell, "mempages")
    if pages:
        doc["mempages"] = [
            {"size_kb": p.size_kb, "total": p.total, "used": _field(p, "used", 0), "reserved": _field(p, "reserved", 0)}
            for p in pages
        ]
    socket = _field(cell, "socket")
    if socket is not None:
        doc["socket"] = socket
    metadata = _field(cell, "network_metadata")
    if metadata is not None:
        doc["network_metadata"] = network(metadata)
    return doc


def pci_pool(pool):
    doc = {"numa_node": pool.get("numa_node"), "count": pool["count"]}
    for key, value in pool.items():
        if key not in POOL_BOOKKEEPING and value is not None:
            doc[key] = str(value)
    return doc


def pci_pools(pci_stats):
    """The host's PCI pools (PciDeviceStats.pools); empty without PCI stats."""
    if pci_stats is None:
        return []
    return list(pci_stats.pools)


def host_document(topology, pools=()):
    """A host NUMATopology (and the PCI pools to offer) as numafit's HOST document."""
    doc = {"cells": [host_cell(c) for c in topology.cells]}
    if pools:
        doc["pci_pools"] = [pci_pool(p) for p in pools]
    return doc


def _page_size(pagesize):
    if pagesize is None:
        return None
    return PAGE_SIZE_NAMES.get(pagesize, pagesize)


def pci_request(request):
    return {
        "count": request.count,
        "spec": [{k: v for k, v in spec.items() if k not in SPEC_MATCHED_ELSEWHERE} for spec in request.spec],
        "numa_policy": _field(request, "numa_policy"),
    }


def request_document(topology, pci_requests=()):
    """An InstanceNUMATopology (as Nova built it from flavor and image) and the instance's PCI
    requests as numafit's REQUEST document with explicit cells."""
    cells = topology.cells
    doc = {
        "cells": [
            {
                "cpuset": sorted(c.cpuset),
                "pcpuset": sorted(_field(c, "pcpuset", ())),
                "memory": c.memory,
                "pagesize": _page_size(_field(c, "pagesize")),
            }
            for c in cells
        ],
        # Nova keeps the CPU and thread policies on every cell, all equal (it builds them so).
        "cpu_policy": _field(cells[0], "cpu_policy") if cells else None,
        "cpu_thread_policy": _field(cells[0], "cpu_thread_policy") if cells else None,
        "emulator_threads_policy": _field(topology, "emulator_threads_policy"),
    }
    if pci_requests:
        doc["pci_requests"] = [pci_request(r) for r in pci_requests]
    return doc


def limits_document(cpu_allocation_ratio, ram_allocation_ratio, network_metadata=None):
    doc = {}
    if cpu_allocation_ratio is not None:
        doc["cpu_allocation_ratio"] = float(cpu_allocation_ratio)
    if ram_allocation_ratio is not None:
        doc["ram_allocation_ratio"] = float(ram_allocation_ratio)
    if network_metadata is not None:
        doc["network_metadata"] = network(network_metadata)
    return doc
