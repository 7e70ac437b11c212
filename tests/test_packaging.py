"""An installed kensa lives under one ``kensa`` namespace: nothing generic such as ``models``,
``client`` or ``backend`` lands in site-packages, and the packaged service still works."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", str(ROOT), "-w", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    [wheel] = out.glob("kensa-*.whl")
    return wheel


def test_the_wheel_installs_one_namespace(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "kensa" in tops
    assert [t for t in tops if t != "kensa"] == [next(t for t in tops if t.endswith(".dist-info"))]
    for expected in ("kensa/cli.py", "kensa/app.py", "kensa/contract/schemas.py",
                     "kensa/models/registry.py", "kensa/backend/main.py",
                     "kensa/backend/migrations/script.py.mako",
                     "kensa/backend/migrations/versions/0001_initial_schema.py",
                     "kensa/client/app.py"):
        assert expected in names, expected

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True, capture_output=True,
                   timeout=300)
    probe = (
        "import importlib.util, kensa.models, kensa.backend.main, kensa.client.state\n"
        "import kensa.contract.schemas, kensa.cli\n"
        f"assert kensa.models.__file__.startswith({str(target)!r}), kensa.models.__file__\n"
        "for generic in ('models', 'client', 'backend', 'contract'):\n"
        "    assert importlib.util.find_spec(generic) is None, generic\n"
        "from kensa.backend.db import MIGRATIONS_DIR\n"
        "assert (MIGRATIONS_DIR / 'versions').is_dir()\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
