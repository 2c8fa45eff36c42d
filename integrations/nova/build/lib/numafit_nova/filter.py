"""NUMAFitFilter: Nova's NUMATopologyFilter contract, answered by a numafit policy component."""

import logging as std_logging

import numafit
from nova import objects
from nova.objects import fields
from nova.scheduler import filters
from oslo_log import log as logging

from numafit_nova import convert
from numafit_nova.policy import CONF, WatchedPolicy

LOG = logging.getLogger(__name__)


def _requires_threads(spec_obj):
    """Whether flavor or image ask for dedicated CPUs with thread policy ``require``."""
    extra_specs = spec_obj.flavor.extra_specs
    image_props = spec_obj.image.properties
    cpu_policy = (extra_specs.get("hw:cpu_policy"), image_props.get("hw_cpu_policy"))
    thread_policy = (extra_specs.get("hw:cpu_thread_policy"), image_props.get("hw_cpu_thread_policy"))
    return (fields.CPUAllocationPolicy.DEDICATED in cpu_policy
            and fields.CPUThreadAllocationPolicy.REQUIRE in thread_policy)


def _rp_uuids(request, mapping):
    """The resource providers placement took ``request``'s devices from in an allocation
    candidate, as Nova's PciDeviceStats reads them (empty: any pool may serve it)."""
    if request.alias_name is None:  # a neutron port's request: not in placement
        return ()
    if not mapping:
        listed = request.spec[0].get("rp_uuids") if request.spec else None
        return tuple(listed.split(",")) if listed else ()
    return tuple(rps[0] for group, rps in mapping.items() if group.startswith(request.request_id))


class _Pass:
    """One scheduling request's reading: the request document and the limits per ratio pair."""

    def __init__(self, spec_obj):
        self.spec_obj = spec_obj
        self.requested = spec_obj.numa_topology
        pci = spec_obj.pci_requests
        self.pci_requests = list(pci.requests) if pci else []
        self.network_metadata = spec_obj.network_metadata if "network_metadata" in spec_obj else None
        self.requires_threads = _requires_threads(spec_obj)
        self.document = convert.request_document(self.requested, self.pci_requests) if self.requested else None
        self.readable = None

    def variants(self, host_state):
        """Each distinct PCI narrowing of the host's allocation candidates, with the candidates
        that share it: one fit per variant answers them all."""
        candidates = host_state.allocation_candidates
        if not self.pci_requests:
            return {(): candidates} if candidates else {}
        by_key = {}
        for candidate in candidates:
            mapping = candidate.get("mappings")
            key = tuple(_rp_uuids(r, mapping) for r in self.pci_requests)
            by_key.setdefault(key, []).append(candidate)
        return by_key


def _pools_for(pools, key):
    """The pools an allocation candidate leaves to the PCI requests: with placement allocations
    (``key`` names providers), only pools of those providers holding enough devices, as Nova's
    ``_filter_pools_based_on_placement_allocation``; a request without any keeps them all."""
    if not any(key) or not all(key):
        return pools
    wanted = {}
    for rps in key:
        for rp in rps:
            wanted[rp] = wanted.get(rp, 0) + 1
    return [p for p in pools if p.get("rp_uuid") in wanted and p["count"] >= wanted[p["rp_uuid"]]]


class _HostEntry:
    """A host's loaded numafit hosts (one per PCI variant), kept while its topology is the same
    object and its PCI pools have the same counts. Nova builds a new topology (new cells) on
    every claim (``numa_usage_from_instance_numa``) and refresh, and never changes one in place;
    it does change ``pci_stats`` in place on a claim."""

    __slots__ = ("topology", "signature", "loaded", "seen")

    def __init__(self, topology, signature):
        self.topology = topology
        self.signature = signature
        self.loaded = {}
        self.seen = 0


def _signature(pools):
    return tuple(p["count"] for p in pools) if pools else ()


