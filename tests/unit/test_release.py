"""The release: `ansible-galaxy collection build` from a checkout that has run the sandbox and Airflow ships what
galaxy.yml's allowlist says and no secret those runs wrote; and the checkout's Ansible checks host keys."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import yaml

from sandbox.airflow_cluster import AirflowCluster

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def shipped(path: str) -> bool:
    """galaxy.yml's allowlist, read as a person reads it (not through distlib, which the build uses)."""
    parts = path.split("/")
    suffix = Path(path).suffix
    if path in ("README.md", "meta/runtime.yml", "changelogs/changelog.yaml", "changelogs/config.yaml"):
        return True
    if parts[0] == "plugins":
        return suffix == ".py"
    if parts[0] == "roles":
        return suffix in (".yml", ".j2", ".lock") and parts[2] != "molecule"
    if parts[0] == "playbooks":
        return suffix == ".yml"
    if parts[0] == "docs":
        return suffix == ".md"
    return path.startswith("inventories/example/") and suffix == ".yml"


def test_the_release_ships_the_allowlist_and_no_secret_of_a_checkout_that_ran(tmp_path):
    checkout = tmp_path / "checkout"
    for path in tracked():
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, checkout / path)
    # What `make airflow-cluster` writes into the checkout: airflow.cfg with the metadata password, jwt_secret and
    # secret_key, and the users' passwords (the real writer, with a stand-in for its metadata server).
    airflow = AirflowCluster(home=checkout / ".airflow", port=8080, metadata=types.SimpleNamespace(port=5432),
                             redis_port=6379, inventory="inventories/local")
    airflow.write_home()
    airflow.write_config()
    (checkout / ".airflow" / "logs" / "dag_id=recover_db").mkdir(parents=True)
    (checkout / ".airflow" / "logs" / "dag_id=recover_db" / "attempt=1.log").write_text("task log\n")
    # What the sandbox, molecule, pytest and editors leave: passwords, keys, caches, logs.
    leftovers = {".sandbox/pg/password": "pg-secret-5f1e", ".sandbox/aws/credentials": "aws-secret-9c2d",
                 "roles/pg_backup/molecule/default/.secret": "molecule-secret-77aa",
                 "plugins/modules/__pycache__/pg_backup.cpython-311.pyc": "pyc",
                 ".cache/phase-integration.log": "log", "tests/output/junit.xml": "junit",
                 "plugins/modules/notes.txt": "a note", "playbooks/extra.json": "{}"}
    for path, text in leftovers.items():
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_text(text)
    config = airflow.read_config()
    secrets = [config.get("runbook", "metadata_password"), config.get("api_auth", "jwt_secret"),
               config.get("api", "secret_key"), *airflow.passwords.values(),
               *(text for text in leftovers.values() if "secret" in text)]

    out = tmp_path / "out"
    build = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out),
                            str(checkout)], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    [artifact] = out.glob("runbook-recovery-*.tar.gz")
    with tarfile.open(artifact) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    files = set(members) - {"MANIFEST.json", "FILES.json"}
    assert files == {path for path in tracked() if shipped(path)}
    assert json.loads(members["MANIFEST.json"])["collection_info"]["name"] == "recovery"
    for name, content in members.items():
        for secret in secrets:
            assert secret.encode() not in content, f"{name} holds a secret of the checkout"


def test_the_checkouts_ansible_checks_host_keys():
    """ansible-runner runs from the checkout, so its ansible.cfg is what every production run connects with: host
    keys are checked (the sandbox's and the tests' inventories connect locally and need none)."""
    dump = subprocess.run([str(BIN / "ansible-config"), "dump", "--format", "json"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    settings = {item["name"]: item["value"] for item in json.loads(dump) if "name" in item}
    assert settings["HOST_KEY_CHECKING"] is True
    for inventory in ("inventories/local/hosts.yml", "inventories/example/hosts.yml"):
        text = (ROOT / inventory).read_text()
        assert "host_key_checking" not in text and "StrictHostKeyChecking" not in text, inventory
        assert yaml.safe_load(text)
