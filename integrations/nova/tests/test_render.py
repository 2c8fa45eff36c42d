"""`numafit render --format libvirt` against Nova's own libvirt driver: for the placements numafit
makes on the bench hosts (both policies), Nova's `_get_guest_numa_config` and
`_get_guest_memory_backing_config`, run on the same host topology and the same instance
topology, write the same `<cputune>`, `<numatune>`, `<cpu><numa>` and `<memoryBacking>`
elements, attribute for attribute and child for child."""

import json
import subprocess
import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

from nova import objects
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver

import nova.conf
import nova_objects as n
from nova_objects import cli

CONF = nova.conf.CONF
D = libvirt_driver.LibvirtDriver
RENDER = n.ROOT / "tests" / "fixtures" / "render"


class NovaLibvirtNUMA:
    """The methods of Nova's LibvirtDriver that write a guest's NUMA configuration, on a recorded
    host instead of a libvirt connection."""

    _get_guest_numa_config = D._get_guest_numa_config
    _get_cpu_numa_config_from_instance = D._get_cpu_numa_config_from_instance
    _wants_hugepages = D._wants_hugepages
    _get_cell_pairs = D._get_cell_pairs
    _get_pin_cpuset = D._get_pin_cpuset
    _get_emulatorpin_cpuset = D._get_emulatorpin_cpuset
    _get_guest_iothread = D._get_guest_iothread
    _get_guest_memory_backing_config = D._get_guest_memory_backing_config
    _get_memory_backing_hugepages_support = D._get_memory_backing_hugepages_support

    def __init__(self, topology):
        self.topology = topology
        online = set().union(*(c.cpuset | c.pcpuset for c in topology.cells))
        self._host = type("Host", (), {"get_online_cpus": staticmethod(lambda: online)})()

    def _get_vcpu_available(self):
        # Only a guest without NUMA topology uses it (its <vcpu cpuset>); numafit renders none.
        return set().union(*(c.cpuset for c in self.topology.cells))

    def _has_numa_support(self):
        return True

    def _get_host_numa_topology(self):
        return self.topology


def instance_topology(placement):
    """The InstanceNUMATopology Nova holds for a placement after its claim."""
    cells = []
    for c in sorted(placement["cells"], key=lambda c: c["guest_cell"]):
        cell = objects.InstanceNUMACell(
            id=c["host_cell"], cpuset=set(c["cpuset"]), pcpuset=set(c["pcpuset"]), memory=c["memory"],
            pagesize=c["pagesize_kb"], cpu_policy=placement["cpu_policy"],
            cpu_thread_policy=placement["cpu_thread_policy"],
            cpu_pinning_raw=dict(c["cpu_pinning"]) or None,
            cpuset_reserved=set(c["cpuset_reserved"]) if c["cpuset_reserved"] is not None else None)
        cells.append(cell)
    return objects.InstanceNUMATopology(cells=cells, emulator_threads_policy=placement["emulator_threads_policy"])


def canonical(e):
    """An element as (tag, attributes, text, children): attribute order carries no meaning in XML,
    children's order does."""
    return (e.tag, dict(sorted(e.attrib.items())), (e.text or "").strip(), [canonical(c) for c in e])


def shared_only(host_doc):
    """The host's CPUs for floating vCPUs only: the `[compute] cpu_shared_set` a host that reports
    them separately from its dedicated set was configured with."""
    shared = {c for cell in host_doc["cells"] for c in cell["cpuset"]}
    pinnable = {c for cell in host_doc["cells"] for c in cell["pcpuset"]}
    return sorted(shared - pinnable)


def nova_parts(host_doc, placement):
    only = shared_only(host_doc)
    if only:
        CONF.set_override("cpu_shared_set", ",".join(map(str, only)), group="compute")
    try:
        return _nova_parts(host_doc, placement)
    finally:
        CONF.clear_override("cpu_shared_set", group="compute")


