"""A command line that explains itself: help with defaults and examples, a readable power
summary, --version, doctor, and shell completion generated from the parser."""

import argparse
import json
import shutil
import subprocess

import pytest

from fitlab.cli import build_parser, main


def _commands():
    parser = build_parser()
    yield "fitlab", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from ((f"fitlab {n}", p) for n, p in action.choices.items())


def test_every_option_has_help_with_its_default_and_an_example():
    problems = []
    for name, parser in _commands():
        if name != "fitlab" and f"{name} " not in (parser.epilog or ""):
            problems.append(f"{name}: no examples in its epilog")
        for a in parser._actions:
            if isinstance(a, argparse._HelpAction | argparse._SubParsersAction):
                continue
            label = f"{name} {'/'.join(a.option_strings) or a.dest}"
            text = (a.help or "") % {"default": a.default, "choices": a.choices}
            if not text.strip():
                problems.append(f"{label}: no help")
            elif a.option_strings and "default" not in text:
                problems.append(f"{label}: help does not state the default")
            if text and a.nargs != 0 and "e.g." not in text:
                problems.append(f"{label}: help has no example (e.g. ...)")
    assert not problems, "\n".join(problems)


def test_version_prints_version_and_commit(capsys):
    from fitlab import __version__
    from fitlab.manifest import git_commit

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fitlab {__version__} (git commit {git_commit()})"


def test_doctor_reports_versions_caches_and_cores(capsys):
    assert main(["doctor", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert {"pymc", "nutpie", "numba", "arviz", "papermill", "numpy", "pandas"} <= set(
        rep["packages"])
    assert rep["python"]["version"].count(".") == 2
    assert rep["caches"]["pytensor compile dir"].split(" (")[1].startswith(("warm", "cold"))
    assert "numba cache dir" in rep["caches"] and rep["machine"]["cores"] >= 1
    assert main(["doctor"]) == 0
    assert "pytensor compile dir" in capsys.readouterr().out


def test_power_prints_a_short_summary_and_json_keeps_all(capsys, monkeypatch):
    assert main(["power", "params/ips_2to1.yaml", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert main(["power", "params/ips_2to1.yaml"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("ips_2to1: individual randomization, binary outcome")
    summary = text.split("\nclaim check")[0].splitlines()
    assert len(summary) < 20 and "variance_per_client" not in text
    # the IPS plan's power sentence, recomputed, follows the summary
    assert "claimed power: 0.82" in text and "true power" in text
    for label in ("size", "evaluable", "effect", "ICC", "design effect", "power", "method"):
        assert any(line[2:].startswith(label) for line in lines), label
    assert f"{res['power']:.3g}" in text and "dilution 0.4" in text
    assert "partially nested" in text
    # the solver's lines, from the textbook formulas (quick enough for a summary)
    import simulate.power as sp

    monkeypatch.setattr(sp, "mde", lambda sc, target, method: {"d": 0.61}, raising=False)
    assert main(["power", "default"]) == 0
    text = capsys.readouterr().out
    assert "detectable effect d 0.61 at power 0.8 (textbook)" in text
    assert "size.units" in text and "of the mixed model fitted" in text


def _bash_complete(script, words):
    cmd = (f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
           f"COMP_CWORD={len(words) - 1}; _fitlab; echo \"${{COMPREPLY[@]}}\"")
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completion_from_the_parser(tmp_path, capsys):
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "fitlab.bash"
    script.write_text(capsys.readouterr().out)
    assert _bash_complete(script, ["fitlab", "ru"]) == ["run"]
    assert _bash_complete(script, ["fitlab", "run", "default", "--target"]) == [
        "--target-mcse", "--target-on"]
    assert _bash_complete(script, ["fitlab", "fit", "d.csv", "--time", ""]) == ["log", "linear"]
    assert "diff_means" in _bash_complete(script, ["fitlab", "run", "x", "--estimators", "d"])
    assert _bash_complete(script, ["fitlab", "completion", ""]) == ["bash", "zsh"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")
def test_zsh_completion_loads(tmp_path, capsys):
    assert main(["completion", "zsh"]) == 0
    script = tmp_path / "_fitlab"
    script.write_text(capsys.readouterr().out)
    subprocess.run(["zsh", "-n", str(script)], check=True)
    out = subprocess.run(["zsh", "-c", f"autoload -U compinit; compinit -u -d {tmp_path}/zc; "
                          f"source {script}; print $_comps[fitlab]"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "_fitlab"


def test_user_facing_text_cites_what_the_user_has():
    # every scenario field is in docs/MODEL.md's table of defaults, and no user-facing
    # text points at files a clone does not have (the lab's internal domain notes and
    # source documents)
    import re
    from pathlib import Path

    from simulate.scenario import BinaryOutcome, Scenario

    root = Path(__file__).resolve().parents[1]
    model = (root / "docs" / "MODEL.md").read_text()
    table = model[model.index("## 3."):model.index("## 4.")]
    missing = [f"{name}.{field}" for name, info in Scenario.model_fields.items()
               if hasattr(info.annotation, "model_fields")
               for field in info.annotation.model_fields if f"`{field}`" not in table
               and f".{field}`" not in table]
    missing += [f for f in BinaryOutcome.model_fields if f not in table]
    assert not missing, missing
    files = [root / "README.md", *root.glob("params/**/*.yaml"), *root.glob("notebooks/*.ipynb"),
             *root.glob("docs/*.md"),
             *(p for p in root.glob("src/**/*.py") if "bayes" not in p.parts)]
    bad = [f"{p.relative_to(root)}: {m.group(0)}" for p in files
           for m in re.finditer(r"DOMAIN\.md|shared/|seeds? 00\d|seeds/", p.read_text())]
    assert not bad, bad
