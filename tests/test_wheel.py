"""The wheel a user installs: one top-level package, the config inside it, every offline
command working from an empty folder far from the repository.

The wheel is built and unpacked with ``pip install --no-deps --target`` (the
dependencies come from this virtualenv); the commands run with the repository out of
reach, so a file looked up beside the sources instead of inside the package fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (path,) = out.glob("intentstream-*.whl")
    return path


def test_the_wheel_installs_one_top_level_package_with_its_config(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"intentstream"}
    for data in ("default.toml", "strategies.toml", "playbook.toml", "event.schema.json"):
        assert f"intentstream/config/{data}" in names
    assert "intentstream/stream/engine/timeline.py" in names and "intentstream/agents/worker.py" in names
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


def test_the_offline_commands_run_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    site, work = tmp_path / "site", tmp_path / "empty"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTSTREAM_")}
    env["PYTHONPATH"] = str(site)  # the unpacked wheel first: ahead of the editable install

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "intentstream.stream.cli", *args],
            cwd=work, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip

    where = run("--help")
    assert where.returncode == 0, where.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import intentstream.stream, intentstream.stream.settings as s; print(intentstream.stream.__file__, s.CONFIG_DIR)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(site) in probe.stdout and str(ROOT) not in probe.stdout
    demo = run("demo", "--users", "60", "--days", "4", "--out-dir", "out")
    assert demo.returncode == 0, demo.stderr
    assert (work / "out" / "decisions.jsonl").stat().st_size > 0 and (work / "out" / "report.md").stat().st_size > 0
    replay = run("replay", "out/clickstream.jsonl", "--offline", "--out", "decisions.jsonl")
    assert replay.returncode == 0, replay.stderr
    assert (work / "decisions.jsonl").read_bytes() == (work / "out" / "decisions.jsonl").read_bytes()
    report = run("report", "--input", "out/clickstream.jsonl", "--lang", "zh", "--out", "report.md")
    assert report.returncode == 0, report.stderr
    assert "聚类" in (work / "report.md").read_text()
