"""A private PostgreSQL cluster started with initdb/pg_ctl, used by the sandbox and by the tests.

initdb and pg_ctl refuse to run as root, so when we are root the cluster runs as the
`postgres` system user (or `nobody`) and owns its directory. TCP clients authenticate with
scram-sha-256 and a generated password, so every caller exercises real password handling.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from pathlib import Path


def pg_bindir() -> Path:
    for candidate in (os.environ.get("PG_BINDIR"), "/usr/lib/postgresql/15/bin"):
        if candidate and Path(candidate, "initdb").exists():
            return Path(candidate)
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _service_user() -> str | None:
    """The unprivileged user the server runs as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root but neither a 'postgres' nor a 'nobody' user exists for initdb")


def process_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def wait_gone(pid: int | None, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while pid and process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class PgCluster:
    """One throwaway or sandbox cluster rooted at `base_dir` and listening on 127.0.0.1:`port`."""

    def __init__(self, base_dir: str | os.PathLike, port: int, settings: dict[str, str] | None = None):
        self.base = Path(base_dir).absolute()
        self.port = int(port)
        self.data = self.base / "data"
        self.socket_dir = self.base / "run"
        self.log = self.base / "postgres.log"
        self.password_file = self.base / "password"
        self.settings = settings or {}
        self.user = "postgres"
        self._os_user = _service_user()
        self._bin = pg_bindir()

    # -- helpers -------------------------------------------------------------------------
    def _as_owner(self, cmd: list[str]) -> list[str]:
        if self._os_user:
            return ["runuser", "-u", self._os_user, "--", *cmd]
        return cmd

    def _chown(self, path: Path) -> None:
        if self._os_user:
            entry = pwd.getpwnam(self._os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def conninfo(self, dbname: str = "postgres") -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": self.user,
                "password": self.password, "dbname": dbname}

    def env(self, dbname: str = "postgres") -> dict:
        """Environment for libpq clients (psql, pg_dump): the password never goes on a command line."""
        return {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": self.user,
                "PGPASSWORD": self.password, "PGDATABASE": dbname}

    # -- lifecycle -----------------------------------------------------------------------
    def init(self) -> bool:
        if self.initialized:
            return False
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(18) + "\n")
            self.password_file.chmod(0o600)
        for path in (self.data, self.socket_dir):
            path.mkdir(exist_ok=True)
            path.chmod(0o700)
            self._chown(path)
        # initdb reads the password from a file the service user can read; removed right after.
        pwfile = self.socket_dir / ".initpw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            subprocess.run(
                self._as_owner([str(self._bin / "initdb"), "-D", str(self.data), "-U", self.user,
                                "--auth-local=trust", "--auth-host=scram-sha-256",
                                f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8",
                                "--data-checksums"]),
                check=True, capture_output=True, text=True, cwd="/")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.strip()}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        conf = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "100",
            "shared_buffers": "'128MB'",
            "max_wal_size": "'1GB'",
            "logging_collector": "off",
            **self.settings,
        }
        with open(self.data / "postgresql.auto.conf", "a") as handle:
            for key, value in conf.items():
                handle.write(f"{key} = {value}\n")
        return True

    def running(self) -> bool:
        if not self.initialized:
            return False
        result = subprocess.run(self._as_owner([str(self._bin / "pg_ctl"), "status", "-D", str(self.data)]),
                                capture_output=True, text=True, cwd="/")
        return result.returncode == 0

    def start(self) -> bool:
        self.init()
        if self.running():
            return False
        if not self.log.exists():
            self.log.touch()
        self._chown(self.log)
        try:
            subprocess.run(
                self._as_owner([str(self._bin / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log),
                                "-w", "-t", "60"]),
                check=True, capture_output=True, text=True, cwd="/")
        except subprocess.CalledProcessError as exc:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {exc.stderr.strip()}\n{tail}") from exc
        return True

    def stop(self, mode: str = "fast") -> bool:
        if not self.running():
            return False
        postmaster = self.pid()
        subprocess.run(self._as_owner([str(self._bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode,
                                       "-w", "-t", "60"]),
                       check=True, capture_output=True, text=True, cwd="/")
        wait_gone(postmaster)
        return True

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            return None
        return int(pidfile.read_text().split("\n", 1)[0])

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """python sandbox/pgcluster.py start BASE PORT [--database NAME --seed FILE] | stop | restart | destroy BASE PORT"""
    import argparse

    parser = argparse.ArgumentParser(description="a throwaway PostgreSQL cluster")
    parser.add_argument("action", choices=["start", "stop", "restart", "destroy"])
    parser.add_argument("base")
    parser.add_argument("port", type=int)
    parser.add_argument("--database")
    parser.add_argument("--seed", help="SQL file run in --database when it is created")
    args = parser.parse_args(argv)
    cluster = PgCluster(args.base, args.port)
    if args.action == "destroy":
        cluster.destroy()
        return 0
    if args.action in ("stop", "restart"):
        cluster.stop()
        if args.action == "stop":
            return 0
    cluster.start()
    if args.database:
        import psycopg

        with psycopg.connect(**cluster.conninfo(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{args.database}"')
        if not exists and args.seed:
            with psycopg.connect(**cluster.conninfo(args.database), autocommit=True) as conn:
                conn.execute(Path(args.seed).read_text())
    return 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
