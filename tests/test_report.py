"""benchmarks/report.py: the result tables of README and docs are generated from committed JSON."""

from __future__ import annotations

import importlib.util
import re
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


def _regions() -> list[tuple[str, str]]:
    """(document, table name) of every generated region in README and docs."""
    report = _report()
    return [(str(path.relative_to(ROOT)), m.group("name")) for path in report.documents()
            for m in report.MARKER.finditer(path.read_text())]


def test_every_table_is_in_a_document_and_every_region_has_a_table():
    report = _report()
    used = {name for _, name in _regions()}
    assert used == set(report.TABLES), (set(report.TABLES) - used, used - set(report.TABLES))
    for doc in ("docs/host_performance.md", "docs/gpu.md", "docs/simt_vs_mimd.md", "docs/design.md"):
        assert any(d == doc for d, _ in _regions()), doc


#: a measured figure: a ratio, a time, a size, a rate or a share
FIGURE = re.compile(r"\d(?=[\d.,]*(?:x\b| ?(?:ms|us|s|MiB|GB|TB/s|img/s)\b|%))")


@pytest.mark.parametrize("doc,name", _regions())
def test_check_fails_when_any_generated_table_is_edited(doc, name, tmp_path, monkeypatch):
    """A measured figure typed over in any generated region (the first one below a table's header,
    where it has a table) makes --check fail; a rewrite restores it."""
    report = _report()
    text = (ROOT / doc).read_text()
    region = next(m for m in report.MARKER.finditer(text) if m.group("name") == name)
    body = region.group("body")
    separator = re.search(r"^\|(?: ?-+ ?\|)+\n", body, re.M)
    start = separator.end() if separator else 0
    digit = FIGURE.search(body, start) or re.compile(r"\d").search(body, start)
    assert digit, f"{name} in {doc} holds no figure"
    edited_body = body[:digit.start()] + str((int(digit.group()) + 1) % 10) + body[digit.end():]
    edited = text[:region.start("body")] + edited_body + text[region.end("body"):]
    target = tmp_path / "doc.md"
    target.write_text(edited)
    monkeypatch.setattr(report, "ROOT", tmp_path)
    monkeypatch.setattr(report, "documents", lambda root=tmp_path: [target])
    assert report.main(["--check"]) == 1
    assert report.main([]) == 0 and target.read_text() == text
    assert report.main(["--check"]) == 0


def test_the_newest_cpu_folder_is_named_once():
    """Every current-standing CPU table reads CPU_FOLDER: its name is written nowhere else in
    report.py, and the tables fail without it."""
    report = _report()
    source = (ROOT / "benchmarks" / "report.py").read_text()
    assert source.count(f'"{report.CPU_FOLDER}"') == 1
    report.CPU_FOLDER = "no-such-folder"
    for table in (report.cpu_main, report.host_targets, report.simt_fusion, report.simt_published,
                  lambda: report.simt_study("batch")):
        with pytest.raises(FileNotFoundError, match="no-such-folder"):
            table()


def _old_folders() -> list[str]:
    note = (ROOT / "benchmarks" / "results" / "NOTE-baselines.md").read_text()
    return re.findall(r"^\| `([\w-]+)/`", note, re.M)


#: a baseline library, named anywhere in a table or its caption
LIBRARY = re.compile(r"snn ?torch|spikingjelly", re.I)


def test_tables_from_old_baseline_folders_say_so():
    """A generated table that draws a ratio from a folder measured before issue 18 carries the
    old-baselines text, unless it names no baseline library at all: then its ratios are between
    fusedsnn's own paths, which the old baselines' faults do not touch."""
    report = _report()
    old = _old_folders()
    assert "h200-2026-11-26" in old and "cpu-2026-12-03" not in old
    exempt = set()
    for name, table in report.TABLES.items():
        text = table()
        rows = [line for line in text.splitlines() if line.startswith("|")]
        if any(f"{folder}/" in text for folder in old) and any(RATIO.search(r) for r in rows[2:]):
            if LIBRARY.search(text):
                assert "old baselines" in text and "NOTE-baselines.md" in text, name
            else:
                assert "no baseline library is compared" in text.lower(), name
                exempt.add(name)
    assert exempt == {"design-spike-products", "design-memory-speed"}


