"""The quickstart, CI and packaging agree with each other."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_quickstart_is_exactly_two_commands():
    commands = quickstart_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert "python -m dcgan_cuda.train" in commands[0]
    assert ".[test]" in commands[1] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert quickstart_commands()[1] in ci_lines


def test_kernels_install_as_a_subpackage_not_a_top_level_package():
    setup = (ROOT / "setup.py").read_text()
    assert '"dcgan_cuda.kernels": "kernels"' in setup
    import dcgan_cuda.kernels
    assert Path(dcgan_cuda.kernels.__file__).resolve().parent == ROOT / "kernels"


def test_pip_builds_through_setuptools_pep517_hooks_not_the_legacy_develop():
    """Without a declared build system, pip installs an editable checkout with the legacy
    `setup.py develop` whenever `wheel` is installed (a GPU machine has it; the test extra
    brings it), and that path ignores package_dir: dcgan_cuda.kernels cannot be imported."""
    import tomllib
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    assert any(r.replace(" ", "").startswith("setuptools>=64") for r in build["requires"])  # PEP 660 editables
