"""Every docstring example of the engine and the drivers runs as a test (River's habit).

The modules are imported under their real names (``intentstream.stream.…``), so each
example sees the same module objects as the code and the other tests — pytest's
``--doctest-modules`` would import a second copy of each file under a name derived
from the repository folder (``stream.…``).
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import intentstream.agents
import intentstream.stream


def _module_names() -> list[str]:
    names = set()
    for package in (intentstream.stream, intentstream.agents):
        names.add(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith(".__main__"):  # importing it runs the command
                names.add(info.name)
    return sorted(names)


MODULES = _module_names()


def test_every_module_is_found() -> None:
    assert "intentstream.stream.engine.timeline" in MODULES and "intentstream.agents.worker" in MODULES
    assert len(MODULES) > 80


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        if test.examples and (getattr(test, "filename", None) or "").endswith(".py"):
            runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()
