"""Nova's own NUMATopologyFilter tests (nova 34.0.0,
nova/tests/unit/scheduler/filters/test_numa_topology_filters.py) with NUMAFitFilter as the filter
under test. Two of Nova's tests mock ``nova.virt.hardware.numa_fit_instance_to_host``, which
NUMAFitFilter never calls: they test Nova's function, not the filter's contract. Their
equivalents here make numafit itself decide between candidates: PCI devices reported in placement
on two NUMA nodes of a host whose node 0 has no memory left, so only the candidate whose device is
on node 1 fits.
"""

from oslo_utils.fixture import uuidsentinel as uuids

from nova import objects
from nova.pci import stats
from nova.tests.unit.scheduler import fakes
from nova.tests.unit.scheduler.filters import test_numa_topology_filters as nova_tests

from numafit_nova import NUMAFitFilter


def host_with_devices_on_both_nodes(candidates):
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
    return fakes.FakeHostState("host1", "node1", {
        "numa_topology": topology,
        "pci_stats": stats.PciDeviceStats(topology, stats=pools),
        "cpu_allocation_ratio": 16.0,
        "ram_allocation_ratio": 1.0,
        "allocation_candidates": candidates,
    })


class TestNUMAFitFilter(nova_tests.TestNUMATopologyFilter):

    def setUp(self):
        super().setUp()
        self.filt_cls = NUMAFitFilter()

    def _spec_with_device(self):
        instance_topology = objects.InstanceNUMATopology(cells=[
            objects.InstanceNUMACell(id=0, cpuset={0}, pcpuset=set(), memory=512)])
        spec_obj = self._get_spec_obj(numa_topology=instance_topology)
        spec_obj.pci_requests = objects.InstancePCIRequests(requests=[objects.InstancePCIRequest(
            count=1, alias_name="nic", request_id=uuids.req1, numa_policy="required",
            spec=[{"vendor_id": "8086", "product_id": "154d"}])])
        return spec_obj

    def test_filters_candidates(self):
        candidate = lambda rp: {"mappings": {f"{uuids.req1}-0": [rp]}}  # noqa: E731
        host = host_with_devices_on_both_nodes([candidate(uuids.rp_0), candidate(uuids.rp_1), candidate(uuids.rp_0)])
        self.assertTrue(self.filt_cls.host_passes(host, self._spec_with_device()))
        # only the candidate with the device on cell 1, where the memory is, is left
        self.assertEqual([candidate(uuids.rp_1)], host.allocation_candidates)
        self.assertEqual(1.0, host.limits["numa_topology"].ram_allocation_ratio)

    def test_filter_fails_if_no_matching_candidate_left(self):
        candidate = {"mappings": {f"{uuids.req1}-0": [uuids.rp_0]}}
        host = host_with_devices_on_both_nodes([candidate])
        self.assertFalse(self.filt_cls.host_passes(host, self._spec_with_device()))
        self.assertEqual([], host.allocation_candidates)
        self.assertNotIn("numa_topology", host.limits)
