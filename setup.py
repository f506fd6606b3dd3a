"""Package layout (the rest of the metadata is in pyproject.toml).

The repository's top-level folders are installed under one package, ``intentstream``:
``stream/`` -> ``intentstream.stream``, ``agents/`` -> ``intentstream.agents`` and
``config/`` (TOML and JSON only) -> ``intentstream.config``. ``intentstream`` itself is
a namespace package: it has no files of its own.
"""

from setuptools import find_packages, setup

FOLDERS = ("stream", "agents")

setup(
    packages=[f"intentstream.{p}" for p in find_packages(include=[f"{f}*" for f in FOLDERS])] + ["intentstream.config"],
    package_dir={f"intentstream.{f}": f for f in FOLDERS} | {"intentstream.config": "config"},
    package_data={"intentstream.config": ["*.toml", "*.json"]},
)
