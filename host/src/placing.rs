//! The claim flow both front ends run (`numafit claim --instance`, `POST /v1/claims`): fit on the
//! usage the ledger derives, have the host verify the answer, record it in one transaction, and
//! fit again when another writer got there first. The fit itself is the caller's (it owns the
//! plugin), so this flow knows nothing of the runtime.

use numafit_plugin::{HostTopology, Named};

use crate::contract::{self, wit};
use crate::failure::{Failure, RequestRefused};
use crate::formats::{self, AccountingConflictJson, InputError, PlacementJson, RequestInput, RequestJson};
use crate::ledger::{self, Admit, Claim, Ledger, NewClaim, Owner, PolicyVersion, Recorded};
use crate::verify;

/// How often a claim fits again when other writers keep changing the host under it.
pub const CLAIM_ATTEMPTS: usize = 8;

/// An instance's claim to make.
pub struct ClaimRequest<'a> {
    pub instance: &'a str,
    /// The request as given: recorded, and compared with an existing claim's.
    pub document: &'a serde_json::Value,
    pub request: &'a RequestJson,
    pub policy: &'a PolicyVersion,
    /// The process the claim lives as long as (`numafit run`), if any.
    pub owner: Option<Owner>,
    /// Claim only on this ledger generation (what a cluster scheduler filtered on).
    pub generation: Option<i64>,
}

/// What a claim came to.
pub enum ClaimOutcome {
    /// Recorded now (`new`), or the instance held this claim for the same request already.
    Claimed { claim: Claim, new: bool },
    /// The policy found no fit on the live usage.
    Rejected(wit::Rejection),
    /// The instance holds a claim for another request or placement.
    Exists(Claim),
    /// Other writers changed the host under every attempt.
    Overtaken,
    /// The host moved past the generation asked for: decide again on the new one.
    Moved { generation: i64 },
}

/// The guest request a REQUEST document (`what`: where it came from) states; a flavor is the
/// policy's to interpret (`from_flavor`), and one Nova would refuse is refused with Nova's code.
pub fn request_of(
    json: &RequestJson,
    what: &str,
    from_flavor: impl FnOnce(&wit::Flavor) -> Result<Result<wit::Request, wit::RequestError>, Failure>,
) -> Result<wit::Request, Failure> {
    match json.to_input(what)? {
        RequestInput::Explicit(r) => Ok(r),
        RequestInput::Flavor(flavor) => match from_flavor(&flavor)? {
            Ok(r) => Ok(r),
            Err(e) => Err(RequestRefused { file: what.to_string(), code: e.code, message: e.message }.into()),
        },
    }
}

/// An instance id the ledger keys on: 1 to 255 characters, no control characters.
pub fn check_instance(id: &str) -> Result<&str, String> {
    if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
        return Err(format!("instance {id:?}: an instance id is 1 to 255 characters, none of them control characters"));
    }
    Ok(id)
}

/// Fits (`fit`: the policy's answer on the host shown, already verified by the host) and records
/// the claim, refitting up to `CLAIM_ATTEMPTS` times when the ledger moved under the fit.
pub fn claim(
    ledger: &mut Ledger,
    base: &HostTopology,
    ask: &ClaimRequest,
    admit: Admit,
    mut fit: impl FnMut(&wit::Host) -> Result<Result<wit::Placement, wit::Rejection>, Failure>,
) -> Result<ClaimOutcome, Failure> {
    for _ in 0..CLAIM_ATTEMPTS {
        let (generation, claims) = ledger.snapshot()?;
        if let Some(existing) = claims.iter().find(|c| c.instance == ask.instance) {
            // The same request again is the claim it made: nothing to fit or record.
            if serde_json::from_value::<RequestJson>(existing.request.clone()).is_ok_and(|r| &r == ask.request) {
                return Ok(ClaimOutcome::Claimed { claim: existing.clone(), new: false });
            }
            return Ok(ClaimOutcome::Exists(existing.clone()));
        }
        if ask.generation.is_some_and(|g| g != generation) {
            return Ok(ClaimOutcome::Moved { generation });
        }
        let derived = ledger::derive(base, &claims, admit);
        let placement = match fit(&contract::host_view(&derived.host))? {
            Ok(p) => p,
            Err(r) => return Ok(ClaimOutcome::Rejected(r)),
        };
        let new = NewClaim {
            instance: ask.instance.to_string(),
            request: ask.document.clone(),
            placement: PlacementJson::from_wit(&placement),
            policy: ask.policy.clone(),
            owner: ask.owner,
            generation: ask.generation,
        };
        match ledger.record(base, new, admit)? {
            Recorded::New(claim) => return Ok(ClaimOutcome::Claimed { claim, new: true }),
            Recorded::Unchanged(claim) => return Ok(ClaimOutcome::Claimed { claim, new: false }),
            Recorded::Conflict(c) => return Ok(ClaimOutcome::Exists(c)),
            Recorded::Moved { generation } => return Ok(ClaimOutcome::Moved { generation }),
            Recorded::Stale(_) => continue,
        }
    }
    Ok(ClaimOutcome::Overtaken)
}

/// The sentence an `Exists` outcome is refused with.
pub fn exists_message(instance: &str, existing: &Claim) -> String {
    format!(
        "instance {instance:?} is claimed already (by policy {} {} for another request or placement); release it first",
        existing.policy.name, existing.policy.version
    )
}

/// The sentence a `Moved` outcome is refused with.
pub fn moved_message(asked: i64, generation: i64) -> String {
    format!("the host is at generation {generation}, not {asked} as the claim asked (claims landed or left since); decide again on it")
}

/// The sentence an `Overtaken` outcome is refused with.
pub fn overtaken_message() -> String {
    format!("the host changed under {CLAIM_ATTEMPTS} fits in a row (other claims landed first); try again")
}

/// A placement claimed on (or released from) a host document, without the ledger (`numafit
/// claim|release --placement`, the Python module): the host's own check first (for a claim,
/// nothing a fit on this host could not have produced passes), then the plugin's accounting
/// (`call`, the caller's), which must agree with the placement; the host returned is the core's
/// own accounting of the checked placement, not the plugin's answer. `what` names the placement's
/// source in errors. A refusal is the conflict (`Ok(Err)`).
pub fn account(
    plugin: &str,
    record: &HostTopology,
    placement: wit::Placement,
    limits: Option<&wit::Limits>,
    claim: bool,
    what: &str,
    call: impl FnOnce(&wit::Host, &wit::Placement) -> Result<Result<wit::Host, wit::AccountingError>, Failure>,
) -> Result<Result<HostTopology, AccountingConflictJson>, Failure> {
    let shown = contract::host_view(record);
    if claim {
        if let Err(c) = verify::claimable(&shown, &placement, limits) {
            return Ok(Err(AccountingConflictJson::new(c.code, c.host_cell, &c.cpus, &c.message)));
        }
    }
    match call(&shown, &placement)? {
        Ok(after) => {
            verify::accounting(plugin, &shown, &after, &placement, claim)?;
            let placed = contract::latest::convert::placement_from_wit(placement)
                .map_err(|message| InputError { file: what.to_string(), message: format!("invalid placement: {message}") })?;
            let next = if claim { numafit_plugin::claim(record, &placed) } else { numafit_plugin::release(record, &placed) };
            Ok(next.map_err(|e| AccountingConflictJson::new(e.code.name(), e.host_cell, &e.cpus.to_vec(), &e.message)))
        }
        Err(e) => Ok(Err(AccountingConflictJson::new(formats::accounting_code_name(e.code), e.host_cell, &e.cpus, &e.message))),
    }
}
