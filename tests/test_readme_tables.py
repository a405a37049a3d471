"""kernels/README.md's per-family PREDICTED tables: the block between its markers is what
bench/roofline.py --readme-tables writes from the stored figures (so the two cannot drift),
and a GPU run filed under bench/results/ fills the measured column (a made-up one here)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import roofline  # noqa: E402

CARD = "NVIDIA H100 80GB HBM3"
WAVEFRONTS_PER_MS = 132 * 1.98e9 * 1e-3       # one ms of the L1/shared path on every SM


def test_readme_block_is_what_the_command_writes():
    text = (ROOT / "kernels" / "README.md").read_text()
    expected = roofline.readme_tables(roofline.load())
    assert roofline.readme_block(text) == expected, \
        "kernels/README.md's PREDICTED tables are out of date: python bench/roofline.py --readme-tables"


def conv_row(version, direction, ms):
    """A traced conv2d row of layer D2 whose one launch takes ``ms`` on the L1/shared path."""
    return {"family": "conv2d", "version": version, "layer": "D2", "direction": direction,
            "label": f"D2 conv 64->128 32->16 {direction}",
            "launches": [{"name": f"conv2d.k_v{version}", "grid": [1000, 1, 1], "block": [256, 1, 1], "flops": 0,
                          "metrics": {"l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum":
                                      ms * WAVEFRONTS_PER_MS}}]}


FIGURES = {"rows": [conv_row(6, "fwd", 1.0), conv_row(6, "bwd-data", 2.0), conv_row(7, "fwd", 1.0),
                    conv_row(7, "bwd-data", 2.0),
                    dict(conv_row(1, "", 0.5), family="reduction", layer="channel_sum 128x64x32x32",
                         label="channel_sum 128x64x32x32")]}
NAMES = {"conv2d": {6: "split-k", 7: "prefetch", 8: "narrow-channels"}, "reduction": {1: "block-per-channel"}}


def write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def table_row(block, title):
    return next(line for line in block.splitlines() if line.startswith(f"| {title} |")).strip("| ").split(" | ")


def test_measured_column_from_a_gpu_run(tmp_path):
    shapes = {"batch": 128, "image_size": 64, "ngf": 64, "ndf": 64, "arch": "pytorch"}
    label = "D2 conv 64->128 32->16 k4s2p1"
    write(tmp_path / "2027-01-05_h100" / "conv_bench.json", dict(shapes, machine=CARD, results=[
        {"layer": label, "direction": "fwd", "version": 6, "ms": 1.25},
        {"layer": label, "direction": "bwd-data", "version": 6, "ms": 2.5},
        {"layer": label, "direction": "fwd", "version": 7, "ms": 1.5}]))
    write(tmp_path / "2027-01-05_h100" / "train_bench.json",
          {"machine": CARD, "host_us_per_launch": {"direct": 4.5, "numba": 12.0}})
    # Neither counts: a conv_bench without a GPU (NumPy timings), and one at other shapes.
    write(tmp_path / "cpu" / "conv_bench.json", dict(shapes, numpy_results=[{"layer": label, "ms": 9.0}]))
    write(tmp_path / "small" / "conv_bench.json", dict(shapes, batch=64, machine="other card", results=[
        {"layer": label, "direction": "fwd", "version": 6, "ms": 0.1}]))
    runs = roofline.measured_runs(str(tmp_path))
    assert [run["folder"] for run in runs] == ["2027-01-05_h100"]
    block = roofline.readme_tables(FIGURES, runs, NAMES)

    six, seven, eight = (table_row(block, t) for t in ("6 split-k", "7 prefetch", "8 narrow-channels"))
    assert six[1:4] == ["1.00 - 1.01", "2.00 - 2.01", "3.00 - 3.02"]     # PREDICTED: L1 path + 10 us launch
    assert six[-1] == f"3.75 ({CARD})"                 # both cases measured: their sum
    assert seven[-1] == f"1.50 over 1 of 2 ({CARD})"   # a run stopped early: what it measured, said so
    assert eight[1:] == ["-", "-", "not traced yet", "-", "-"]
    assert table_row(block, "1 block-per-channel")[-1] == "-"
    assert f"4.5 us direct, 12.0 us numba per launch ({CARD}, bench/results/2027-01-05_h100/train_bench.json)" in block
    assert "bench/results/2027-01-05_h100/conv_bench.json" in block
    assert "none yet (no GPU run has timed this family)" in block     # reduction

    without = roofline.readme_tables(FIGURES, [], NAMES)
    assert table_row(without, "6 split-k")[-1] == "-" and "Measured: none yet (no GPU run)." in without
    assert all("PREDICTED" in line for line in without.splitlines() if line.startswith("| version"))


def test_unreadable_measurement_and_missing_markers_are_clear_errors(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "conv_bench.json").write_text("{cut short")
    with pytest.raises(ValueError, match="conv_bench.json: not a readable JSON file"):
        roofline.measured_runs(str(tmp_path))
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="has no <!-- predicted-tables:start -->"):
        roofline.write_readme_tables(str(readme), "tables")
    assert readme.read_text() == "no markers here\n"
    readme.write_text(f"before\n{roofline.TABLES_START}\nold\n{roofline.TABLES_END}\nafter\n")
    roofline.write_readme_tables(str(readme), "new")
    assert readme.read_text() == f"before\n{roofline.TABLES_START}\nnew\n{roofline.TABLES_END}\nafter\n"
