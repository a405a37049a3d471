"""Each kernel file is course material: its docstring lists exactly its versions."""
import re

import pytest

from .kernel_files import KERNEL_FILES, import_all

modules = import_all()


def docstring_versions(doc):
    """{number: name} from the 'Versions:' block of a module docstring."""
    block = re.search(r"^Versions:\s*\n((?:[ \t]+\d+[ \t]+\S.*\n)+)", doc, re.M)
    assert block, "the docstring has no 'Versions:' block of '    N  name  idea' lines"
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^[ \t]+(\d+)[ \t]+(\S+)", block.group(1), re.M)}


@pytest.mark.parametrize("name", KERNEL_FILES)
def test_docstring_lists_the_versions_of_the_launcher_table(name):
    module = modules[name]
    listed = docstring_versions(module.__doc__)
    table = {number: version.name for number, version in module.VERSIONS.items()}
    assert listed == table
    assert module.DEFAULT_VERSION in table


@pytest.mark.parametrize("name", KERNEL_FILES)
def test_docstring_teaches(name):
    doc = modules[name].__doc__
    for topic in ("threads", "Run:", "--sim"):
        assert topic in doc, f"{name}: the docstring should say how {topic!r} ..."
    assert re.search(r"\b(FLOP|bytes|MB|GB)\b", doc), f"{name}: no napkin math (FLOPs / bytes)"
