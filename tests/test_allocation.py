"""Allocation lists for the real trial: balance, ratio, reproducibility, secrecy, verification.

Everything here is fast (no model fits): lists of a few hundred entries, a few hundred
seeds at most.
"""

import json
import re

import numpy as np
import pytest

from conftest import PARAMS
from fitlab.allocate import verify_allocation, write_allocation
from fitlab.cli import build_parser, main
from simulate import Scenario, ScenarioError, load_scenario
from simulate.allocation import (
    ALPHABET,
    allocation_list,
    check_character,
    is_valid_code,
    resolved_block_sizes,
    sequence_codes,
)
from simulate.design import _blocked, permuted_blocks, units_per_step


def small_ips(design=None, **allocation):
    """The IPS scenario with smaller strata (fast), design and allocation fields changed."""
    sc = load_scenario(PARAMS / "ips_2to1.yaml")
    changes = {"allocation.strata": {"north": 20, "south": 13, "east": 7}}
    changes.update({f"allocation.{k}": v for k, v in allocation.items()})
    changes.update({f"design.{k}": v for k, v in (design or {}).items()})
    return sc.replace(changes)


@pytest.mark.parametrize("ratio, blocks", [(2.0, [3, 6]), (1.0, [2, 4, 6]), (1.5, [5, 10])])
def test_every_block_and_stratum_holds_the_ratio(ratio, blocks):
    sc = small_ips({"allocation_ratio": ratio, "block_size": blocks[0]}, block_sizes=blocks)
    share = ratio / (1 + ratio)
    for seed in range(20):
        t = allocation_list(sc, seed).table
        for _, b in t.groupby(["stratum", "block"]):
            size = b["block_size"].iloc[0]
            assert len(b) == size and size in blocks
            assert b["arm"].sum() == round(size * share)  # balance within every block
        for stratum, s in t.groupby("stratum"):
            expected = sc.allocation.strata[stratum]
            # enough entries for the expected clients plus the reserve, ending on a whole block
            assert len(s) >= expected * (1 + sc.allocation.reserve)
            assert len(s) - s["block_size"].iloc[-1] < expected * (1 + sc.allocation.reserve)
            assert s["arm"].sum() == pytest.approx(len(s) * share)  # ... and every stratum
            assert s["sequence"].tolist() == list(range(1, len(s) + 1))
        assert set(t["allocation"]) == set(sc.allocation.arm_labels)


def test_ratio_at_every_position_over_many_lists():
    # Over 400 lists each early position of a stratum is allocated 2:1: P(IPS) = 2/3 with
    # Monte Carlo SE sqrt(2/9/400) = 0.024, so |share - 2/3| < 0.1 (> 4 SE) for every one of
    # the 12 positions fails by chance with probability < 1e-3. A predictable scheme (e.g.
    # fixed blocks always starting with IPS) fails it.
    sc = small_ips()
    arms = np.array([allocation_list(sc, seed).table.query("stratum == 'north'")["arm"]
                     .to_numpy()[:12] for seed in range(400)])
    share = arms.mean(axis=0)
    assert np.all(np.abs(share - 2 / 3) < 0.1), share.round(3)
    assert arms.mean() == pytest.approx(2 / 3, abs=0.03)


def test_block_sizes_are_drawn_at_random():
    sc = small_ips()
    sizes = np.concatenate([allocation_list(sc, s).table.drop_duplicates(["stratum", "block"])
                            ["block_size"].to_numpy() for s in range(50)])
    share3 = (sizes == 3).mean()
    assert 0.35 < share3 < 0.75  # both sizes used (about half each, the last block aside)


def test_default_block_sizes_follow_the_ratio():
    assert resolved_block_sizes(Scenario()) == [4, 8]
    simple = Scenario().replace({"design.randomization": "simple",
                                 "design.allocation_ratio": 1.5})  # block_size 4 cannot hold it
    assert resolved_block_sizes(simple) == [5, 10]


def test_same_seed_same_files_and_verify(tmp_path):
    sc = small_ips()
    a = write_allocation(sc, 99, tmp_path / "a")
    b = write_allocation(sc, 99, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file() and p.name != "manifest.json")
    assert len(files) == 1 + 3  # the list and one page per stratum
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert a["checksum"] == b["checksum"] and a["files"] == b["files"]
    assert a["seed"] == 99 and a["scenario_hash"] == sc.hash()
    assert verify_allocation(tmp_path / "a") == []


