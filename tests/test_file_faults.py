"""File-system faults: one clear line, exit 2, no traceback, no empty or partial file.

A full disk and an unwritable folder are simulated by making the writer raise the
``OSError`` the operating system would (tests run as root, where permissions do not bite).
"""

import errno
from pathlib import Path

import pandas as pd
import pytest

from fitlab.cli import main
from fitlab.cli import simulate as simulate_cmd

RUN = ["--reps", "3", "--estimators", "diff_means", "--no-progress"]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _one_clear_line(capsys, *words) -> str:
    err = capsys.readouterr().err
    assert err.startswith("fitlab: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


def _failing_writer(monkeypatch, code: int):
    def write(df, path):
        Path(path).write_text("half a fi")  # what a writer leaves when the disk fills up
        raise OSError(code, "simulated")

    monkeypatch.setitem(simulate_cmd.WRITERS, ".csv", write)


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, ["no space left"]),
    (errno.EACCES, ["permission denied", "not writable"]),
    (errno.EROFS, ["read-only"]),
])
def test_simulate_write_fault(tmp_path, capsys, monkeypatch, code, words):
    _failing_writer(monkeypatch, code)
    out = tmp_path / "new" / "t.csv"
    assert main(["simulate", "default", "--out", str(out)]) == 2
    _one_clear_line(capsys, str(out), *words)
    assert _files(tmp_path) == [] and not (tmp_path / "new").exists()


def test_output_path_under_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("keep me")
    assert main(["simulate", "default", "--out", str(tmp_path / "afile" / "t.csv")]) == 2
    _one_clear_line(capsys, "afile is a file, not a folder")
    assert main(["run", "default", *RUN, "--out", str(tmp_path / "afile")]) == 2
    _one_clear_line(capsys, "afile is a file, not a folder")
    assert _files(tmp_path) == ["afile"] and (tmp_path / "afile").read_text() == "keep me"


def test_output_exists_or_is_a_folder(tmp_path, capsys):
    out = tmp_path / "t.csv"
    out.write_text("earlier results")
    assert main(["simulate", "default", "--out", str(out)]) == 2
    _one_clear_line(capsys, "exists", "--overwrite")
    assert out.read_text() == "earlier results"
    assert main(["simulate", "default", "--out", str(out), "--overwrite"]) == 0
    assert len(pd.read_csv(out)) > 0
    (tmp_path / "d.csv").mkdir()
    assert main(["simulate", "default", "--out", str(tmp_path / "d.csv")]) == 2
    _one_clear_line(capsys, "is a folder")


def test_scenario_unreadable(tmp_path, capsys, monkeypatch):
    (tmp_path / "folder.yaml").mkdir()
    assert main(["power", str(tmp_path / "folder.yaml")]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err
    sc = tmp_path / "s.yaml"
    sc.write_text("size: {units: 6}\n")

    def denied(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert main(["simulate", str(sc), "--out", str(tmp_path / "o" / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert "cannot be read: permission denied" in err and "s.yaml" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_disk_full_during_a_run_leaves_it_resumable(tmp_path, capsys, monkeypatch):
    real = pd.DataFrame.to_parquet
    calls = {"n": 0}

    def fills_up(self, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second part file: the disk is full
            Path(path).write_bytes(b"PAR1 half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fills_up)
    argv = ["run", "default", *RUN, "--chunk", "1", "--no-null", "--out", str(tmp_path)]
    assert main(argv) == 2
    _one_clear_line(capsys, "no space left")
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert [p.name for p in (folder / "parts").iterdir()][0].startswith("effect-")
    assert len(list((folder / "parts").iterdir())) == 1  # no partial or temporary file
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    assert main(argv) == 0  # space again: the run finishes what is missing
    t = pd.read_parquet(folder / "replicates.parquet")
    assert len(t) == 3 and not t.duplicated(["role", "replicate", "estimator"]).any()


def test_damaged_part_file_named(tmp_path, capsys):
    argv = ["run", "default", *RUN, "--no-null", "--out", str(tmp_path)]
    assert main(argv) == 0
    capsys.readouterr()
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (folder / "parts" / "effect-000099-bad.parquet").write_bytes(b"not parquet")
    assert main(argv) == 2
    _one_clear_line(capsys, "effect-000099-bad.parquet", "damaged", "delete it")


def test_data_file_faults(tmp_path, capsys):
    (tmp_path / "d.csv").mkdir()
    assert main(["fit", str(tmp_path / "d.csv"), "--scenario", "default"]) == 2
    _one_clear_line(capsys, "is a folder")
    (tmp_path / "e.parquet").write_bytes(b"\x00garbage")
    assert main(["fit", str(tmp_path / "e.parquet"), "--scenario", "default"]) == 2
    _one_clear_line(capsys, "cannot be read")


def test_out_of_memory_is_one_line(capsys, monkeypatch, tmp_path):
    import simulate

    def too_big(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(simulate, "simulate_trial", too_big)
    assert main(["simulate", "default", "--out", str(tmp_path / "t.csv"), "--force"]) == 2
    _one_clear_line(capsys, "out of memory")
    assert _files(tmp_path) == []


def test_a_repeated_part_is_read_once(tmp_path):
    from fitlab.store import ScenarioStore

    store = ScenarioStore(tmp_path)
    rows = [{"role": "effect", "replicate": r, "estimator": "e", "estimate": 0.5 * r,
             "error": None} for r in range(3)]
    store.write_part(rows, "effect", 0)
    store.write_part(rows, "effect", 0)  # e.g. two runs into one folder before locks
    assert len(store.part_files()) == 2 and len(store.table()) == 3
