"""runbook.recovery resolves from this checkout through .ansible/collections/ansible_collections/runbook/recovery,
a link to the repository root (make creates it too). It must exist before test modules import the collection."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = ROOT / ".ansible/collections/ansible_collections/runbook/recovery"
if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to("../../../..")