def test_no_list_without_the_seed():
    sc = small_ips()
    lists = {allocation_list(sc, seed).table["arm"].to_numpy().tobytes() for seed in range(200)}
    assert len(lists) == 200  # every seed gives another list
    big = allocation_list(sc, 2**64 + 12345).table  # a secret-sized seed works the same way
    assert (big.groupby(["stratum", "block"])["arm"].mean() == 2 / 3).all()
    assert big["arm"].to_numpy().tobytes() not in lists


def test_codes_do_not_reveal_the_allocation():
    # the codes come from their own stream: with the same seed, a list with another ratio
    # (different arms, same length) has exactly the same codes, so a code carries nothing
    # about the arm
    two = small_ips(block_sizes=[6])
    one = small_ips({"allocation_ratio": 1.0, "block_size": 2}, block_sizes=[6])
    a, b = allocation_list(two, 5).table, allocation_list(one, 5).table
    assert (a["code"] == b["code"]).all()
    assert (a["arm"] != b["arm"]).any()
    assert a["code"].is_unique
    assert all(re.fullmatch(r"IPS-[0-9A-Z]{7}", c) for c in a["code"])
    assert not (set("ILOU") & set("".join(c[4:] for c in a["code"])))
    assert set(allocation_list(two, 6).table["code"]).isdisjoint(a["code"])


def test_check_character_catches_typing_mistakes():
    codes = sequence_codes(60, seed=3, length=6)
    assert all(is_valid_code(c) for c in codes)
    for code in codes:
        for i in range(len(code)):  # every single mistyped character is caught
            for ch in ALPHABET:
                if ch != code[i]:
                    assert not is_valid_code(code[:i] + ch + code[i + 1:])
    swaps = [(c, i) for c in codes for i in range(len(c) - 1) if c[i] != c[i + 1]]
    caught = np.mean([not is_valid_code(c[:i] + c[i + 1] + c[i] + c[i + 2:]) for c, i in swaps])
    assert caught > 0.95  # Luhn mod 32 misses only rare adjacent swaps
    assert check_character("0000") == "0" and is_valid_code("ips-" + codes[0], "IPS")