# ---------------------------------------------------------------------------------------------
# no ratio across execution modes
# ---------------------------------------------------------------------------------------------

#: a speed-up figure such as 3x, 0.99x, 157x
RATIO = re.compile(r"(?<![\w.])\d+(?:\.\d+)?x\b")
#: a graph or compiled execution mode, or a provider run that way
MODE = re.compile(r"(?<![A-Za-z])(graph|compiled?|cuda_graph|torch\.compile)(?![A-Za-z])", re.I)
#: a baseline named without a compiled / graph qualifier: snnTorch or SpikingJelly run eagerly
EAGER_BASELINE = re.compile(r"(?<![A-Za-z])(snntorch|spikingjelly)(?![-\w]*(compiled|graph))", re.I)


def _tables(text: str) -> list[list[list[str]]]:
    """Markdown tables of a text: rows of cells, the header first, the separator dropped."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def _names_eager_baseline(cell: str) -> bool:
    return bool(EAGER_BASELINE.search(cell)) and "same mode" not in cell.lower()


def cross_mode_ratios(text: str) -> list[str]:
    """Table rows where a ratio stands in a graph or compiled context (the row or the ratio's
    column header names one) while the row, or any column header of its table, names an eager
    baseline (plain snnTorch or SpikingJelly, without "same mode")."""
    bad = []
    for table in _tables(text):
        header = table[0]
        eager_column = any(_names_eager_baseline(h) for h in header)
        for row in table[1:]:
            for i, cell in enumerate(row):
                if not RATIO.search(cell):
                    continue
                head = header[i] if i < len(header) else ""
                moded = any(MODE.search(c) for c in row) or MODE.search(head)
                if moded and (eager_column or any(_names_eager_baseline(c) for c in row)):
                    bad.append(" | ".join(row))
                    break
    return bad


def test_cross_mode_check_catches_the_old_forms():
    old_readme = ("| network | provider | images/s | snnTorch | speed-up |\n| --- | --- | --- | --- | --- |\n"
                  "| DSNN | fused (CUDA graph) | 507,029 | snntorch 3,228 | 157x |\n")
    old_simt = ("| mode | provider | median_ms | speedup_vs_snntorch |\n|---|---|---|---|\n"
                "| forward+backward | fused-triton (CUDA graph) | 1.492 | 22.1x |\n")
    compiled_vs_eager = ("| case | mode | fused | baseline | ratio |\n| --- | --- | --- | --- | --- |\n"
                         "| Leaky | compiled | 8.72 ms | spikingjelly 41.6 ms | 4.8x |\n")
    same_mode = ("| case | mode | fused | fastest baseline, same mode | ratio |\n| --- | --- | --- | --- | --- |\n"
                 "| Leaky | compiled | 8.72 ms | snntorch-compiled 8.65 ms, compile 4.9 s | 0.99x |\n"
                 "| Leaky | eager | 6.96 ms | spikingjelly 41.6 ms | 6x |\n"
                 "| DSNN | graph | 507,029 img/s | not measured | - |\n")
    assert len(cross_mode_ratios(old_readme)) == 1
    assert len(cross_mode_ratios(old_simt)) == 1
    assert len(cross_mode_ratios(compiled_vs_eager)) == 1
    old_gpu = ("| case | final run | snnTorch, same GPU | target | status |\n| --- | --- | --- | --- | --- |\n"
               "| Leaky fwd+bwd, eager | 1.72 ms | 32.9 ms | >= 20x | 19.1x: missed |\n"
               "| same, replayed from a CUDA graph | 1.49 ms | | | 22.1x: met |\n")
    assert cross_mode_ratios(old_gpu) == ["same, replayed from a CUDA graph | 1.49 ms |  |  | 22.1x: met"]
    assert cross_mode_ratios(same_mode) == []


def test_no_table_sets_a_graph_or_compiled_run_against_an_eager_baseline():
    report = _report()
    for path in report.documents():
        assert cross_mode_ratios(path.read_text()) == [], path


def test_simt_doc_is_rendered_from_committed_results():
    """docs/simt_vs_mimd.md is what benchmarks/simt_vs_mimd.py --render-only writes; the script
    refuses a speed-up whose baseline ran in another execution mode."""
    spec = importlib.util.spec_from_file_location("simt_vs_mimd", ROOT / "benchmarks" / "simt_vs_mimd.py")
    simt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(simt)
    assert simt.render_doc() == (ROOT / "docs" / "simt_vs_mimd.md").read_text()
    case = dict(network="DSNN", batch=8, num_steps=25, hidden=1000, channels=None, neuron="leaky", outputs=10,
                precision="float32")
    rows = [{**case, "provider": "snntorch-hoisted", "execution_mode": "eager", "baseline": "snntorch-hoisted"},
            {**case, "provider": "fused", "execution_mode": "eager", "baseline": "snntorch-hoisted"}]
    simt.check_same_mode(rows)
    with pytest.raises(ValueError, match="cross modes"):
        simt.check_same_mode(rows + [{**case, "provider": "fused", "execution_mode": "graph",
                                      "baseline": "snntorch-hoisted"}])


# ---------------------------------------------------------------------------------------------
# the memory-lean tables
# ---------------------------------------------------------------------------------------------

def _one_table(text: str) -> tuple[list[str], list[list[str]]]:
    (header, *rows), = _tables(text)
    return header, rows


def test_h100_memory_table_draws_ratios_among_fused_modes_only():
    """README's H100 memory table: the memory-lean modes against fused default, from memory.json; the
    snnTorch column (an old baseline) holds absolute figures only and the text says what it ran."""
    report = _report()
    text = report.TABLES["gpu-h100-memory"]()
    data = report._load(f"{report.H100_FOLDER}/memory/memory.json")
    header, rows = _one_table(text)
    snn = next(i for i, h in enumerate(header) if "snntorch" in h.lower())
    assert "old baseline" in header[snn] and "no ratio" in header[snn]
    assert len(rows) == len({(r["network"], r["num_steps"]) for r in data})
    assert all(not RATIO.search(row[snn]) for row in rows)
    assert "old baselines" in text and "NOTE-baselines.md" in text and "does not require grad" in text
    lean = report._one(data, network="MLP3", num_steps=500, provider="fused-lean")
    chunked = report._one(data, network="DSNN", num_steps=2000, provider="fused-chunked")
    line = next(r for r in rows if r[0].startswith("3-layer") and r[0].endswith("T=500"))
    assert line[1] == f"{lean['peak_vs_fused']:#.2g}x, {lean['speed_vs_fused']:#.2g}x"
    line = next(r for r in rows if r[0].startswith("DSNN") and r[0].endswith("T=2000"))
    assert line[2] == f"{chunked['peak_vs_fused']:#.2g}x, {chunked['speed_vs_fused']:#.2g}x"


def test_cpu_memory_table_labels_its_snntorch_column():
    """docs/design.md's memory section table: exact bytes from memory.json, the snnTorch column and
    the ratios to it labelled as an old baseline."""
    report = _report()
    text = report.TABLES["design-memory-cpu"]()
    data = report._load(f"{report.LEAN_CPU_FOLDER}/memory/memory.json")
    header, rows = _one_table(text)
    assert "old baseline" in next(h for h in header if "snntorch" in h.lower() and "peak" in h)
    assert "old baselines" in text and "does not require grad" in text and "not speed" in text
    chunked = report._one(data, network="MLP3", num_steps=500, provider="fused-chunked")
    line = next(r for r in rows if r[0].startswith("3-layer") and r[0].endswith("T=500"))
    assert line[1] == f"{chunked['peak_mib']:.3g} MiB"
    assert line[5:7] == [f"{chunked['peak_vs_fused']:#.2g}x", f"{chunked['peak_vs_snntorch']:#.2g}x"]


def test_spike_product_and_memory_speed_tables_follow_their_json():
    """docs/design.md's spike products (time relative to BLAS) and memory-lean speed (relative to fused
    default, median of per-round ratios) tables: one row per JSON row or run, figures as in the JSON."""
    report = _report()
    products = report._load(f"{report.LEAN_CPU_FOLDER}/spike_products.json")
    _, rows = _one_table(report.TABLES["design-spike-products"]())
    assert len(rows) == len(products)
    for row, r in zip(rows, products):
        assert row[3] == f"{r['forward_spike_ms'] / r['forward_blas_ms']:.2f}x"
        assert row[5] == f"{r['dW_spike_ms'] / r['dW_blas_ms']:.2f}x"
    header, rows = _one_table(report.TABLES["design-memory-speed"]())
    assert len(rows) == len(report._MEMORY_SPEED)
    for row, path in zip(rows, report._MEMORY_SPEED):
        runs = {r["provider"]: r for r in report._load(f"{report.LEAN_CPU_FOLDER}/{path}")}
        assert f"{runs['fused']['repeats']} rounds" in row[0]
        for cell, provider in zip(row[2:], report._SPEED_MODES):
            r = runs[provider]
            assert cell == f"{r['speed_vs_fused']:.2f}x ({r['speed_q20']:.2f}-{r['speed_q80']:.2f})"


def test_gpu_readme_outcome_quotes_the_h200_json():
    """benchmarks/gpu/README.md's H200 outcome (prose, not generated): every figure it quotes is the
    JSON's, and the graph-replay figures stand without a speed-up against eager snnTorch."""
    report = _report()
    text = (ROOT / "benchmarks" / "gpu" / "README.md").read_text()
    outcome = text[text.index("- Outcome on the H200"):]
    outcome = " ".join(outcome[:outcome.index("\n- ")].split())
    targets = report._load(f"{report.H200_FOLDER}/gpu_targets.json")
    steps = report._load(f"{report.H200_FOLDER}/step_modes.json")
    eager = report._one(targets, provider="fused-triton", mode="forward+backward")
    graph = report._one(targets, provider="fused-triton (CUDA graph)", mode="forward+backward")
    snn = report._one(targets, provider="snntorch", mode="forward+backward")
    forward = report._one(targets, provider="fused-triton", mode="forward")
    quoted = [f"the forward {forward['bytes_moved'] / 1e9:.2f} GB",
              report._time(eager["median_s"]), report._time(graph["median_s"]), report._time(snn["median_s"]),
              f"{eager['copy_bytes_per_s'] / 1e12:.2f} TB/s", f"{eager['bytes_moved'] / 1e9:.2f} GB",
              f"{eager['fraction_of_copy_bandwidth']:.2f} and {graph['fraction_of_copy_bandwidth']:.2f}",
              report._ratio(snn["median_s"] / eager["median_s"]), f"{eager['target_speedup_vs_snntorch']:g}x target"]
    for net in ("DSNN", "CSNN"):
        g = report._one(steps, provider="fused", network=net, mode="cuda_graph")["images_per_s"]
        quoted.append(f"{round(g, -2):,.0f} img/s" if net == "CSNN" else f"{round(g, -3):,.0f} img/s")
        quoted.append(f"{report._one(steps, provider='snntorch', network=net, mode='eager')['images_per_s']:,.0f}")
    for figure in quoted:
        assert figure in outcome, figure
    assert "not measured against a same-mode baseline" in outcome and "NOTE-baselines.md" in outcome
    # the one speed-up quoted is eager against eager; the other ratio is the target
    assert set(RATIO.findall(outcome)) == {report._ratio(snn["median_s"] / eager["median_s"]),
                                           f"{eager['target_speedup_vs_snntorch']:g}x"}
    assert "eager against it eager" in outcome
