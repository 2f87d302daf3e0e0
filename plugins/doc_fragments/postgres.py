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

    ARCHIVE = r"""
options:
  archive:
    description:
      - Where the continuous archive (base backups and WAL, written by Barman's cloud tools) lives, and how the
        tools reach it. Credentials are read from files in O(archive.aws_dir), never from a command line.
    type: dict
    required: true
    suboptions:
      destination:
        description: The archive's S3 URL, C(s3://bucket/prefix).
        type: str
        required: true
      server_name:
        description: The name this cluster archives under (one cluster per name; C([A-Za-z0-9_.-])).
        type: str
        required: true
      tools_dir:
        description: The virtualenv holding C(barman-cloud-*) (the C(pg_archive) role installs it).
        type: path
        default: /opt/runbook-recovery/barman-cloud
      aws_dir:
        description:
          - Directory with the C(credentials) and C(config) files of O(archive.profile) (region, C(endpoint_url)),
            readable by the server's OS user, which runs C(archive_command) and C(restore_command).
        type: path
        required: true
      profile:
        description: The AWS profile in those files.
        type: str
        default: runbook-archive
      compression:
        description: How WAL and base backups are compressed.
        type: str
        default: gzip
        choices: [gzip, bzip2, snappy, none]
  aws_connection:
    description:
      - How to read the archive's bucket before the profile files in O(archive.aws_dir) exist (a check-mode plan on a
        server that does not archive yet), with keys C(endpoint_url), C(region), C(access_key) and C(secret_key).
        Used only while O(archive.aws_dir) holds no C(config).
    type: dict
    default: {}
requirements:
  - Barman's cloud tools (PyPI C(barman[cloud])) in O(archive.tools_dir); boto3 for the Python running the module
"""