def test_verify_reports_every_kind_of_difference(tmp_path, capsys):
    out = tmp_path / "list"
    write_allocation(small_ips(), 7, out)
    assert main(["allocate", "--verify", str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    csv = out / "allocation.csv"
    lines = csv.read_text().splitlines(keepends=True)
    row = lines[3].split(",")
    row[5], row[6] = ("1", "IPS\n") if row[5] == "0" else ("0", "control\n")
    csv.write_text("".join(lines[:3] + [",".join(row)] + lines[4:]))
    assert main(["allocate", "--verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "DIFFERENT" in text and "row 3 (east 3)" in text and "allocation.csv" in text
    csv.write_text("".join(lines))
    (out / "strata" / "north.html").unlink()
    problems = verify_allocation(out)
    assert problems == ["strata/north.html: missing"]
    # a manifest whose seed or scenario was edited no longer matches the files
    write_allocation(small_ips(), 7, out, overwrite=True)
    man = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**man, "seed": 8}))
    assert any("checksum" in p for p in verify_allocation(out))
    man["scenario"]["allocation"]["reserve"] = 0.5
    (out / "manifest.json").write_text(json.dumps(man))
    assert any("scenario was edited" in p for p in verify_allocation(out))


def test_refusals_write_nothing(tmp_path, capsys):
    out = tmp_path / "list"
    assert main(["allocate", str(PARAMS / "ips_2to1.yaml"), "--seed", "-1", "--out", str(out)]) == 2
    assert "seed" in capsys.readouterr().err and not out.exists()
    assert main(["allocate", str(PARAMS / "ips_2to1.yaml"), "--seed", "1", "--out", str(out)]) == 0
    before = (out / "allocation.csv").read_bytes()
    # a real trial's list is never overwritten by accident
    assert main(["allocate", str(PARAMS / "ips_2to1.yaml"), "--seed", "2", "--out", str(out)]) == 2
    assert "already holds" in capsys.readouterr().err
    assert (out / "allocation.csv").read_bytes() == before
    assert main(["allocate", "--verify", str(tmp_path / "nowhere")]) == 2
    assert main(["allocate", str(PARAMS / "ips_2to1.yaml")]) == 2  # no --out


def test_without_a_seed_a_secret_one_is_drawn(tmp_path, capsys):
    assert main(["allocate", str(PARAMS / "ips_2to1.yaml"), "--out", str(tmp_path / "x")]) == 0
    seed = json.loads((tmp_path / "x" / "manifest.json").read_text())["seed"]
    assert seed >= 0 and "secret" in capsys.readouterr().err
    assert verify_allocation(tmp_path / "x") == []


def test_nothing_personal_is_an_input():
    # the command's only inputs: a scenario file, a seed, folders
    sub = build_parser()._subparsers._group_actions[0].choices["allocate"]
    assert {a.dest for a in sub._actions} == {"help", "scenario", "seed", "out", "overwrite",
                                              "verify"}
    # a stratum named like a personal identity number is refused, and never echoed
    for pnr in ("19800101-1234", "800101-1234", "198001011234"):
        with pytest.raises(ScenarioError) as err:
            small_ips(strata={pnr: 10})
        assert pnr not in str(err.value) and "personal" in str(err.value)


def test_scenario_checks_of_the_allocation_section():
    with pytest.raises(ScenarioError, match="block_sizes .4. do not hold"):
        small_ips(block_sizes=[3, 4])
    with pytest.raises(ScenarioError, match="strata: a cluster design randomizes units"):
        load_scenario(PARAMS / "fit_cluster.yaml").replace({"allocation.strata": {"a": 3, "b": 4}})
    with pytest.raises(ScenarioError, match="allocation.code_prefix"):
        small_ips(code_prefix="ips")


def test_stepped_wedge_schedule_and_cluster_allocation(tmp_path):
    sw = load_scenario(PARAMS / "fit_stepped_wedge.yaml")
    lst = allocation_list(sw, 4)
    counts = lst.table["step"].value_counts().sort_index().to_numpy()
    assert sorted(counts, reverse=True) == units_per_step(12, 4).tolist()
    length = sw.size.recruitment_months / (sw.design.steps + 1)
    assert np.allclose(lst.table["crossover_month"], lst.table["step"] * length)
    assert (lst.schedule.sum(axis=1).to_numpy() == 5 - lst.table["step"].to_numpy()).all()
    man = write_allocation(sw, 4, tmp_path / "sw")
    assert (tmp_path / "sw" / "schedule.png").stat().st_size > 1000
    assert set(man["files"]) == {"allocation.csv", "schedule.csv"}
    assert verify_allocation(tmp_path / "sw") == []
    schedules = {allocation_list(sw, s).table["step"].to_numpy().tobytes() for s in range(10)}
    assert len(schedules) == 10  # the seed decides which unit starts when
    cl = load_scenario(PARAMS / "fit_cluster.yaml")
    arms = allocation_list(cl, 1).table["arm"]
    assert arms.sum() == 6 and len(arms) == 12  # 1:1 over twelve units


def test_permuted_blocks_keeps_the_simulators_stream():
    # the fixed-size scheme the simulator used before the rule was shared, written out:
    # the shared rule must consume the generator identically (simulated trials unchanged)
    n_per_group, share, size = np.array([7, 5]), 2 / 3, 3
    old_rng, new_rng = np.random.default_rng(8), np.random.default_rng(8)
    n_blocks = -(-n_per_group // size)
    template = np.array([1, 1, 0], dtype=np.int8)
    order = np.argsort(old_rng.random((int(n_blocks.sum()), size)), axis=1)
    flat = template[order].ravel()
    want = np.concatenate([flat[0:7], flat[9:14]])
    assert (_blocked(n_per_group, share, size, new_rng) == want).all()
    mixed = permuted_blocks([2, 4, 6], 0.5, np.random.default_rng(0))
    assert [mixed[:2].sum(), mixed[2:6].sum(), mixed[6:].sum()] == [1, 2, 3]
