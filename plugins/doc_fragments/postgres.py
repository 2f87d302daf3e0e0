# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or address of the PostgreSQL server. Empty means the local Unix socket.
    type: str
    default: ''
    aliases: [host]
  login_port:
    description: Port of the PostgreSQL server.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description: Role to connect as. Backups and recovery need a superuser or the database owner.
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Never logged; passed to C(pg_dump) and C(pg_restore) in the
        C(PGPASSWORD) environment variable of the child process, never on its command line.
    type: str
    default: ''
  login_unix_socket:
    description: Directory of the server's Unix socket, used when O(login_host) is empty.
    type: str
    default: ''
  connect_timeout:
    description: Seconds to wait for a connection before failing with a clear error.
    type: int
    default: 10
  maintenance_db:
    description: Database to connect to for cluster-level work (create, rename, drop databases).
    type: str
    default: postgres
requirements:
  - psycopg >= 3.1 on the managed host
  - PostgreSQL client programs (pg_dump, pg_restore) on the managed host, at least the server's major version
"""

    BACKUP_STORE = r"""
options:
  backup_root:
    description:
      - Directory that holds backups, one sub-directory per database and one per backup inside it
        (C(<backup_root>/<database>/<backup id>/), with C(manifest.json) written last).
    type: path
    required: true
"""
