"""fairdistill installed, not cloned: a wheel of the project, installed into a fresh folder, runs the README's
commands from an empty folder (no ``configs/`` next to it), finding the configs and data that ship in the package.

The wheel is built from the checkout itself, which the build must leave as it was (no ``build/``, no
``*.egg-info``: hatchling builds in a temporary folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_MAIN = "import sys; from fairdistill.cli import main; sys.argv = ['fairdistill', *sys.argv[1:]]; main()"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder that ``pip install --target`` filled from a freshly built wheel."""
    base = tmp_path_factory.mktemp("installed")
    wheels, target = base / "wheels", base / "target"
    before = _listing()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    env = {**os.environ, "PIP_NO_INDEX": "1"}  # everything needed is already here: no network
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, f"building the wheel failed (hatchling is in the dev extra):\n{build.stderr}"
    assert _listing() == before, "building a wheel left files in the checkout"
    (wheel,) = wheels.glob("fairdistill-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "fairdistill/configs/adult.yaml",
        "fairdistill/configs/kd-zoo.yaml",
        "fairdistill/data/files/adult/ATTRIBUTION.md",
        "fairdistill/data/files/adult/adult.data.gz",
    ):
        assert shipped in names, shipped
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    install = subprocess.run(
        [*pip, "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    return target


def _listing() -> set[str]:
    """The checkout's top-level entries and those of src/ (where build/ and *.egg-info would appear)."""
    return {p.name for p in ROOT.iterdir()} | {f"src/{p.name}" for p in (ROOT / "src").iterdir()}


def fairdistill(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``fairdistill ARGS`` run from ``cwd`` with only the installed copy importable (PYTHONPATH=target)."""
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run(
        [sys.executable, "-c", RUN_MAIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture()
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_installed_copy_is_the_one_imported(installed: Path, empty: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [sys.executable, "-c", "import fairdistill; print(fairdistill.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(installed.resolve()), where.stdout
    assert not Path(where.stdout.strip()).resolve().is_relative_to(ROOT / "src")


@pytest.mark.parametrize("config", ["adult", "configs/adult.yaml", "kd-zoo"])
def test_readme_commands_work_from_an_empty_folder(installed: Path, empty: Path, config: str) -> None:
    result = fairdistill(installed, empty, "run", config, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config OK" in result.stdout
    assert not any(empty.iterdir()), "a dry run writes nothing"


def test_unknown_name_lists_the_packaged_configs(installed: Path, empty: Path) -> None:
    result = fairdistill(installed, empty, "run", "adutl", "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    err = " ".join(result.stderr.split())
    assert "Traceback" not in err
    assert "no packaged config is named 'adutl'" in err and "Did you mean 'adult'?" in err
    shipped = sorted(p.stem for p in (Path(__file__).parents[2] / "src/fairdistill/configs").glob("*.yaml"))
    assert {"adult", "default", "kd-zoo"} <= set(shipped)
    assert f"Packaged configs: {', '.join(shipped)}" in err
