"""The exercises' checkers: the PTX checks of every reference solution pass, a skeleton
that does not shuffle fails the shuffle check, and the one command a student runs works
(its simulator checks run in tests/sim/test_exercises.py)."""
import os
import subprocess
import sys

import pytest

from dcgan_cuda.kernels.exercises.checks import EXERCISES, compile_checks, load

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("PTX compilation needs the real Numba CUDA target, not the simulator", allow_module_level=True)


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_every_kernel_of_the_solution_compiles_for_sm90(key):
    exercise = EXERCISES[key]
    checks = compile_checks(exercise, load(exercise, solution=True))
    assert len(checks) >= 1 + bool(exercise.ptx_must_contain)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


@pytest.mark.parametrize("key", [k for k, e in sorted(EXERCISES.items()) if e.ptx_must_contain])
def test_a_skeleton_without_shuffles_fails_the_ptx_check(key):
    exercise = EXERCISES[key]
    checks = {c.name: c.passed for c in compile_checks(exercise, load(exercise))}
    assert checks[f"the PTX has {exercise.ptx_must_contain}"] is False
    assert all(passed for name, passed in checks.items() if "compiles" in name)   # skeletons compile


def run_command(*args):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    return subprocess.run([sys.executable, "-m", "dcgan_cuda.kernels.exercises", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_one_command_checks_an_exercise_in_both_processes():
    solved = run_command("check", "i3", "--solution")
    assert solved.returncode == 0, solved.stdout + solved.stderr
    assert "5 of 5 checks pass" in solved.stdout and "FAIL" not in solved.stdout
    assert "the PTX has shfl.sync: found" in solved.stdout          # from the compiler's process
    assert "no shared memory, one global load per thread" in solved.stdout   # from the simulator's
    untouched = run_command("check", "i3")
    assert untouched.returncode == 1
    assert untouched.stdout.count("FAIL") == 2


def test_an_unknown_exercise_is_one_line_and_exit_2():
    proc = run_command("check", "z9")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "no exercise z9" in proc.stderr and "Traceback" not in proc.stderr


def test_the_exercises_are_installed_packages():
    """A wheel carries only the packages setup.py names: the exercises and their solutions."""
    from pathlib import Path
    setup = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    for package in ("dcgan_cuda.kernels.exercises", "dcgan_cuda.kernels.exercises.solutions"):
        assert f'"{package}"' in setup
