"""Faults: in each, nothing is lost and the message says what happened."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    ANSIBLE_PLAYBOOK,
    ROOT,
    Workspace,
    connect,
    create_chat_db,
    databases,
    disaster,
    flip_one_byte,
    table_fingerprints,
    tree_state,
)

from sandbox.pgcluster import process_alive


def test_corrupt_backup_fails_verification_and_recovery_refuses(workspace, pg, chat_db):
    assert workspace.play("backup-db.yml").rc == 0
    [backup_id] = workspace.backups(chat_db)
    flip_one_byte(workspace.backup_root / chat_db / backup_id)
    disaster(pg, chat_db)
    damaged = table_fingerprints(pg, chat_db)

    verify = workspace.play("verify-backups.yml")
    assert verify.rc != 0
    assert "FAILED checksum verification" in verify.output and "differs from the manifest" in verify.output

    # `latest` is the newest verified backup: a failed one is never it.
    recover = workspace.play("recover-db.yml", confirm=True)
    assert recover.rc != 0 and recover.says(f"there is no verified backup of database '{chat_db}'"), recover.output
    # Named by its id, its checksums are checked again before anything is touched.
    recover = workspace.play("recover-db.yml", confirm=True, backup=backup_id)
    assert recover.rc != 0
    assert "fails its checksum verification" in recover.output
    assert table_fingerprints(pg, chat_db) == damaged, "the target is untouched"
    assert not [d for d in databases(pg) if d.startswith(chat_db + "__")]


def test_killed_pg_restore_leaves_target_serving(workspace, pg, chat_db):
    with connect(pg, chat_db) as conn:  # enough data that pg_restore runs for a few seconds
        conn.execute("CREATE TABLE bulk AS SELECT i, md5(i::text) || repeat(md5((i * 7)::text), 6) AS payload "
                     "FROM generate_series(1, 600000) AS i")
        conn.execute("CREATE INDEX bulk_payload ON bulk (payload)")
    assert workspace.play("backup-db.yml").rc == 0
    disaster(pg, chat_db)
    before = table_fingerprints(pg, chat_db)

    varsfile = workspace.base / "confirm.json"
    varsfile.write_text('{"confirm": true}')
    recover = subprocess.Popen([ANSIBLE_PLAYBOOK, "-i", str(workspace.inventory), "playbooks/recover-db.yml",
                                "-e", f"@{varsfile}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, stdin=subprocess.DEVNULL)
    staging = f"--dbname=dbname='{chat_db}__recovery_staging'"
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and recover.poll() is None:
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmdline and cmdline[0].endswith(b"pg_restore") and staging.encode() in cmdline:
                    time.sleep(0.5)  # let it get going
                    os.kill(int(pid), signal.SIGKILL)
                    killed = int(pid)
                    break
        time.sleep(0.05)
    output, _ = recover.communicate(timeout=300)
    assert killed, f"pg_restore was never seen running:\n{output}"
    assert recover.returncode != 0
    assert "killed by signal 9" in output and "The current database was not replaced" in output, output
    assert table_fingerprints(pg, chat_db) == before, "the target is untouched"
    with connect(pg, chat_db) as conn:  # and still serving
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 500
    assert not [d for d in databases(pg) if d.startswith(chat_db + "__")], "staging dropped, nothing swapped"
    assert workspace.audit()[-1]["result"] == "failed"


def test_backup_refused_when_space_is_short(workspace, pg, chat_db):
    run = workspace.play("backup-db.yml", pg_backup_min_free_space="100PB")
    assert run.rc != 0
    assert "not enough free space" in run.output and "Nothing was written" in run.output
    assert tree_state(workspace.backup_root) == {}, "nothing written, not even a directory"


def test_backup_refused_on_a_full_volume(pg, chat_db, tmp_path):
    assert os.geteuid() == 0, "the test mounts a small tmpfs, which needs root (make test runs as root, as CI does)"
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        workspace = Workspace(pg, [chat_db], tmp_path)
        workspace.backup_root = mount / "backups"
        workspace.write_inventory(pg_backup_root=str(workspace.backup_root))
        run = workspace.play("backup-db.yml")
        assert run.rc != 0 and "not enough free space" in run.output
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_server_down_gives_clear_error_and_no_backup(private_pg, tmp_path):
    chat_db = create_chat_db(private_pg)
    workspace = Workspace(private_pg, [chat_db], tmp_path)
    private_pg.stop()
    run = workspace.play("backup-db.yml")
    assert run.rc != 0
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{private_pg.port}" in run.output
    assert workspace.backups(chat_db) == []
    assert not (workspace.backup_root / chat_db).exists() or not any(
        p.name.startswith(".partial") for p in (workspace.backup_root / chat_db).iterdir())


def test_server_dying_mid_backup_leaves_no_partial_backup(private_pg, tmp_path):
    """The server dies while pg_dump is reading: a migration holds a partitioned table that only pg_dump locks (the
    run's own size estimate reads the partitions), the test waits until the real dump's session waits behind it,
    its partial directory written, then stops the server. The case is reached every time, however fast the
    machine."""
    chat_db = create_chat_db(private_pg)
    with connect(private_pg, chat_db) as conn:
        conn.execute("CREATE TABLE events (id int, at date) PARTITION BY RANGE (at)")
        conn.execute("CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        conn.execute("INSERT INTO events SELECT g, '2026-06-01' FROM generate_series(1, 1000) g")
    workspace = Workspace(private_pg, [chat_db], tmp_path)
    database_dir = workspace.backup_root / chat_db
    holder = connect(private_pg, chat_db)
    holder.autocommit = False
    holder.execute("LOCK TABLE ONLY events IN ACCESS EXCLUSIVE MODE")
    seen = {}

    def stop_when_the_dump_waits():
        deadline = time.monotonic() + 120
        with connect(private_pg) as watcher:
            while time.monotonic() < deadline:
                waiting = watcher.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                    "AND query LIKE 'LOCK TABLE %%events%%'", (chat_db,)).fetchall()  # pg_dump's own lock
                if waiting:
                    seen["partials"] = [p.name for p in database_dir.iterdir() if p.name.startswith(".partial")]
                    break
                time.sleep(0.05)
        private_pg.stop("immediate")

    stopper = threading.Thread(target=stop_when_the_dump_waits)
    stopper.start()
    try:
        run = workspace.play("backup-db.yml")
    finally:
        stopper.join()
        holder.close()
    assert seen.get("partials"), f"the dump never waited on the table with its partial directory written: {seen}"
    assert run.rc != 0, run.output
    assert f"the backup of '{chat_db}' failed" in run.output or "pg_dump of" in run.output, run.output
    assert "No backup was recorded" in run.output
    assert workspace.backups(chat_db) == []
    assert [p.name for p in database_dir.iterdir() if p.name.startswith(".partial")] == []


def test_failed_sql_probe_rolls_back(workspace, pg, chat_db):
    assert workspace.play("backup-db.yml").rc == 0
    disaster(pg, chat_db)
    before = table_fingerprints(pg, chat_db)
    run = workspace.play("recover-db.yml", confirm=True, pg_recover_health_query="SELECT * FROM app_ready_check")
    assert run.rc != 0
    assert "health probe" in run.output and "rolled back" in run.output
    # The outcome seam: the one change (the restored copy swapped in) and its undo, nothing left changed.
    assert run.says(f"Changed before the failure, then undone: {chat_db} replaced by backup"), run.output[-3000:]
    assert run.says(f"put back as {chat_db}, the restored copy dropped). Nothing is left changed."), run.output[-3000:]
    assert table_fingerprints(pg, chat_db) == before, "back to the database as it was"
    assert not [d for d in databases(pg) if d.startswith(chat_db + "__")]
    assert workspace.audit()[-1]["result"] == "rolled_back"


class _Unhealthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b"database schema mismatch")

    def log_message(self, *args):
        pass


def test_failed_http_probe_rolls_back(workspace, pg, chat_db):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Unhealthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert workspace.play("backup-db.yml").rc == 0
        disaster(pg, chat_db)
        before = table_fingerprints(pg, chat_db)
        run = workspace.play("recover-db.yml", confirm=True,
                             pg_recover_health_url=f"http://127.0.0.1:{server.server_port}/health",
                             pg_recover_health_retries=1, pg_recover_health_delay=0)
    finally:
        server.shutdown()
    assert run.rc != 0
    assert "Probe the application over HTTP" in run.output and "It was rolled back" in run.output
    assert table_fingerprints(pg, chat_db) == before
    assert not [d for d in databases(pg) if d.startswith(chat_db + "__")]
    assert workspace.audit()[-1]["result"] == "rolled_back"


def test_recovery_module_refuses_a_corrupt_backup_even_without_the_role_preflight(workspace, pg, chat_db):
    """pg_restore_db itself checks the checksums (alongside the staging restore) before any swap."""
    from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore
    from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
    from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import Recovery
    from ansible_collections.runbook.recovery.plugins.module_utils.postgres import ConnParams

    assert workspace.play("backup-db.yml").rc == 0
    [backup_id] = workspace.backups(chat_db)
    flip_one_byte(workspace.backup_root / chat_db / backup_id)
    disaster(pg, chat_db)
    before = table_fingerprints(pg, chat_db)
    params = ConnParams(host="127.0.0.1", port=pg.port, user="postgres", password=pg.password)
    with pytest.raises(RunbookError, match="fails its checksum verification"):
        Recovery(params, LocalStore(str(workspace.backup_root)), chat_db, backup_id).run()
    assert table_fingerprints(pg, chat_db) == before
    assert not [d for d in databases(pg) if d.startswith(chat_db + "__")]


def test_restore_verification_runs_in_a_throwaway_cluster_and_clears_what_killed_runs_left(private_pg, tmp_path):
    """verify_level=restore restores into a cluster of its own (the server may even be down); a throwaway cluster
    a killed verification left running is stopped and removed by the next one; on the server (asked for), a scratch
    database a killed run left is dropped; too little space refuses before anything, without calling the backup
    bad."""
    database = create_chat_db(private_pg)
    ws = Workspace(private_pg, [database], tmp_path)
    assert ws.play("backup-db.yml").rc == 0
    [backup_id] = ws.backups(database)
    work = private_pg.base / "verify-work"  # a path the server's OS user may pass through, as /var/tmp is
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys; from ansible_collections.runbook.recovery.plugins.module_utils.pitr import "
        f"Throwaway; t = Throwaway({str(work)!r}, 'postgres', 'postgres', None); t.initialize(); "
        "print(t.base, t.postmaster_pid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)")],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / ".ansible" / "collections")},
        capture_output=True, text=True)
    assert len(killed.stdout.split()) == 2, killed.stderr[-2000:]
    left, postmaster = killed.stdout.split()
    assert Path(left).is_dir() and process_alive(int(postmaster)), killed.stderr
    with connect(private_pg) as conn:
        conn.execute(f'CREATE DATABASE "{database}__verify_0a1b2c"')  # a killed verification on the server

    private_pg.stop()
    try:
        run = ws.play("verify-backups.yml", verify_level="restore", pg_verify_work_dir=str(work))
    finally:
        private_pg.start()
    assert run.rc == 0, run.output[-3000:]
    record = json.loads((ws.backup_root / database / backup_id / "verification.json").read_text())
    assert record["levels"]["restore"]["ok"], record
    assert not Path(left).exists() and not process_alive(int(postmaster))
    assert list(work.iterdir()) == []

    on_server = ws.play("verify-backups.yml", verify_level="restore", pg_verify_scratch="server")
    assert on_server.rc == 0, on_server.output[-3000:]
    assert not [d for d in databases(private_pg) if "__verify_" in d]

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        short = ws.play("verify-backups.yml", verify_level="restore", pg_verify_work_dir=str(small / "work"))
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert short.rc != 0 and "into a throwaway cluster needs about" in short.output, short.output[-3000:]
    record = json.loads((ws.backup_root / database / backup_id / "verification.json").read_text())
    assert record["levels"]["restore"]["ok"], "a verification that could not run called the backup bad"
