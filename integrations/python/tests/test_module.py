"""The numafit extension module against the numafit CLI: same policy, same answers, same errors."""

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

import numafit

ROOT = Path(__file__).resolve().parents[3]
CASES = sorted(p for p in (ROOT / "tests" / "fixtures" / "bench").iterdir() if (p / "host.json").exists())


def cli():
    """The numafit binary the workspace built (NUMAFIT_BIN overrides)."""
    if os.environ.get("NUMAFIT_BIN"):
        return os.environ["NUMAFIT_BIN"]
    for profile in ("debug", "release"):
        p = ROOT / "target" / profile / "numafit"
        if p.exists():
            return str(p)
    pytest.fail("no numafit binary: run cargo build first, or set NUMAFIT_BIN")


def load(case):
    return json.loads((case / "host.json").read_text()), json.loads((case / "request.json").read_text())


def cli_fit(case):
    out = subprocess.run(
        [cli(), "fit", "--host", str(case / "host.json"), "--request", str(case / "request.json"), "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode in (0, 1), out.stderr
    return out.returncode == 0, json.loads(out.stdout)


@pytest.fixture(scope="module")
def policy():
    return numafit.Policy()


def test_info_names_the_embedded_policy(policy):
    info = policy.info()
    assert info["name"] == "nova" and info["contract"]
    assert numafit.Policy(name="balanced").info()["name"] == "balanced"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_bench_case_gives_the_cli_answer(policy, case):
    host, request = load(case)
    fits, expected = cli_fit(case)
    answer = policy.fit(host, request)
    assert answer["fits"] == fits
    assert answer["placement" if fits else "rejection"] == expected


def test_fit_many_answers_each_host_as_fit_does(policy):
    hosts, answers = [], []
    request = load(CASES[3])[1]
    for case in CASES[:6]:
        host, _ = load(case)
        hosts.append(host)
        answers.append(policy.fit(host, request))
    assert policy.fit_many(hosts, request) == answers


def test_loaded_hosts_give_the_answers_of_their_documents(policy):
    """A numafit.Host is read once and loaded into each policy on its first fit with it."""
    request = load(CASES[3])[1]
    documents = [load(c)[0] for c in CASES]
    loaded = [numafit.Host(h) for h in documents]
    expected = policy.fit_many(documents, request)
    assert policy.fit_many(loaded, request) == expected
    assert policy.fit_many(loaded, request) == expected  # kept in the policy now
    mixed = [loaded[0], documents[1], loaded[2]]
    assert policy.fit_many(mixed, request) == expected[:3]
    assert policy.fit(loaded[3], request) == expected[3]
    # another policy loads the same Host objects for itself
    assert numafit.Policy(name="balanced").fit_many(loaded, request) == numafit.Policy(name="balanced").fit_many(documents, request)
    # without placements: the verdicts only
    brief = policy.fit_many(loaded, request, placements=False)
    assert [a["fits"] for a in brief] == [a["fits"] for a in expected]
    assert all("placement" not in a for a in brief)
    assert [a.get("rejection") for a in brief] == [a.get("rejection") for a in expected]
    with pytest.raises(numafit.InvalidInput, match="cells"):
        numafit.Host({"cells": "none"})
    with pytest.raises(numafit.InvalidInput, match=r"hosts\[1\]"):
        policy.fit_many([loaded[0], {"cells": "none"}], request)


def test_self_test_passes_for_the_embedded_policies_and_components_load_from_bytes(tmp_path):
    assert numafit.Policy().self_test()["cases"] >= 5
    out = tmp_path / "balanced.wasm"
    subprocess.run([cli(), "export-plugin", str(out), "--policy", "balanced"], check=True)
    from_bytes = numafit.Policy(wasm=out.read_bytes(), name="exported")
    assert from_bytes.info()["name"] == "balanced"
    assert from_bytes.self_test()["calls"] > 0
    with pytest.raises(numafit.PluginLoad, match="not a WebAssembly component"):
        numafit.Policy(wasm=b"garbage")


def test_bad_input_names_the_field_and_the_cli_code(policy):
    host, request = load(CASES[0])
    request["cells"][0]["memory"] = "lots"
    with pytest.raises(numafit.InvalidInput) as e:
        policy.fit(host, request)
    assert "cells[0].memory" in str(e.value)
    assert (e.value.code, e.value.exit_code) == ("InvalidInput", 2)
    with pytest.raises(numafit.InvalidInput, match="strategy"):
        policy.fit(host, load(CASES[0])[1], strategy="sideways")
    with pytest.raises(numafit.InvalidInput, match="cpu_allocation_ratio"):
        policy.fit(host, load(CASES[0])[1], {"cpu_allocation_ratio": -1})


def test_a_flavor_is_read_by_the_policy_and_refusals_carry_its_code(policy):
    flavor = {"flavor": {"vcpus": 4, "memory_mb": 2048, "extra_specs": {"hw:numa_nodes": "2", "hw:cpu_policy": "dedicated"}}}
    guest = policy.request_from_flavor(flavor)
    assert len(guest["cells"]) == 2 and guest["cpu_policy"] == "dedicated"
    bad = {"flavor": {"vcpus": 3, "memory_mb": 2048, "extra_specs": {"hw:numa_nodes": "2"}}}
    with pytest.raises(numafit.RequestRefused) as e:
        policy.request_from_flavor(bad)
    assert e.value.exit_code == 2


def test_limits_stop_the_policy_with_the_limit_named():
    host, request = load(next(c for c in CASES if c.name.startswith("12-")))
    starved = numafit.Policy(fuel=200_000)
    with pytest.raises(numafit.PluginFailed) as e:
        starved.fit(host, request)
    assert (e.value.limit, e.value.exit_code) == ("fuel", 3)
    # The same policy answers again afterwards (a fresh instance replaces the trapped one).
    small_host, small_request = load(CASES[0])
    assert starved.fit(small_host, small_request)["fits"]


def test_a_missing_component_file_is_a_load_error(tmp_path):
    with pytest.raises(numafit.PluginLoad) as e:
        numafit.Policy(tmp_path / "nope.wasm")
    assert "nope.wasm" in str(e.value) and e.value.exit_code == 2


def test_four_threads_at_once_get_the_serial_answers(policy):
    work = [load(c) for c in CASES]
    serial = [policy.fit(h, r) for h, r in work]
    results = [None] * 4
    errors = []

    def run(i):
        try:
            results[i] = [policy.fit(h, r) for _ in range(5) for h, r in work][-len(work):]
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == serial for r in results)


def test_claim_then_release_gives_the_cli_host_and_restores_it(policy, tmp_path):
    case = CASES[0]
    host, request = load(case)
    placement = policy.fit(host, request)["placement"]
    claimed = policy.claim(host, placement)
    (tmp_path / "placement.json").write_text(json.dumps(placement))
    out = subprocess.run(
        [cli(), "claim", "--host", str(case / "host.json"), "--placement", str(tmp_path / "placement.json"), "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert claimed == json.loads(out.stdout)
    # Claiming the same CPUs again is refused with the conflict's fields; releasing restores.
    with pytest.raises(numafit.AccountingConflict) as e:
        policy.claim(claimed, placement)
    assert e.value.code == "CPUPinningInvalid" and e.value.cpus and e.value.exit_code == 1
    released = policy.release(claimed, placement)
    usage = lambda h: [(c["id"], c.get("memory_usage", 0), c.get("cpu_usage", 0), sorted(c.get("pinned_cpus", []))) for c in h["cells"]]
    assert usage(claimed) != usage(host)
    assert usage(released) == usage(host)
    assert policy.fit(released, request) == policy.fit(host, request)
