"""The routine procedures, on schedules: PostgreSQL backups (one mapped task per database of the inventory, read
at run time) and their restore-level verification once a backup run ends, integrity checks, VACUUM/ANALYZE by need
(one mapped task per server), the point-in-time recovery drill (one mapped task per archiving host), the health
sweep, log retention and DynamoDB backups. Each task runs a playbook of this project.

On a fleet, a mapped task runs in its server's pool and on its zone's Celery queue, with the execution timeout its
host sets (airflow_pool_slots, airflow_queue, airflow_execution_timeout: runbook_airflow.InventoryTargets); every
other task has the timeout its DAG gives here."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset
from runbook_airflow import START, InventoryTargets, PlaybookOperator, default_args, scheduled_procedure

# A plain name, not a URI: a URI scheme makes Airflow load every provider's URI handlers at parse time.
PG_BACKUPS = Asset(name="runbook_postgres_backups", extra={"playbook": "backup-db.yml"})

with DAG("backup_postgres", schedule="0 1 * * *", start_date=START, catchup=False, max_active_runs=1,
         tags=["runbook", "scheduled", "postgres", "backup"],
         default_args=default_args(retries=2, timeout=timedelta(hours=2)),
         doc_md="""
### PostgreSQL backups, daily
One `backup-db.yml -e database=NAME --limit HOST` per database of the inventory's `postgres` hosts (`pg_databases`),
read when the run starts. Each backup is checksum-verified as it is written; once all have ended, the run emits the
asset `runbook_postgres_backups` (task `announce`), which starts `verify_backups`. A database with a verified
backup under 1 h old is left alone (the playbook's `pg_backup_skip_if_newer_than`). On a fleet, each server's
backups run in its pool (`airflow_pool_slots` at once), on its zone's queue (`airflow_queue`); each times out after
2 h, or the host's `airflow_execution_timeout`.
""") as backup_postgres:

    databases = InventoryTargets(task_id="databases", group="postgres", variable="pg_databases", extravar="database",
                                 per_value=True)
    # strict=False: a target's pool, queue and execution_timeout (from its host) replace the DAG's defaults.
    backups = PlaybookOperator.partial(task_id="backup", playbook="backup-db.yml",
                                       map_index_template="{{ task.extravars['database'] }}",
                                       ).expand_kwargs(databases.output, strict=False)
    # One asset event per run, once every backup has ended: an event per backup started verify_backups while the
    # rest of a fleet's databases had no backup yet. The teardown of `databases`: it runs when the backups have ended
    # (a failed one too, and the run still fails), not when reading the inventory failed.
    backups >> EmptyOperator(task_id="announce", outlets=[PG_BACKUPS],
                             doc_md="The backups have ended: verify_backups follows.").as_teardown(setups=databases)

verify_backups = scheduled_procedure(
    "verify_backups", "verify-backups.yml", schedule=[PG_BACKUPS], tags=["postgres", "backup"],
    extravars={"verify_level": "restore"}, timeout=timedelta(hours=4), doc_md="""
### Backup verification, after each backup run
Restore-level verification of the newest backup of every database: restored into a scratch database, every table's
row count compared with the backup's manifest, the scratch dropped. Runs when `backup_postgres` emits
`runbook_postgres_backups`, once its backups have ended.
""")

pg_integrity = scheduled_procedure("pg_integrity", "integrity-check.yml", schedule="0 4 * * 0",
                                   tags=["postgres", "integrity"], timeout=timedelta(hours=6), doc_md="""
### Integrity check, weekly
amcheck on every table and B-tree index of every database (`integrity-check.yml`); fails naming each corrupt
relation.
""")

with DAG("pg_maintenance", schedule="0 3 * * *", start_date=START, catchup=False, max_active_runs=1,
         tags=["runbook", "scheduled", "postgres", "maintenance"],
         default_args=default_args(retries=2, timeout=timedelta(hours=2)), doc_md="""
### VACUUM / ANALYZE by need, nightly
One `db-maintenance.yml --limit HOST` per `postgres` host with databases (`pg_databases`): only the tables
autovacuum's arithmetic says need it, with a lock timeout so a busy table is skipped, not waited on; invalid indexes
rebuilt concurrently. The tables done are in the task's XCom. On a fleet it shares the server's pool with the
backups (`airflow_pool_slots`), so the two never overload one server together.
""") as pg_maintenance:

    servers = InventoryTargets(task_id="servers", group="postgres", variable="pg_databases", per_host=True)
    PlaybookOperator.partial(task_id="maintain", playbook="db-maintenance.yml",
                             map_index_template="{{ task.limit }}").expand_kwargs(servers.output, strict=False)

with DAG("base_backup_postgres", schedule="30 0 * * *", start_date=START, catchup=False, max_active_runs=1,
         tags=["runbook", "scheduled", "postgres", "pitr", "backup"],
         default_args=default_args(retries=1, timeout=timedelta(hours=6)),
         doc_md="""
### Base backups for point-in-time recovery, daily
One `base-backup.yml --limit HOST` per `postgres` host of the inventory that archives its WAL (`pg_archive`): a
compressed base backup to the archive (none when one is younger than `pg_archive_base_backup_skip_if_newer_than`),
the recovery-window retention, and a check of the archive (a WAL gap fails the task, naming the segments).
""") as base_backup_postgres:

    archiving = InventoryTargets(task_id="archived_hosts", group="postgres", variable="pg_archive", per_host=True)
    PlaybookOperator.partial(task_id="base_backup", playbook="base-backup.yml",
                             map_index_template="{{ task.limit }}").expand_kwargs(archiving.output, strict=False)

with DAG("pitr_drill", schedule="0 5 * * *", start_date=START, catchup=False, max_active_runs=1,
         tags=["runbook", "scheduled", "postgres", "pitr"],
         default_args=default_args(retries=1, timeout=timedelta(hours=2)), doc_md="""
### Point-in-time recovery drill, daily
One `verify-backups.yml -e verify_level=pitr --limit HOST` per `postgres` host of the inventory that archives its WAL
(`pg_archive`, set up by `setup-archiving.yml`), read when the run starts: the newest base backup and every archived
WAL segment restored into a throwaway cluster (removed at the end), `pg_amcheck` on it, and every table of each
database's newest logical backup present. Fails on a missing table, a corrupt relation or a gap in the WAL.
Each host's task pushes `rpo_seconds` (age of the newest archived WAL) and `rto_seconds` (the drill's duration) as
XComs of their own; the whole result is its return value.
""") as pitr_drill:

    archived = InventoryTargets(task_id="archived_hosts", group="postgres", variable="pg_archive", per_host=True)
    PlaybookOperator.partial(task_id="drill", playbook="verify-backups.yml", extravars={"verify_level": "pitr"},
                             publish=["rpo_seconds", "rto_seconds"],
                             map_index_template="{{ task.limit }}").expand_kwargs(archived.output, strict=False)

health_sweep = scheduled_procedure("health_sweep", "health-sweep.yml", schedule="*/15 * * * *", retries=1,
                                   tags=["health"], timeout=timedelta(minutes=10), doc_md="""
