"""Every module renders with ansible-doc (a broken DOCUMENTATION block fails here)."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_module_renders(module):
    result = subprocess.run([str(Path(sys.executable).with_name("ansible-doc")), f"runbook.recovery.{module}"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "EXAMPLES" in result.stdout and "RETURN VALUES" in result.stdout
