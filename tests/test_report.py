"""benchmarks/report.py: the result tables of README and docs are generated from committed JSON."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_tables_agree_with_their_json():
    out = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_check_fails_when_a_table_is_edited_by_hand(tmp_path, monkeypatch):
    report = _report()
    readme = (ROOT / "README.md").read_text()
    assert "<!-- report:cpu-main -->" in readme
    edited = readme.replace("| 3.4x |", "| 9.9x |", 1)
    assert edited != readme
    (tmp_path / "README.md").write_text(edited)
    monkeypatch.setattr(report, "ROOT", tmp_path)
    monkeypatch.setattr(report, "documents", lambda root=tmp_path: [tmp_path / "README.md"])
    assert report.main(["--check"]) == 1
    assert report.main([]) == 0 and (tmp_path / "README.md").read_text() == readme
    assert report.main(["--check"]) == 0


def test_old_baselines_are_labelled_and_unknown_tables_refused():
    report = _report()
    h200 = report.TABLES["gpu-h200"]()
    assert "old baselines" in h200 and "NOTE-baselines.md" in h200
    assert "old baselines" not in report.cpu_main()  # measured against the strongest, mode against mode
    assert (ROOT / "benchmarks" / "results" / "NOTE-baselines.md").exists()
    with pytest.raises(KeyError, match="no table named"):
        report.render("<!-- report:nope -->\nx\n<!-- /report:nope -->")