def _nova_parts(host_doc, placement):
    driver = NovaLibvirtNUMA(n.host_topology(host_doc))
    inst = instance_topology(placement)
    flavor = objects.Flavor(vcpus=sum(len(c.total_cpus) for c in inst.cells), extra_specs={})
    image_meta = objects.ImageMeta.from_dict({"properties": {}})
    numa = driver._get_guest_numa_config(inst, flavor, image_meta)
    membacking = driver._get_guest_memory_backing_config(inst, numa.numatune, flavor, image_meta)
    parts = {
        "vcpu": ET.fromstring(f"<vcpu>{flavor.vcpus}</vcpu>"),
        # Nova's guest has one I/O thread (`_get_guest_iothread`).
        "iothreads": ET.fromstring(f"<iothreads>{driver._get_guest_iothread()}</iothreads>"),
        "cputune": ET.fromstring(numa.cputune.to_xml()),
        "numatune": ET.fromstring(numa.numatune.to_xml()),
        "numa": ET.fromstring(numa.numaconfig.to_xml()),
    }
    if membacking is not None:
        parts["memoryBacking"] = ET.fromstring(membacking.to_xml())
    return parts


def numafit_parts(host_file, placement_file):
    out = subprocess.run([cli(), "render", "--placement", str(placement_file), "--host", str(host_file), "--format", "libvirt"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    root = ET.fromstring(f"<parts>{out.stdout}</parts>")
    parts = {e.tag: e for e in root}
    cpu = parts.pop("cpu")
    assert [c.tag for c in cpu] == ["numa"], ET.tostring(cpu)
    parts["numa"] = cpu[0]
    return parts


class RenderedAsNovaWritesIt(unittest.TestCase):
    def test_every_fitting_bench_placement_renders_as_novas_driver_writes_it(self):
        compared = []
        with tempfile.TemporaryDirectory() as scratch:
            pairs = [(c.name, c / "host.json", c / "request.json") for c in n.CASES]
            pairs += [(r.name.removesuffix(".request.json"), RENDER / "split-host.json", r)
                      for r in sorted(RENDER.glob("*.request.json"))]
            for name, host_file, request_file in pairs:
                for policy in ("nova", "balanced"):
                    fit = subprocess.run([cli(), "fit", "--host", str(host_file), "--request", str(request_file),
                                          "--policy", policy, "--json"], capture_output=True, text=True)
                    if fit.returncode != 0:
                        continue
                    placement = json.loads(fit.stdout)
                    if not placement["cells"]:
                        continue
                    placement_file = Path(scratch) / f"{name}-{policy}.json"
                    placement_file.write_text(fit.stdout)
                    host_doc = json.loads(host_file.read_text())
                    with self.subTest(case=name, policy=policy):
                        ours = numafit_parts(host_file, placement_file)
                        novas = nova_parts(host_doc, placement)
                        self.assertEqual(sorted(ours), sorted(novas))
                        for tag in novas:
                            self.assertEqual(canonical(ours[tag]), canonical(novas[tag]), tag)
                    compared.append((name, policy, placement["emulator_threads_policy"],
                                     any(c["pagesize_kb"] and c["pagesize_kb"] > 4 for c in placement["cells"]),
                                     any(c["cpuset"] for c in placement["cells"]), len(placement["cells"])))
        # The comparison covers what the renderer distinguishes, or it proves little.
        self.assertGreaterEqual(len(compared), 8, compared)
        self.assertTrue(any(c[2] == "isolate" for c in compared), compared)
        self.assertTrue(any(c[2] == "share" for c in compared), compared)
        self.assertTrue(any(c[3] for c in compared), compared)  # huge pages
        self.assertTrue(any(c[4] for c in compared), compared)  # shared vCPUs
        self.assertTrue(any(c[5] == 1 for c in compared) and any(c[5] > 1 for c in compared), compared)


if __name__ == "__main__":
    unittest.main()
