"""bench/roofline.py's model and tables, on figures made up for the purpose (no simulator),
and the --sim output of a kernel file (traced figures, not simulated seconds)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import roofline  # noqa: E402

H100 = roofline.H100_SXM


def metrics(**figures):
    names = {"ld_sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
             "st_sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
             "shared_ld": "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
             "dram_min": "model__dram_bytes_min", "no_reuse": "model__dram_bytes_no_reuse"}
    return {names[k]: v for k, v in figures.items()}


def test_each_resource_bounds_at_its_peak():
    """A copy of 1 GB: 2^25 sectors in, 2^25 out, 1 GB distinct (larger than L2: every
    requested sector may come from DRAM). DRAM: 1.07e9 / 3.35e12 = 320 us; the L1 path:
    2^26 sectors / 4 per clock / (132 SMs x 1.98 GHz) = 64 us. DRAM bounds it."""
    p = roofline.predict(metrics(ld_sectors=2**25, st_sectors=2**25, dram_min=2**30, no_reuse=2**31), 0, 100000)
    assert p["bound"] == "DRAM"
    assert p["low_s"] == pytest.approx(2**30 / 3.35e12)
    assert p["resources_s"]["L1/shared"] == pytest.approx(2**26 / 4 / (132 * 1.98e9))
    # No overlap: the sum, with DRAM at the no-reuse bytes (1 GB > L2) and one launch (10 us).
    assert p["high_s"] == pytest.approx(2**26 / 4 / (132 * 1.98e9) + 2**31 / 3.35e12 + 10e-6)


def test_compute_bound_and_few_blocks():
    """8.6 GFLOP at 66.9 TFLOP/s: 128 us on all SMs; on 12 blocks only 12 SMs work."""
    assert roofline.predict({}, 8.6e9, 1000)["low_s"] == pytest.approx(8.6e9 / 66.9e12)
    few = roofline.predict({}, 8.6e9, 12)
    assert few["bound"] == "compute" and few["low_s"] == pytest.approx(8.6e9 / (66.9e12 * 12 / 132))
    assert few["sms_used"] == 12


def test_a_global_request_costs_a_pass_however_few_its_sectors():
    """2^20 broadcast loads of one sector each: 2^20 passes, not 2^18."""
    p = roofline.predict({"l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum": 2**20,
                          "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum": 2**20}, 0, 132)
    assert p["resources_s"]["L1/shared"] == pytest.approx(2**20 / (132 * 1.98e9))


def test_shared_wavefronts_and_launch():
    p = roofline.predict(metrics(shared_ld=132 * 1.98e9 * 1e-3), 0, 132)     # 1 ms of wavefronts
    assert p["bound"] == "L1/shared" and p["low_s"] == pytest.approx(1e-3)
    empty = roofline.predict({}, 0, 1)
    assert empty["bound"] == "launch" and empty["low_s"] == empty["high_s"] == pytest.approx(10e-6)


def test_a_small_footprint_is_read_once():
    """Within L2 the distinct bytes bound DRAM both ways: sectors requested again hit L2."""
    p = roofline.predict(metrics(dram_min=10e6, no_reuse=500e6), 0, 1000)
    assert p["resources_s"]["DRAM"] == pytest.approx(10e6 / 3.35e12)
    assert p["high_s"] < 500e6 / 3.35e12


def test_extrapolation_is_linear_in_the_reduction():
    low = {"l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum": 10.0,
           "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum": 40.0}
    high = {"l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum": 14.0,
            "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum": 56.0}
    out = roofline._extrapolate(low, high, 1, 2, 64)
    assert out["l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"] == 10 + 4 * 63
    assert out["l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_ld.ratio"] == 4.0


def test_predicted_tables_say_predicted(capsys):
    row = {"family": "conv2d", "version": 3, "layer": "D2", "label": "D2 conv 64->128 32->16 fwd", "direction": "fwd",
           "launches": [{"name": "conv2d.forward_v3", "grid": [256, 1, 1], "block": [256, 1, 1], "flops": 8.6e9,
                         "metrics": metrics(shared_ld=1e7, dram_min=5e7)}]}
    figures = {"rows": [row], "date": "2026-12-07", "sources": {"conv2d": "not the source"}}
    rows = roofline.print_predictions(figures, "conv2d", {3: "implicit-gemm"})
    out = capsys.readouterr().out
    assert "PREDICTED" in out and "STALE" in out and rows[0]["bound"] == "compute"
    assert "PREDICTED" in roofline.figures_markdown(figures)


def test_sim_output_shows_traced_figures_not_seconds():
    """python -m dcgan_cuda.kernels.elementwise --sim: memory figures per check, no timing."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    proc = subprocess.run([sys.executable, "-m", "dcgan_cuda.kernels.elementwise", "--sim"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "simulated" not in proc.stdout and "gld sec/req" in proc.stdout
    relu = next(line for line in proc.stdout.splitlines() if line.startswith("1 grid-stride") and "relu 2x3x5x7" in line)
    assert relu.split()[-6] == "2"           # launches: forward and backward


def test_figures_go_stale_when_code_changes_not_prose(tmp_path, monkeypatch):
    kernels = tmp_path / "kernels"
    (kernels / "family").mkdir(parents=True)
    (tmp_path / "bench").mkdir()
    (kernels / "jit.py").write_text('"""The launcher."""\nTHREADS = 256\n')
    (kernels / "family" / "__init__.py").write_text('"""A family."""\nfrom ..helper import h  # it needs h\n')
    helper = kernels / "helper.py"
    helper.write_text('def h(x):\n    """Doubles."""\n    return 2 * x\n')
    monkeypatch.setattr(roofline, "HERE", str(tmp_path / "bench"))
    traced = roofline.source_fingerprint("family")
    helper.write_text('def h(x):\n    """Twice x, in other words."""\n    # a comment\n    return 2 * x\n')
    assert roofline.source_fingerprint("family") == traced
    helper.write_text('def h(x):\n    """Doubles."""\n    return 3 * x\n')   # the code of an imported file
    assert roofline.source_fingerprint("family") != traced
    helper.write_text('def h(x):\n    """Doubles."""\n    return 2 * x\n')
    (kernels / "jit.py").write_text('"""The launcher."""\nTHREADS = 128\n')
    assert roofline.source_fingerprint("family") != traced
