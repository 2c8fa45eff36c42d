"""numafit in Nova's scheduler: ``numafit_nova.NUMAFitFilter``, a drop-in for NUMATopologyFilter
that runs a numafit policy component in-process (see integrations/nova/README.md)."""

from numafit_nova.filter import NUMAFitFilter  # noqa: F401
