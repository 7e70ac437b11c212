"""The dependency direction of pyproject.toml's import-linter contracts holds.

import-linter (grimp) finds a package's modules by walking its folder, but kensa's wings are
separate top-level folders mapped into ``kensa`` at install time (setup.py). So the check runs on
a *view*: a temporary ``kensa/`` folder whose wings are symlinks to the real folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WINGS = ("backend", "client", "contract", "models")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def make_view(target: Path, *, real_client: bool = False) -> Path:
    """``target/kensa`` = the composition root's files + a symlink per wing. With
    ``real_client`` the client is a real folder of symlinked files, so a test can add one."""
    package = target / "kensa"
    package.mkdir(parents=True)
    for item in (ROOT / "kensa").glob("*.py"):
        (package / item.name).symlink_to(item)
    for wing in WINGS:
        if wing == "client" and real_client:
            shutil.copytree(ROOT / wing, package / wing, symlinks=True,
                            copy_function=os.symlink,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (package / wing).symlink_to(ROOT / wing, target_is_directory=True)
    return target


def lint(view: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(view)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
                          cwd=view, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lint_tool() -> None:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"import-linter is not installed beside {sys.executable} (dev extra)")


def test_import_contracts_hold(tmp_path: Path, lint_tool: None) -> None:
    result = lint(make_view(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    assert "kept" in result.stdout


def test_a_client_module_importing_torch_breaks_the_contracts(tmp_path: Path,
                                                              lint_tool: None) -> None:
    view = make_view(tmp_path, real_client=True)
    (view / "kensa" / "client" / "sneaky.py").write_text(
        '"""Breaks the rule on purpose."""\n\nimport torch\n\nfrom kensa.models import types\n')
    result = lint(view)
    assert result.returncode != 0
    assert "kensa.client.sneaky -> torch" in result.stdout
    assert "kensa.client.sneaky -> kensa.models" in result.stdout
