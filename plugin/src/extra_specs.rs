//! The flavor extra-spec keys of the `hw:` namespace that Nova 34's API validators accept
//! (`nova/api/validation/extra_specs/hw.py`), plus numafit's own `hw:numa_mempolicy`. Nova
//! refuses any other `hw:` key when a flavor is written, so a typo (`hw:cpu_polcy`) never silently
//! drops a constraint; numafit refuses it the same way, naming the closest known key.

use crate::request::RequestError;

/// Every key without a parameter, as Nova 34 spells it.
const KEYS: &[&str] = &[
    "hw:boot_menu",
    "hw:cpu_cores",
    "hw:cpu_dedicated_mask",
    "hw:cpu_max_cores",
    "hw:cpu_max_sockets",
    "hw:cpu_max_threads",
    "hw:cpu_policy",
    "hw:cpu_realtime",
    "hw:cpu_realtime_mask",
    "hw:cpu_sockets",
    "hw:cpu_thread_policy",
    "hw:cpu_threads",
    "hw:emulator_threads_policy",
    "hw:ephemeral_encryption",
    "hw:ephemeral_encryption_format",
    "hw:hide_hypervisor_id",
    "hw:locked_memory",
    "hw:mem_encryption",
    "hw:mem_encryption_model",
    "hw:mem_page_size",
    "hw:numa_nodes",
    "hw:pci_numa_affinity_policy",
    "hw:pmem",
    "hw:pmu",
    "hw:redirected_usb_ports",
    "hw:serial_port_count",
    "hw:sound_model",
    "hw:tpm_model",
    "hw:tpm_secret_security",
    "hw:tpm_version",
    "hw:usb_model",
    "hw:vif_multiqueue_enabled",
    "hw:viommu_model",
    "hw:virtio_packed_ring",
    "hw:watchdog_action",
    // numafit's own: the memory policy a placement is applied with (Nova's NUMA design documents
    // name it; Nova 34 never shipped it).
    MEMPOLICY_KEY,
];

/// Keys that take a guest NUMA node number: `hw:numa_cpus.0`, `hw:numa_mem.1`, ...
const PER_NODE: &[&str] = &["hw:numa_cpus.", "hw:numa_mem."];

pub const MEMPOLICY_KEY: &str = "hw:numa_mempolicy";
/// The values `hw:numa_mempolicy` (and the image's `hw_numa_mempolicy`) take.
pub const MEMPOLICIES: &[&str] = &["strict", "preferred", "interleave"];

fn known(key: &str) -> bool {
    KEYS.contains(&key)
        || PER_NODE.iter().any(|p| key.strip_prefix(p).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + usize::from(ca != cb));
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The known key closest to `key`.
fn closest(key: &str) -> &'static str {
    let per_node = ["hw:numa_cpus.0", "hw:numa_mem.0"];
    KEYS.iter().chain(per_node.iter()).min_by_key(|k| distance(key, k)).copied().unwrap_or("hw:numa_nodes")
}

/// Refuses a `hw:` key Nova's validators do not know (Nova's `ValidationError`), and a
/// `hw:numa_mempolicy` value that is not one of `MEMPOLICIES`. Keys of other namespaces pass.
pub fn check(specs: &[(String, String)], image_props: &[(String, String)]) -> Result<(), RequestError> {
    for (key, value) in specs {
        if key.starts_with("hw:") && !known(key) {
            return Err(RequestError::new(
                "ValidationError",
                format!("flavor extra spec {key:?} is not a valid extra spec (did you mean {:?}?)", closest(key)),
            ));
        }
        if key == MEMPOLICY_KEY {
            check_mempolicy(&format!("flavor extra spec {key}"), value)?;
        }
    }
    for (key, value) in image_props {
        if key == "hw_numa_mempolicy" {
            check_mempolicy(&format!("image property {key}"), value)?;
        }
    }
    Ok(())
}

fn check_mempolicy(source: &str, value: &str) -> Result<(), RequestError> {
    if value.is_empty() || MEMPOLICIES.contains(&value) {
        return Ok(());
    }
    Err(RequestError::new("ValidationError", format!("{source}={value:?} is not one of {}", MEMPOLICIES.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    #[test]
    fn typos_name_the_closest_key() {
        let e = check(&spec("hw:cpu_polcy", "dedicated"), &[]).unwrap_err();
        assert_eq!(e.code, "ValidationError");
        assert!(e.message.contains("\"hw:cpu_polcy\"") && e.message.contains("\"hw:cpu_policy\""), "{}", e.message);
        let e = check(&spec("hw:numa_nodez", "2"), &[]).unwrap_err();
        assert!(e.message.contains("\"hw:numa_nodes\""), "{}", e.message);
        assert!(check(&spec("hw:numa_cpus.x", "0"), &[]).is_err());
        assert!(check(&spec("hw:numa_mem.", "0"), &[]).is_err());
    }

    #[test]
    fn every_nova_key_and_other_namespaces_pass() {
        for k in KEYS {
            assert!(check(&spec(k, ""), &[]).is_ok(), "{k}");
        }
        for k in ["hw:numa_cpus.12", "hw:numa_mem.0", "hw_rng:allowed", "trait:HW_CPU_HYPERTHREADING", "resources:PCPU", "quota:cpu_shares"]
        {
            assert!(check(&spec(k, "1"), &[]).is_ok(), "{k}");
        }
    }

    #[test]
    fn mempolicy_values() {
        for v in MEMPOLICIES {
            assert!(check(&spec(MEMPOLICY_KEY, v), &[]).is_ok());
        }
        assert!(check(&spec(MEMPOLICY_KEY, "bind"), &[]).is_err());
        assert!(check(&[], &spec("hw_numa_mempolicy", "strictly")).is_err());
    }
}
