"""Nova's own NUMATopologyFilter tests (nova 34.0.0,
nova/tests/unit/scheduler/filters/test_numa_topology_filters.py) with NUMAFitFilter as the filter
under test. Two of Nova's tests mock ``nova.virt.hardware.numa_fit_instance_to_host``, which
NUMAFitFilter never calls: they test Nova's function, not the filter's contract. Their
equivalents here make numafit itself decide between candidates: PCI devices reported in placement
on two NUMA nodes of a host whose node 0 has no memory left, so only the candidate whose device is
on node 1 fits.
"""

from oslo_utils.fixture import uuidsentinel as uuids

from nova.tests.unit.scheduler.filters import test_numa_topology_filters as nova_tests

from nova_objects import host_with_devices_on_both_nodes, spec_with_device

from numafit_nova import NUMAFitFilter


class TestNUMAFitFilter(nova_tests.TestNUMATopologyFilter):

    def setUp(self):
        super().setUp()
        self.filt_cls = NUMAFitFilter()

    def test_filters_candidates(self):
        candidate = lambda rp: {"mappings": {f"{uuids.req1}-0": [rp]}}  # noqa: E731
        host = host_with_devices_on_both_nodes(uuids, [candidate(uuids.rp_0), candidate(uuids.rp_1), candidate(uuids.rp_0)])
        self.assertTrue(self.filt_cls.host_passes(host, spec_with_device(uuids.req1)))
        # only the candidate with the device on cell 1, where the memory is, is left
        self.assertEqual([candidate(uuids.rp_1)], host.allocation_candidates)
        self.assertEqual(1.0, host.limits["numa_topology"].ram_allocation_ratio)

    def test_filter_fails_if_no_matching_candidate_left(self):
        candidate = {"mappings": {f"{uuids.req1}-0": [uuids.rp_0]}}
        host = host_with_devices_on_both_nodes(uuids, [candidate])
        self.assertFalse(self.filt_cls.host_passes(host, spec_with_device(uuids.req1)))
        self.assertEqual([], host.allocation_candidates)
        self.assertNotIn("numa_topology", host.limits)
