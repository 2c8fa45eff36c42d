//! `GET /metrics`: what the service did, in the Prometheus text format (the Prometheus project's
//! Rust client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ledger::PolicyVersion;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShortfallLabel {
    pub shortfall: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

pub struct Metrics {
    registry: Registry,
    pub fits: Family<Outcome, Counter>,
    pub rejections: Family<ShortfallLabel, Counter>,
    pub claims: Family<Outcome, Counter>,
    pub releases: Family<Outcome, Counter>,
    pub claim_seconds: Histogram,
    /// Plugin calls stopped by a limit or trap, and answers the host refused (`rule`).
    pub plugin_failures: Family<KindLabel, Counter>,
    pub swaps: Family<Outcome, Counter>,
    policy: Family<PolicyLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("numafit");
        let fits = Family::<Outcome, Counter>::default();
        registry.register("fits", "Dry-run fits answered, by outcome (fit, rejected, failed)", fits.clone());
        let rejections = Family::<ShortfallLabel, Counter>::default();
        registry.register("rejections", "Rejections (fits and claims) by the shortfall of each refused cell", rejections.clone());
        let claims = Family::<Outcome, Counter>::default();
        registry.register("claims", "Claims answered, by outcome (created, unchanged, rejected, conflict, failed)", claims.clone());
        let releases = Family::<Outcome, Counter>::default();
        registry.register("releases", "Releases answered, by outcome (released, unknown, failed)", releases.clone());
        let claim_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register("claim_duration_seconds", "Time to answer POST /v1/claims", claim_seconds.clone());
        let plugin_failures = Family::<KindLabel, Counter>::default();
        registry.register(
            "plugin_failures",
            "Plugin calls stopped (fuel, memory, deadline, trap) and answers the host refused (rule)",
            plugin_failures.clone(),
        );
        let swaps = Family::<Outcome, Counter>::default();
        registry.register("policy_swaps", "Policy swaps, by outcome (accepted, refused, rollback)", swaps.clone());
        let policy = Family::<PolicyLabels, Gauge>::default();
        registry.register("policy_info", "The policy version serving now (value 1)", policy.clone());
        Metrics { registry, fits, rejections, claims, releases, claim_seconds, plugin_failures, swaps, policy }
    }

    pub fn count(family: &Family<Outcome, Counter>, outcome: &str) {
        family.get_or_create(&Outcome { outcome: outcome.to_string() }).inc();
    }

    pub fn plugin_failure(&self, kind: &str) {
        self.plugin_failures.get_or_create(&KindLabel { kind: kind.to_string() }).inc();
    }

    pub fn rejection(&self, r: &crate::runtime::wit::Rejection) {
        for c in &r.refusals {
            let shortfall = crate::formats::shortfall_name(c.shortfall).to_string();
            self.rejections.get_or_create(&ShortfallLabel { shortfall }).inc();
        }
        if r.refusals.is_empty() {
            self.rejections.get_or_create(&ShortfallLabel { shortfall: "none-named".into() }).inc();
        }
    }

    /// The serving version's labels: the one series at 1.
    pub fn serving(&self, v: &PolicyVersion) {
        self.policy.clear();
        self.policy.get_or_create(&PolicyLabels { name: v.name.clone(), version: v.version.clone(), sha256: v.sha256.clone() }).set(1);
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