### Health sweep, every 15 minutes
PostgreSQL, Redis and AWS in one report (`health-sweep.yml`); the task fails on a critical finding. The report
(summary and findings) is the task's XCom. A server that does not answer is a critical finding of its own; the
others are still inspected. Times out after 10 minutes, before the next sweep is due.
""")

with DAG("lift_expired", schedule="*/5 * * * *", start_date=START, catchup=False, max_active_runs=1,
         tags=["runbook", "scheduled", "aws", "lambda", "waf"],
         default_args=default_args(retries=1, timeout=timedelta(minutes=10)), doc_md="""
### Changes made for a while, lifted, every 5 minutes
Each change made with a duration whose time is up is undone, exactly: a Lambda variable set with `for=30m` back to
what it held (`lambda-env.yml -e lift_expired=true`; a variable someone changed since is left as they set it, and the
task fails naming it), an address blocked with `block_for=24h` or allowed with `allow_for=7d` taken out of the IP set
(`waf-block.yml`, `waf-allow.yml -e lift_expired=true`), every other address kept. The three tasks are independent.
""") as lift_expired:

    for task_id, playbook in (("lambda_env", "lambda-env.yml"), ("waf_block", "waf-block.yml"),
                              ("waf_allow", "waf-allow.yml")):
        PlaybookOperator(task_id=task_id, playbook=playbook, extravars={"lift_expired": True, "confirm": True})

log_retention = scheduled_procedure("log_retention", "rotate-logs.yml", schedule="30 2 * * *",
                                    tags=["aws", "logs"], timeout=timedelta(minutes=30), doc_md="""
### Log retention and rotation, daily
Every CloudWatch log group under the inventory's prefixes gets its retention (new Lambda functions make new
groups, which keep their logs forever); logrotate rules on the log hosts (`rotate-logs.yml`).
""")

with DAG("backup_dynamodb", schedule="0 2 * * *", start_date=START, catchup=False, max_active_runs=1,
         tags=["runbook", "scheduled", "aws", "dynamodb", "backup"],
         default_args=default_args(retries=2, timeout=timedelta(hours=1)),
         doc_md="""
### DynamoDB backups, daily
`backup-dynamodb.yml` when the inventory lists tables (`dynamodb_tables` of the aws hosts): an on-demand backup
per table, retention, point-in-time recovery kept on. Skipped when it lists none.
""") as backup_dynamodb:

    tables = InventoryTargets(task_id="inventory_has_tables", group="aws", variable="dynamodb_tables")
    tables >> PlaybookOperator(task_id="backup", playbook="backup-dynamodb.yml")
