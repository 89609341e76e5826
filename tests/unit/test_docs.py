"""The documentation: the README stays a front page that names every
setting, and the site builds with MkDocs in strict mode (every link and
page resolves, the contracts included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.settings import Settings

ROOT = Path(__file__).parents[2]


def test_the_readme_is_a_front_page_naming_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 260, "the README is a front page: the rest goes to docs/"
    for name in Settings.model_fields:
        assert f"`TICKETING_{name.upper()}`" in readme, f"TICKETING_{name.upper()} is not in the README's table"
    for link in ("docs/console.md", "docs/operating.md", "docs/security.md", "docs/audit.md", "docs/bus.md",
                 "docs/design.md", "docs/benchmarks.md"):
        assert f"]({link})" in readme and (ROOT / link).exists(), link


def test_the_site_builds_in_strict_mode_with_the_contracts(tmp_path: Path) -> None:
    site = tmp_path / "site"
    built = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                           env=os.environ | {"NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    assert (site / "contracts" / "asyncapi.json").read_bytes() == (ROOT / "contracts" / "asyncapi.json").read_bytes()
    assert (site / "contracts" / "schemas" / "queries" / "dashboard.json").exists()
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="console/"' in home and "ticketing serve" in home
