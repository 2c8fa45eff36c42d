//! Every rule a host of record obeys, one named breach each: the core's `check` is the only place
//! these rules are written (the HOST.json reader, discovery and the component all call it), so
//! each breach must be refused here, naming the field the document would name.

mod common;
use common::*;

use numafit_plugin::topology::{PciPool, MAX_MEMORY_MB};
use numafit_plugin::HostTopology;

type Breach = fn(&mut HostTopology);

#[test]
fn each_broken_rule_is_named_by_its_field() {
    let table: &[(&str, Breach, &str, &str)] = &[
        ("no cells", |h| h.cells.clear(), "cells", "no cells"),
        ("an id twice", |h| h.cells[1].id = 0, "cells[1].id", "appears twice"),
        ("memory past the cap", |h| h.cells[0].memory = MAX_MEMORY_MB + 1, "cells[0].memory", "beyond the largest"),
        ("usage past the cap", |h| h.cells[1].memory_usage = u64::MAX, "cells[1].memory_usage", "beyond the largest"),
        (
            "a kept CPU also offered",
            |h| {
                h.cells[0].host_cpus.insert(0);
            },
            "cells[0].host_cpus",
            "CPU 0 is kept",
        ),
        ("an empty core", |h| h.cells[0].siblings.push(set(&[])), "cells[0].siblings[4]", "empty sibling group"),
        (
            "a core naming a stranger",
            |h| {
                h.cells[0].siblings[0].insert(40);
            },
            "cells[0].siblings[0]",
            "CPU 40 is not a CPU of this cell",
        ),
        (
            "a CPU in two cores",
            |h| {
                h.cells[0].siblings[1].insert(0);
            },
            "cells[0].siblings",
            "CPU 0 is in more than one",
        ),
        (
            "a CPU in two cells",
            |h| {
                h.cells[1].pcpuset.insert(0);
            },
            "cells[1].cpuset",
            "CPUs {0} also belong to another cell (cell 0)",
        ),
        (
            "pinned but not pinnable",
            |h| {
                h.cells[0].pinned_cpus.insert(40);
            },
            "cells[0].pinned_cpus",
            "CPU 40 is pinned",
        ),
        (
            "a page size not a power of two",
            |h| h.cells[0].mempages[1].size_kb = 3000,
            "cells[0].mempages[1].size_kb",
            "3000 is not a page size",
        ),
        ("two pools of a size", |h| h.cells[1].mempages[1].size_kb = 4, "cells[1].mempages[1].size_kb", "two pools of 4 KiB"),
        ("more reserved than there are", |h| h.cells[0].mempages[1].reserved = 2000, "cells[0].mempages[1].reserved", "2000 of 1024 pages"),
        (
            "hugepages overcommitted",
            |h| h.cells[0].mempages[1].used = 1025,
            "cells[0].mempages[1].used",
            "1025 used and 0 reserved of 1024",
        ),
        ("a distance to itself not 10", |h| h.distances = vec![10, 20, 20, 11], "cells[].distances", "not a SLIT"),
        ("a matrix of the wrong size", |h| h.distances = vec![10, 20, 20], "cells[].distances", "3 entries for 2 cells"),
        (
            "a PCI pool on no cell",
            |h| h.pci_pools.push(PciPool { numa_node: Some(7), count: 1, tags: vec![] }),
            "pci_pools[0].numa_node",
            "7 is not a cell",
        ),
    ];
    let mut good = dual_socket_ht();
    good.distances = vec![10, 20, 20, 10];
    assert_eq!(good.check(), Ok(()), "the unbroken host passes");
    for (name, breach, field, words) in table {
        let mut h = good.clone();
        breach(&mut h);
        let problem = h.check().expect_err(name);
        assert_eq!(problem.field, *field, "{name}: {problem}");
        assert!(problem.message.contains(words), "{name}: {problem}");
    }
}

#[test]
fn smallest_pages_overcommit_is_recorded_not_refused() {
    // Nova records overcommitted small pages under a RAM allocation ratio; only hugepages are locked.
    let mut h = dual_socket_ht();
    h.cells[0].mempages[0].used = h.cells[0].mempages[0].total + 1;
    assert_eq!(h.check(), Ok(()));
}

#[test]
fn a_thread_no_guest_gets_is_kept_for_the_host_when_normalized() {
    // A core naming a CPU the cell offers no guest: that thread is the host's, not an error.
    let mut h = dual_socket_ht();
    h.cells[0].pcpuset.remove(8);
    let h = h.normalized();
    assert!(h.cells[0].host_cpus.contains(8));
    assert_eq!(h.check(), Ok(()));
}
