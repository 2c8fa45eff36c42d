"""Nova's objects as numafit's documents (the README's JSON shapes, as plain Python data).

A scheduler reads every host's cells, so a host cell's fields are read from the object's own
storage (where oslo.versionedobjects keeps a set field: ``_get_attrname(name)``, private, so the
tests compare this reading with the fields' properties) rather than through each field's
property, which checks and may lazy-load on every access. A field never set is absent there.
Every set is written as a sorted list, as numafit reads CPU sets.
"""

from nova.virt import hardware
from oslo_versionedobjects.base import _get_attrname as get_attrname

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


_ID, _CPUSET, _PCPUSET, _MEMORY, _CPU_USAGE, _MEMORY_USAGE, _PINNED, _SIBLINGS, _MEMPAGES, _SOCKET, _NETWORK = (
    get_attrname(f) for f in ("id", "cpuset", "pcpuset", "memory", "cpu_usage", "memory_usage", "pinned_cpus",
                              "siblings", "mempages", "socket", "network_metadata"))
_SIZE_KB, _TOTAL, _USED, _RESERVED = (get_attrname(f) for f in ("size_kb", "total", "used", "reserved"))


def _field(obj, name, default=None):
    return getattr(obj, name) if obj.obj_attr_is_set(name) else default


def network(metadata):
    """A NetworkMetadata as numafit's ``network_metadata``."""
    return {
        "physnets": sorted(_field(metadata, "physnets", ())),
        "tunneled": bool(_field(metadata, "tunneled", False)),
    }


def _pages(pool):
    f = vars(pool)
    return {"size_kb": f[_SIZE_KB], "total": f[_TOTAL], "used": f.get(_USED, 0), "reserved": f.get(_RESERVED, 0)}


def host_cell(cell):
    f = vars(cell)
    doc = {
        "id": f[_ID],
        "cpuset": sorted(f.get(_CPUSET, ())),
        "pcpuset": sorted(f.get(_PCPUSET, ())),
        "memory": f[_MEMORY],
        "cpu_usage": f.get(_CPU_USAGE) or 0,
        "memory_usage": f.get(_MEMORY_USAGE) or 0,
        "pinned_cpus": sorted(f.get(_PINNED) or ()),
        "siblings": [sorted(s) for s in f.get(_SIBLINGS) or ()],
    }
    pages = f.get(_MEMPAGES)
    if pages:
        doc["mempages"] = [_pages(p) for p in pages]
    socket = f.get(_SOCKET)
    if socket is not None:
        doc["socket"] = socket
    metadata = f.get(_NETWORK)
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
