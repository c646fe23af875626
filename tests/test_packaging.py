"""Packaging fit for users' machines: version ranges, so installing the package keeps a user's torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_states_ranges_and_an_spdx_licence():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    pins = [d for d in project["dependencies"] if "==" in d]
    assert pins == [] or all(not d.startswith(("torch", "torchvision")) for d in pins), pins
    torch = next(d for d in project["dependencies"] if d.startswith("torch") and not d.startswith("torchvision"))
    assert ">=2.1" in torch
    constraints = (ROOT / "constraints.txt").read_text()
    assert "torch==2.14.1" in constraints and "torchvision==0.29.1" in constraints
    assert "-c $(CONSTRAINTS)" in (ROOT / "Makefile").read_text()


def _fake_distribution(site: Path, name: str, version: str) -> None:
    """The metadata of an installed distribution, as pip sees one (no code)."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")


@pytest.mark.parametrize("torch_version, torchvision_version", [("2.14.1", "0.29.1"), ("2.11.0", "0.26.0")])
def test_installing_the_package_keeps_the_installed_torch(tmp_path, torch_version, torchvision_version):
    """pip's resolver, offline, in an environment whose torch is this machine's pair or another build (the
    GPU machine's 2.11 / 0.26, seen first on the path): it installs the package itself and nothing else.
    A pinned torch would make pip look for another torch, which fails offline."""
    site = tmp_path / "site"
    _fake_distribution(site, "torch", torch_version)
    _fake_distribution(site, "torchvision", torchvision_version)
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                          "--quiet", "--report", str(report), str(ROOT)], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    names = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]
    assert names == ["alignsam-gym"], names