class NUMAFitFilter(filters.BaseHostFilter, filters.CandidateFilterMixin):
    """Filter on requested NUMA topology, decided by a numafit policy component."""

    # As NUMATopologyFilter: the API refuses a rebuild that changes the NUMA constraints.
    RUN_ON_REBUILD = False

    # A host not asked about in this many scheduling requests (deleted, disabled) is forgotten.
    FORGET_AFTER = 1024

    def __init__(self, conf=CONF):
        super().__init__()
        self.watched = WatchedPolicy(conf)
        self._hosts = {}
        self._passes = 0

    # -- the hosts, read from Nova's objects once while unchanged

    def _loaded(self, host_state, key):
        """The host as numafit holds it for candidates narrowed by ``key``; None when numafit
        refuses the host's topology (logged; the host fails)."""
        topology = host_state.numa_topology
        pools = convert.pci_pools(host_state.pci_stats)
        signature = _signature(pools)
        name = (host_state.host, host_state.nodename)
        entry = self._hosts.get(name)
        if entry is None or entry.topology is not topology or entry.signature != signature:
            entry = self._hosts[name] = _HostEntry(topology, signature)
        entry.seen = self._passes
        if key not in entry.loaded:
            try:
                entry.loaded[key] = numafit.Host(convert.host_document(topology, _pools_for(pools, key)))
            except numafit.Error as e:
                LOG.error("numafit: the NUMA topology of %(host)s, %(node)s is refused (%(code)s): %(error)s",
                          {"host": host_state.host, "node": host_state.nodename, "code": e.code, "error": e})
                entry.loaded[key] = None
        return entry.loaded[key]

    # -- the decision

    def _limits(self, ratios, reading):
        """The NUMATopologyLimits a passing host gets, so the compute's claim applies the same
        ratios. Hosts with the same ratios share one: Nova only reads it (and sends it on)."""
        limits = objects.NUMATopologyLimits(cpu_allocation_ratio=ratios[0], ram_allocation_ratio=ratios[1])
        if reading.network_metadata:
            limits.network_metadata = reading.network_metadata
        return limits

    def _early(self, host_state, reading):
        """The answer before any fit (True/False), or None when the policy decides."""
        if reading.requires_threads and host_state.numa_topology and not host_state.numa_topology.has_threads:
            LOG.debug("%(host_state)s fails CPU policy requirements. Host does not have hyperthreading or "
                      "hyperthreading is disabled, but 'require' threads policy was requested.",
                      {"host_state": host_state})
            return False
        if not reading.requested:
            return True
        if not host_state.numa_topology:
            LOG.debug("%(host)s, %(node)s fails NUMA topology requirements. No host NUMA topology while "
                      "the instance specified one.", {"host": host_state.host, "node": host_state.nodename},
                      instance_uuid=reading.spec_obj.instance_uuid)
            return False
        return None

    def _decide(self, states, reading):
        """Each host state's answer, as ``host_passes`` gives it: one component call per distinct
        pair of allocation ratios, one fit per distinct PCI narrowing of a host's candidates."""
        policy = self.watched.policy
        self._passes += 1
        if self._passes % self.FORGET_AFTER == 0:
            old = self._passes - self.FORGET_AFTER
            for name in [k for k, e in self._hosts.items() if e.seen < old]:
                self._hosts.pop(name, None)
        answers = {}
        groups = {}  # (cpu ratio, ram ratio) -> [(host_state, variants)]
        for hs in states:
            early = self._early(hs, reading)
            if early is None and not self._request_readable(policy, reading):
                early = False
            if early is None:
                groups.setdefault((hs.cpu_allocation_ratio, hs.ram_allocation_ratio), []).append((hs, reading.variants(hs)))
            else:
                answers[id(hs)] = early
        for ratios, group in groups.items():
            limits = convert.limits_document(*ratios, reading.network_metadata)
            fits = []  # (host_state, key, loaded host)
            for hs, variants in group:
                for key in variants:
                    loaded = self._loaded(hs, key)
                    if loaded is not None:
                        fits.append((hs, key, loaded))
            results = self._fit(policy, fits, reading, limits)
            numa_limits = None
            good = set()
            for (hs, key, _), result in zip(fits, results):
                if result is True:
                    good.add((id(hs), key))
                else:
                    self._log_rejection(hs, reading, key, result)
            for hs, variants in group:
                kept = {id(c) for key, candidates in variants.items() if (id(hs), key) in good for c in candidates}
                # As filter_candidates: the host keeps the candidates that fit, in their order.
                hs.allocation_candidates = [c for c in hs.allocation_candidates if id(c) in kept]
                answers[id(hs)] = bool(hs.allocation_candidates)
                if answers[id(hs)]:
                    numa_limits = numa_limits or self._limits(ratios, reading)
                    hs.limits["numa_topology"] = numa_limits
                else:
                    LOG.debug("%(host)s, %(node)s fails NUMA topology requirements. The instance does not fit "
                              "on this host.", {"host": hs.host, "node": hs.nodename},
                              instance_uuid=reading.spec_obj.instance_uuid)
        return answers

    def _request_readable(self, policy, reading):
        """Whether numafit reads the request (checked once per scheduling request, logged once)."""
        if reading.readable is None:
            try:
                policy.request_from_flavor(reading.document)
                reading.readable = True
            except numafit.Error as e:
                LOG.error("numafit: the instance's NUMA topology is refused (%(code)s): %(error)s",
                          {"code": e.code, "error": e}, instance_uuid=reading.spec_obj.instance_uuid)
                reading.readable = False
        return reading.readable

    def _fit(self, policy, fits, reading, limits):
        """True or the rejection for each fit; a host the policy fails on (a trap, a limit, a
        lie) fails alone, logged, while the others get their answers."""
        if not fits:
            return []
        hosts = [loaded for _, _, loaded in fits]
        # Rejections' reasons are only written for the debug log.
        brief = {"placements": False, "reasons": LOG.isEnabledFor(std_logging.DEBUG)}
        try:
            return [a["fits"] or a.get("rejection", {}) for a in policy.fit_many(hosts, reading.document, limits, **brief)]
        except numafit.Error:
            pass  # find the host it failed on: each alone
        results = []
        for hs, _key, host in fits:
            try:
                a = policy.fit(host, reading.document, limits, **brief)
                results.append(a["fits"] or a.get("rejection", {}))
            except numafit.Error as e:
                LOG.error("numafit: policy %(name)s failed on %(host)s, %(node)s (%(code)s, %(limit)s): %(error)s",
                          {**self.watched.info, "host": hs.host, "node": hs.nodename, "code": e.code,
                           "limit": getattr(e, "limit", "-"), "error": e},
                          instance_uuid=reading.spec_obj.instance_uuid)
                results.append({"summary": f"the policy failed: {e.code}", "reasons": []})
        return results

    def _log_rejection(self, hs, reading, key, rejection):
        if not LOG.isEnabledFor(std_logging.DEBUG):
            return
        reasons = "; ".join(r["detail"] for r in rejection.get("reasons", ()))
        LOG.debug("%(host)s, %(node)s: numafit %(policy)s refuses%(candidate)s: %(summary)s%(reasons)s",
                  {"host": hs.host, "node": hs.nodename, "policy": self.watched.info["name"],
                   "candidate": f" (PCI providers {key})" if any(key) else "",
                   "summary": rejection.get("summary", ""), "reasons": f" [{reasons}]" if reasons else ""},
                  instance_uuid=reading.spec_obj.instance_uuid)

    # -- Nova's filter interface

    def host_passes(self, host_state, spec_obj):
        self.watched.maybe_swap()
        return self._decide([host_state], _Pass(spec_obj))[id(host_state)]

    def filter_all(self, filter_obj_list, spec_obj):
        """All candidate hosts in one call into numafit; each answer is what ``host_passes``
        gives for that host."""
        self.watched.maybe_swap()
        states = list(filter_obj_list)
        if not states:
            return []
        answers = self._decide(states, _Pass(spec_obj))
        return [hs for hs in states if answers[id(hs)]]
