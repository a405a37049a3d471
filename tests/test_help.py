"""Every entry point's --help states each default once, and truly.

An entry point is any file of the project a user runs: a module with a ``__main__`` block
under dcgan_cuda/ or kernels/ (run as ``python -m dcgan_cuda...``), a package's
``__main__.py``, or a script in bench/. They are found by looking at the files, so a new
tool is checked without anyone adding it here. All their help texts are printed by one
child process (a ``--help`` runs the module as ``python -m`` would, which must not happen
twice in the test process: kernel modules register their kernels when executed).
"""
import contextlib
import io
import json
import os
import re
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What a help text says when it states a default itself, as cli.STATES_DEFAULT reads it.
DEFAULT_STATEMENT = re.compile(r"\(default\b|\bdefault:|\bdefault \d")


def entry_points():
    """[(name, script path or None)]: modules by their ``python -m`` name, bench scripts by path."""
    found = []
    for top, package in (("dcgan_cuda", "dcgan_cuda"), ("kernels", "dcgan_cuda.kernels"), ("bench", None)):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.name != "__main__.py" and '__name__ == "__main__"' not in path.read_text(encoding="utf-8"):
                continue
            if package is None:
                found.append((f"bench/{path.name}", str(path)))
            else:
                parts = [p for p in path.relative_to(ROOT / top).with_suffix("").parts if p != "__main__"]
                found.append((".".join([package, *parts]), None))
    return found


def print_every_help():
    """Child process: {entry point: [exit status, --help's stdout]} as JSON on stdout."""
    warnings.simplefilter("ignore")   # runpy warns that a module it runs was imported before
    results = {}
    for name, script in entry_points():
        saved_argv, saved_path = sys.argv, list(sys.path)
        sys.argv = [script or name, "--help"]
        if script:
            sys.path.insert(0, os.path.dirname(script))   # as `python bench/x.py` sets it
        text = io.StringIO()
        try:
            with contextlib.redirect_stdout(text):
                if script:
                    runpy.run_path(script, run_name="__main__")
                else:
                    runpy.run_module(name, run_name="__main__", alter_sys=True)
            status = "returned without exiting"
        except SystemExit as exc:
            status = exc.code or 0
        except Exception as exc:  # noqa: BLE001 -- reported by the test, with the entry point's name
            status = f"{type(exc).__name__}: {exc}"
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
        results[name] = [status, text.getvalue()]
    sys.stdout.write(json.dumps(results))


@pytest.fixture(scope="module")
def helps():
    env = dict(os.environ, COLUMNS="100")
    proc = subprocess.run([sys.executable, __file__, "--print-every-help"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def option_entries(help_text):
    """{'--flag': its help, on one line}, from the 'options:' part of a --help."""
    entries, current = {}, None
    for line in help_text.splitlines():
        match = re.match(r"^  (-{1,2}[\w-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {k: " ".join(v.split()) for k, v in entries.items()}


def test_the_entry_points_are_found(helps):
    # The ones a README names: if discovery broke, the checks below would pass on nothing.
    for name in ("dcgan_cuda.train", "dcgan_cuda.evaluate", "dcgan_cuda.walk", "dcgan_cuda.probe",
                 "dcgan_cuda.kernels.conv2d", "dcgan_cuda.kernels.elementwise", "bench/train_bench.py",
                 "bench/conv_bench.py"):
        assert name in helps
    failed = {name: status for name, (status, _) in helps.items() if status != 0}
    assert not failed, f"--help did not exit 0: {failed}"
    silent = [name for name, (_, text) in helps.items() if not text.strip()]
    assert not silent, f"--help printed nothing: {silent}"


def test_no_default_is_none_or_said_twice(helps):
    bad = []
    for name, (_, text) in helps.items():
        for flag, entry in option_entries(text).items():
            statements = len(DEFAULT_STATEMENT.findall(entry))
            if "(default: None)" in entry or "(default: )" in entry or statements > 1:
                bad.append(f"{name} {entry}")
            if re.search(r"\(default: (False|True)\)", entry):
                bad.append(f"{name} {entry}  (an on/off flag has no default to show)")
    assert not bad, "\n".join(bad)


def test_a_default_that_exists_is_shown(helps):
    """The formatter drops only what is not true; a real default still reaches the user."""
    entries = option_entries(helps["dcgan_cuda.evaluate"][1])
    assert "(default: 1000)" in entries["--n-samples"]
    assert "(default: train)" in entries["--bn-mode"]
    walk = option_entries(helps["dcgan_cuda.walk"][1])
    assert "(default: out/walk)" in walk["--outf"]
    assert "(default: 1)" in walk["--manualSeed"]   # its help says "by default", not what the default is


def test_train_states_the_defaults_it_applies(helps):
    """train's flags default to None (the dataset decides some); the numbers their help texts
    give must be the ones fill_defaults puts in."""
    from dcgan_cuda import train
    args = train.parse_args([])
    train.fill_defaults(args)
    entries = option_entries(helps["dcgan_cuda.train"][1])
    checked = 0
    for flag, entry in entries.items():
        match = re.search(r"\(default: ([0-9.e-]+)[);]", entry)
        dest = flag.lstrip("-")
        if match and hasattr(args, dest):
            assert float(match.group(1)) == float(getattr(args, dest)), entry
            checked += 1
    assert checked >= 6, entries   # batchSize, nz, ngf, ndf, lr, beta1, weight_decay


if __name__ == "__main__" and sys.argv[1:] == ["--print-every-help"]:
    print_every_help()
