"""python -m dcgan_cuda.kernels.exercises {list | check ID... [--solution]}

Runs an exercise's checks in the two processes they need (checks.py): the simulator's,
for results and memory figures, and the real compiler's, for PTX. Prints each check and
exits 0 when all of them pass, 1 when one fails, 2 on a command it does not understand.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from .checks import EXERCISES, SIMULATOR, Check, compile_checks, load, one_line

PHASES = {"simulate": True, "compile": False}     # phase -> whether it runs under the simulator
PHASE_SECONDS = 600     # a phase's child process is stopped after this long: every exercise takes seconds


def run_phase(phase, keys, solution):
    """{key: [Check]} of one phase, in this process if it has the right mode, else in a child."""
    if PHASES[phase] == SIMULATOR:
        return {key: phase_checks(phase, key, solution) for key in keys}
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1" if PHASES[phase] else "0")
    command = [sys.executable, "-m", __spec__.parent, "_phase", phase, *keys] + (["--solution"] if solution else [])
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=PHASE_SECONDS)
        stdout, why = proc.stdout, (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
    except subprocess.TimeoutExpired as stopped:
        stdout = stopped.stdout.decode() if isinstance(stopped.stdout, bytes) else (stopped.stdout or "")
        why = f"did not finish in {PHASE_SECONDS} s (a kernel that never ends? a barrier some threads never reach?)"
    results = {}
    for line in stdout.splitlines():
        if line.startswith('{"key"'):
            entry = json.loads(line)
            results[entry["key"]] = [Check(*c) for c in entry["checks"]]
        else:                    # what the student's code printed: theirs to see
            print(line)
    for key in keys:
        if key not in results:   # the child died or stopped before reporting this exercise
            results[key] = [Check(f"the {phase} phase runs", False, why)]
    return results


def phase_checks(phase, key, solution):
    exercise = EXERCISES[key]
    try:
        module = load(exercise, solution)
    except Exception as error:  # noqa: BLE001  (a syntax error in the student's file, say)
        return [Check("the file imports", False, one_line(error))]
    if phase == "simulate":
        return exercise.simulate(module)
    return compile_checks(exercise, module)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dcgan_cuda.kernels.exercises",
                                     description="Exercises that check themselves (kernels/exercises/).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the exercises")
    check = sub.add_parser("check", help="check exercises: IDs (b1 ... a5) or 'all'")
    check.add_argument("ids", nargs="+")
    check.add_argument("--solution", action="store_true", help="check the reference solution instead")
    phase = sub.add_parser("_phase")             # internal: one phase, results as JSON lines
    phase.add_argument("phase", choices=sorted(PHASES))
    phase.add_argument("ids", nargs="+")
    phase.add_argument("--solution", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "list":
        for key, exercise in EXERCISES.items():
            print(f"{key}  {exercise.title:<48} kernels/exercises/{exercise.module}.py")
        return 0
    keys = list(EXERCISES) if args.ids == ["all"] else args.ids
    unknown = [k for k in keys if k not in EXERCISES]
    if unknown:
        parser.error(f"no exercise {', '.join(unknown)}; the exercises are {', '.join(EXERCISES)} (or 'all')")
    if args.command == "_phase":
        for key in keys:
            checks = phase_checks(args.phase, key, args.solution)
            print(json.dumps({"key": key, "checks": [list(c) for c in checks]}), flush=True)
        return 0

    simulated = run_phase("simulate", keys, args.solution)
    compiled = run_phase("compile", keys, args.solution)
    failed = 0
    for key in keys:
        exercise = EXERCISES[key]
        where = "solutions/" if args.solution else ""
        print(f"{key}  {exercise.title}  (kernels/exercises/{where}{exercise.module}.py)")
        checks = simulated[key] + [c for c in compiled[key] if c not in simulated[key]]   # an import error once
        for c in checks:
            print(f"  {'ok  ' if c.passed else 'FAIL'}  {c.name}: {c.detail}")
        passing = sum(c.passed for c in checks)
        failed += passing < len(checks)
        print(f"  {passing} of {len(checks)} checks pass\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
