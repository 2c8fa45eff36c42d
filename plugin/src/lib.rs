//! numafit's placement core: given a host's NUMA topology and an instance's request, decide which
//! host cells, CPUs and pages the instance gets (the `nova` policy answers what OpenStack Nova's
//! `numa_fit_instance_to_host` answers), and keep per-cell accounting with claims and releases.
//!
//! Pure functions over data, no I/O. The same code is a native library (tests, benchmarks) and,
//! through `component`, the `numafit:policy` WebAssembly component the host runtime loads.

pub mod accounting;
pub mod balanced;
pub mod batch;
pub mod cores;
pub mod cpuset;
pub mod extra_specs;
pub mod fit;
pub mod flavor;
pub mod hugepages;
pub mod names;
pub mod packed;
pub mod pci;
pub mod pinning;
pub mod placement;
pub mod refusal;
pub mod request;
pub mod scoring;
pub mod search;
mod text;
pub mod topology;
pub mod wire;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod arena;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
#[global_allocator]
static ALLOCATOR: arena::Arena = arena::Arena::new();

pub use accounting::{claim, claimed_cells, release, AccountingCode, AccountingError};
pub use batch::Batch;
pub use cores::PreparedHost;
pub use cpuset::CpuSet;
pub use fit::{Limits, NetworkNeed, Strategy};
pub use flavor::{from_flavor, Flavor};
pub use names::Named;
pub use packed::PackedPlacements;
pub use placement::{CellRefusal, PlacedCell, Placement, Rejection};
pub use refusal::{Refusal, Shortfall};
pub use request::{CpuPolicy, EmulatorThreads, GuestCell, GuestTopology, PageSizeWish, ThreadPolicy, ValidRequest};
pub use topology::{HostCell, HostTopology, PagePool};

crate::named_enum! {
    /// The placement policies this crate implements; a component build embeds one.
    pub enum Policy {
        /// OpenStack Nova's `numa_fit_instance_to_host`, without its bugs.
        Nova = "nova",
        /// Compact, core-preserving, least-stranding placement (`balanced` module).
        Balanced = "balanced",
    }
}

impl Policy {
    /// Places `guest` on `host` (normalized and valid: `HostTopology::normalized`, `validate`).
    pub fn fit(self, host: &HostTopology, guest: &GuestTopology, limits: &Limits) -> Result<Placement, Rejection> {
        self.fit_prepared(&PreparedHost::borrowed(host), guest, limits)
    }

    /// `fit` on a host prepared once for many fits.
    pub fn fit_prepared(self, host: &PreparedHost, guest: &GuestTopology, limits: &Limits) -> Result<Placement, Rejection> {
        let guest = ValidRequest::borrowed(guest).map_err(|e| Rejection::whole(format!("invalid request: {e}")))?;
        self.fit_valid(host, &guest, limits)
    }

    /// `fit` of a request validated once for many fits, on a host prepared once.
    pub fn fit_valid(self, host: &PreparedHost, guest: &ValidRequest, limits: &Limits) -> Result<Placement, Rejection> {
        self.decide(host, guest, limits, &mut search::Slots::new()).answer(self.name_const())
    }

    fn decide<'a>(
        self,
        host: &'a PreparedHost,
        guest: &'a ValidRequest,
        limits: &'a Limits,
        slots: &'a mut search::Slots,
    ) -> search::Decision<'a> {
        match self {
            Policy::Nova => search::decide(host, guest, limits, self.name_const(), slots),
            Policy::Balanced => balanced::decide(host, guest, limits, self.name_const(), slots),
        }
    }

    /// `fit_valid`, a placement packed into `out` (contract 0.5): `out` then holds one more.
    pub fn fit_packed(
        self,
        host: &PreparedHost,
        guest: &ValidRequest,
        limits: &Limits,
        out: &mut PackedPlacements,
    ) -> Result<(), Rejection> {
        out.words.reserve(packed::words_for(guest.get()));
        self.decide(host, guest, limits, &mut search::Slots::new()).place_into(out)
    }

    /// `fit_valid` on each of many hosts, the answers as one batch's columns, in order.
    pub fn fit_batch<'h, 'p: 'h>(
        self,
        hosts: impl IntoIterator<Item = &'h PreparedHost<'p>>,
        guest: &ValidRequest,
        limits: &Limits,
    ) -> Batch {
        let mut batch = Batch::new(guest.get(), self.name_const());
        let hosts = hosts.into_iter();
        batch.reserve(hosts.size_hint().0, guest.get());
        self.fill_batch(hosts, guest, limits, batch)
    }

    /// `fit_batch`, the placements packed (contract 0.5).
    pub fn fit_batch_packed<'h, 'p: 'h>(
        self,
        hosts: impl IntoIterator<Item = &'h PreparedHost<'p>>,
        guest: &ValidRequest,
        limits: &Limits,
    ) -> Batch<PackedPlacements> {
        let hosts = hosts.into_iter();
        let batch = Batch::packed(hosts.size_hint().0, guest.get());
        self.fill_batch(hosts, guest, limits, batch)
    }

    fn fill_batch<'h, 'p: 'h, P: placement::PlacementSink>(
        self,
        hosts: impl Iterator<Item = &'h PreparedHost<'p>>,
        guest: &ValidRequest,
        limits: &Limits,
        mut batch: Batch<P>,
    ) -> Batch<P> {
        // One table's room for every host.
        let mut slots = search::Slots::new();
        for host in hosts {
            self.decide(host, guest, limits, &mut slots).write(&mut batch);
        }
        batch
    }
}

/// The policy a component build of this crate exports (`--features policy-balanced` for `balanced`).
pub const POLICY: Policy = if cfg!(feature = "policy-balanced") { Policy::Balanced } else { Policy::Nova };
/// The name this policy reports in `info()` and in every placement.
pub const POLICY_NAME: &str = POLICY.name_const();
/// Version of the policy's behaviour.
pub const POLICY_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Version of the WIT contract (`wit/0.5.0`, which includes 0.4.0, 0.3.0 and 0.2.0).
pub const CONTRACT_VERSION: &str = if cfg!(feature = "contract-0-2") {
    "0.2.0"
} else if cfg!(feature = "contract-0-4") {
    "0.4.0"
} else {
    "0.5.0"
};

/// Places an instance on a host with the `nova` policy.
pub fn fit(host: &HostTopology, guest: &GuestTopology, limits: &Limits) -> Result<Placement, Rejection> {
    Policy::Nova.fit(host, guest, limits)
}
