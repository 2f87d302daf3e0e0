"""The DAGs of the destructive procedures, run by hand from the Airflow UI: each trigger form takes the
procedure's inputs and a reason; the run shows the plan (check mode), waits for a person to approve it,
applies it with confirm=true, then checks that nothing is left to change. Rejected, nothing changes."""

from __future__ import annotations

from runbook_airflow import NO_TEMPLATE, PATTERNS, manual_procedure

recover_db = manual_procedure(
    "recover_db", "recover-db.yml", tags=["postgres", "recovery"],
    params={
        "database": dict(default="chat", type="string", pattern=PATTERNS["database"], title="Database",
                         description="The database to recover, as named in the inventory's pg_databases."),
        "backup": dict(default="latest", type="string", pattern="^(latest|[0-9]{8}T[0-9]{6}Z)$", title="Backup",
                       description="latest (the newest verified backup) or a backup id such as 20261123T051200Z."),
    },
    extravars={"database": "{{ params.database }}", "backup": "{{ params.backup }}"},
    # The backup the plan resolved (`latest` -> an id) is the one restored, even if a newer one lands meanwhile: the
    # apply is handed the sealed plan (and refuses it if the database changed since); the verify checks that backup.
    bound={"backup": ("pg_restore_db", "backup", "id")}, sealed=True,
    doc_md="""
### Recover a PostgreSQL database from a backup
`recover-db.yml`: the backup's checksums are checked, it is restored into a staging database while the live one
keeps serving, row counts are compared with the backup's manifest, then the staging database takes the live one's
name (the previous one is kept) and SQL/HTTP probes run, with automatic rollback. The approval shows which backup
replaces which database.
""")

recover_db_to_a_point_in_time = manual_procedure(
    "recover_db_to_a_point_in_time", "recover-db.yml", tags=["postgres", "recovery", "pitr"],
    params={
        "database": dict(default="chat", type="string", pattern=PATTERNS["database"], title="Database",
                         description="The database to recover (scope database), as named in the inventory."),
        "scope": dict(default="database", type="string", enum=["database", "cluster"], title="Scope",
                      description="database: that database alone, the rest of the cluster keeps serving. cluster: "
                                  "the whole server is stopped and its data directory replaced (the old one kept)."),
        "target_time": dict(default="", type="string", title="Target time",
                            pattern="^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?"
                                    "(Z|[+-][0-9]{2}:?[0-9]{2})$",
                            description="An instant with its zone, e.g. 2026-11-25T14:02:00Z. Give one target only."),
        "target_lsn": dict(default="", type="string", pattern="^$|^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$",
                           title="Target LSN", description="Or an LSN, e.g. an audit record's restore_point.lsn."),
        "target_name": dict(default="", type="string", pattern=PATTERNS["restore_point"], title="Target restore point",
                            description="Or a restore point, e.g. the restore_point.name a run of ours recorded."),
    },
    extravars={"database": "{{ params.database }}", "scope": "{{ params.scope }}",
               "target_time": "{{ params.target_time }}", "target_lsn": "{{ params.target_lsn }}",
               "target_name": "{{ params.target_name }}", "require_target": True},
    sealed=True,  # the apply replays to the target the approved plan resolved, from its base backup, or refuses
    doc_md="""
### Recover a PostgreSQL database (or the cluster) to a point in time
`recover-db.yml` with a target: the newest base backup before it and the archived WAL replay in a throwaway cluster,
the database is dumped out of it and swapped in like a backup recovery (the previous one kept, probes, rollback);
with scope `cluster` the server's data directory is replaced instead. The plan names the base backup, the WAL range
(a gap is refused), the window and the space. `target=latest` moves with every run: use the playbook for it.
""")

recover_rows = manual_procedure(
    "recover_rows", "recover-rows.yml", tags=["postgres", "recovery", "rows"],
    params={
        "database": dict(default="chat", type="string", pattern=PATTERNS["database"], title="Database",
                         description="The database the tables are in, as named in the inventory."),
        "tables": dict(default="", type="string", minLength=1, title="Tables",
                       pattern="^[A-Za-z0-9_$]+(\\.[A-Za-z0-9_$]+)?(, *[A-Za-z0-9_$]+(\\.[A-Za-z0-9_$]+)?)*$",
                       description="One or more, comma-separated: NAME or SCHEMA.NAME."),
        "mode": dict(default="side", type="string", enum=["side", "missing", "replace"], title="Mode",
                     description="side: the rows the table had, in a new table beside it. missing: insert the rows "
                                 "the table lacks (by its key), never changing one it has. replace: the table's "
                                 "content becomes the source's (the current rows kept in a table of their own)."),
        "where": dict(default="", type="string", pattern=NO_TEMPLATE + "[^;]*$", title="Which rows",
                      description="Optional, one SQL expression such as created_at >= '2026-12-01' (not with "
                                  "replace). Checked by PostgreSQL on the throwaway cluster, never run live."),
        "with_parents": dict(default=False, type="boolean", title="Bring back parent rows",
                             description="missing: also the parent rows (foreign keys) the rows need and the live "
                                         "tables lack."),
        "backup": dict(default="", type="string", pattern="^$|^(latest|[0-9]{8}T[0-9]{6}Z)$", title="Backup",
                       description="A logical backup as the source (latest or an id); or give one target below."),
        "target_time": dict(default="", type="string", title="Target time",
                            pattern="^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?"
                                    "(Z|[+-][0-9]{2}:?[0-9]{2})$",
                            description="The tables as they were at this instant, with its zone, e.g. "
                                        "2026-11-25T14:02:00Z (just before the bad statement)."),
        "target_lsn": dict(default="", type="string", pattern="^$|^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$",
                           title="Target LSN", description="Or an LSN."),
        "target_name": dict(default="", type="string", pattern=PATTERNS["restore_point"], title="Target restore point",
                            description="Or a restore point, e.g. the restore_point.name a run of ours recorded."),
    },
    extravars={"database": "{{ params.database }}", "tables": "{{ params.tables }}", "mode": "{{ params.mode }}",
               "where": "{{ params.where }}", "with_parents": "{{ params.with_parents }}",
               "backup": "{{ params.backup }}", "target_time": "{{ params.target_time }}",
               "target_lsn": "{{ params.target_lsn }}", "target_name": "{{ params.target_name }}"},
    sealed=True,  # the apply uses the source the approved plan resolved (base backup or backup), or refuses
    doc_md="""
### Bring back rows or tables (selective recovery)
`recover-rows.yml`: the database at the source (a point in time replayed in a throwaway cluster, or a logical backup
restored into one) gives back one table or the rows a bad statement deleted, while the live database keeps serving and
keeps every later write. The approval shows, per table, the rows at the source, the rows live, how many would be
written and a sample of their keys.
""")

emergency_shutdown = manual_procedure(
    "emergency_shutdown", "emergency-shutdown.yml", tags=["aws", "emergency"],
    params={"shutdown_scope": dict(default="chatbot", type="string", pattern=PATTERNS["inventory_name"], title="Scope",
                                   description="A scope of the inventory's emergency_scopes.")},
    extravars={"shutdown_scope": "{{ params.shutdown_scope }}"},
    sealed=True,  # the apply acts on the functions, stages and services the approved plan lists, as it read them
    doc_md="""
### Emergency shutdown
Every Lambda function, API stage and ECS service of the scope to zero, each recording the value it had on itself;
`emergency_resume` puts them back.
""")

emergency_resume = manual_procedure(
    "emergency_resume", "emergency-resume.yml", tags=["aws", "emergency"],
    params={"shutdown_scope": dict(default="chatbot", type="string", pattern=PATTERNS["inventory_name"], title="Scope",
                                   description="The scope that was shut down.")},
    extravars={"shutdown_scope": "{{ params.shutdown_scope }}"},
    sealed=True,
    doc_md="""
### Emergency resume
Every resource of the scope back to exactly the value recorded on it by the shutdown.
""")

scale = manual_procedure(
    "scale", "scale.yml", tags=["aws", "postgres", "scaling"],
    params={
        "scale_target": dict(default="recommendation", type="string", pattern=PATTERNS["inventory_name"],
                             title="Target",
                             description="A target of the inventory's scale_targets_inventory."),
        "lambda_memory_mb": dict(default=None, type=["null", "integer"], minimum=128, maximum=10240,
                                 title="Lambda memory (MB)", description="Empty: unchanged."),
        "lambda_timeout_s": dict(default=None, type=["null", "integer"], minimum=1, maximum=900,
                                 title="Lambda timeout (s)", description="Empty: unchanged."),
        "lambda_reserved_concurrency": dict(default=None, type=["null", "integer"], minimum=0,
                                            title="Lambda reserved concurrency", description="Empty: unchanged."),
        "dynamodb_billing_mode": dict(default=None, type=["null", "string"],
                                      enum=[None, "PAY_PER_REQUEST", "PROVISIONED"],
                                      title="DynamoDB billing mode", description="Empty: unchanged."),
        "ecs_desired_count": dict(default=None, type=["null", "integer"], minimum=0, title="ECS desired count",
                                  description="Empty: unchanged."),
        "pg_max_connections": dict(default=None, type=["null", "integer"], minimum=1,
                                   title="PostgreSQL max_connections",
                                   description="Empty: unchanged. Restarts the server when it changes."),
        "compose_replicas": dict(default=None, type=["null", "integer"], minimum=0, title="Compose replicas",
                                 description="Empty: unchanged. Containers of the target's compose services "
                                             "(docker compose --scale), each healthy before the run ends."),
    },
    extravars={"scale_target": "{{ params.scale_target }}", "lambda_memory_mb": "{{ params.lambda_memory_mb }}",
               "lambda_timeout_s": "{{ params.lambda_timeout_s }}",
               "lambda_reserved_concurrency": "{{ params.lambda_reserved_concurrency }}",
               "dynamodb_billing_mode": "{{ params.dynamodb_billing_mode }}",
               "ecs_desired_count": "{{ params.ecs_desired_count }}",
               "pg_max_connections": "{{ params.pg_max_connections }}",
               "compose_replicas": "{{ params.compose_replicas }}"},
    sealed=True,  # the apply acts on the resources, settings and containers the approved plan read, as it read them
    doc_md="""
### Scale
Only the settings given change, and the values they replace are recorded so `scale-undo.yml` can put them back.
""")

bootstrap_fixes = manual_procedure(
    "bootstrap_fixes", "bootstrap-fixes.yml", tags=["aws", "bootstrap"], params={}, extravars={},
    sealed=True,  # the apply fixes only when a new look finds exactly the problems the approved plan listed
    doc_md="""
### Bootstrap fixes
Failed stacks deleted, the CDK bootstrap checked, invoke permissions added, baseline alarms created, point-in-time
recovery turned on: the approval shows the table of problems and fixes.
""")

kill_long_queries = manual_procedure(
    "kill_long_queries", "kill-long-queries.yml", tags=["postgres", "sessions"],
    params={"pg_sessions_max_duration": dict(
        default="10m", type="string", pattern="^[0-9]+[smhd]?$", title="Longer than",
        description="Queries running longer than this (10m, 1h).")},
    extravars={"pg_sessions_max_duration": "{{ params.pg_sessions_max_duration }}"},
    sealed=True,  # the apply acts only on the sessions the approved plan listed, each while it is still that one
    doc_md="""
### Kill long queries
Cancels, then terminates, sessions running longer than the limit; never its own, autovacuum or replication.
""")

restart_app = manual_procedure(
    "restart_app", "restart-app.yml", tags=["app", "restart"],
    params={"service": dict(default="backend", type="string", pattern=PATTERNS["inventory_name"], title="Service",
                            description="A service of the app hosts' app_services: a compose service (backend or "
                                        "chat/backend), a container or a systemd unit.")},
    extravars={"service": "{{ params.service }}"},
    sealed=True,  # the apply restarts exactly the containers the approved plan listed, by ID
    verify_extravars={"verify": True},
    doc_md="""
### Rolling restart of an application service
`restart-app.yml`: one container (or unit) at a time, one host at a time, each healthy (Docker's health check) before
the next; the first that is not stops the run and is named. The approval shows the order. The last step restarts
nothing: it checks that every container of the service runs and is healthy.
""")

terraform_unlock = manual_procedure(
    "terraform_unlock", "terraform-unlock.yml", tags=["aws", "terraform"],
    params={
        "lock_path": dict(default="", type="string", pattern=PATTERNS["lock_path"], title="Lock path",
                          description="The Path line of Terraform's 'Error acquiring the state lock' message: "
                                      "BUCKET/KEY."),
        "lock_table": dict(default="", type="string", pattern=PATTERNS["dynamodb_table"], title="Lock table",
                           description="The backend's dynamodb_table, if it has one; empty for the S3 .tflock only."),
        "lock_id": dict(default="", type="string", pattern=PATTERNS["lock_id"], minLength=1, title="Lock ID",
                        description="The ID line of the same message: only the lock with this ID is removed."),
        "min_age": dict(default="1h", type="string", pattern="^[0-9]+[smhd]?$|^0$", title="Older than",
                        description="A younger lock is refused (a live run may hold it): 1h, 30m."),
    },
    extravars={"lock_path": "{{ params.lock_path }}", "lock_table": "{{ params.lock_table }}",
               "lock_id": "{{ params.lock_id }}", "min_age": "{{ params.min_age }}"},
    sealed=True,  # the apply removes the lock the approved plan read, and refuses one that reads differently now
    doc_md="""
### Remove a stale Terraform state lock
`terraform-unlock.yml`, like `terraform force-unlock LOCK_ID` but only that lock, only once it is older than the
threshold, with a delete conditional on what was read (a lock taken again meanwhile is kept and named). The approval
shows who holds the lock, for which operation and since when. The state object and its digest are never touched.
""")

rollback_deploy = manual_procedure(
    "rollback_deploy", "rollback-deploy.yml", tags=["aws", "deploy"],
    params={
        "deploy_target": dict(default="chat-backend", type="string", pattern=PATTERNS["inventory_name"],
                              title="Target",
                              description="A target of the inventory's deploy_targets (ECS services, Lambda aliases)."),
        "to": dict(default="", type="string", pattern="^$|^[A-Za-z0-9_:./-]+$", title="To",
                   description="Empty: the previous ACTIVE revision / published version (right after a rollback: "
                               "the one it replaced). Or a revision (3, family:3, an ARN) or version (3)."),
    },
    extravars={"deploy_target": "{{ params.deploy_target }}", "to": "{{ params.to }}"},
    sealed=True,  # the apply acts only when every service and alias resolves as in the approved plan
    verify_extravars={"to": "recorded"},
    doc_md="""
### Roll back a deployment
`rollback-deploy.yml`: each ECS service of the target back to an earlier task definition revision, each Lambda alias
to an earlier published version, each waited for until it is steady; what each replaced is tagged on the resource, so
the next rollback undoes this one. The approval shows each resource from -> to. The last step checks, in check mode
with `to=recorded`, that every resource still runs what this rollback set.
""")

lambda_env = manual_procedure(
    "lambda_env", "lambda-env.yml", tags=["aws", "lambda", "config"],
    params={
        "function": dict(default="", type="string", minLength=1, title="Functions",
                         pattern="^[A-Za-z0-9_-]{1,64}(, *[A-Za-z0-9_-]{1,64})*$",
                         description="One or more Lambda function names, comma-separated."),
        "debug": dict(default=False, type="boolean", title="Debug logging",
                      description="Set LOG_LEVEL=DEBUG (with the variables below, if any)."),
        "variables": dict(default={}, type="object", title="Variables to set",
                          propertyNames={"pattern": "^[A-Za-z][A-Za-z0-9_]+$"},
                          additionalProperties={"type": "string", "pattern": NO_TEMPLATE + "[\\s\\S]*$"},
                          description='{"NAME": "VALUE", ...}: only these change; every other variable is kept. '
                                      "Plain text: {{, {% and {# are refused."),
        "unset": dict(default="", type="string", pattern="^$|^[A-Za-z][A-Za-z0-9_]+(, *[A-Za-z][A-Za-z0-9_]+)*$",
                      title="Variables to remove", description="Names, comma-separated."),
        "lift_after": dict(default="", type="string", pattern="^$|^[0-9]+(\\.[0-9]+)?[smhdw]?$", title="For",
                           description="Empty: until undone. Or 30m, 2h: lift_expired puts back what was "
                                       "there then."),
        "undo": dict(default=False, type="boolean", title="Undo",
                     description="Put back exactly what an earlier run changed (and nothing it did not)."),
    },
    extravars={"function": "{{ params.function }}", "debug": "{{ params.debug }}",
               "variables": "{{ params.variables }}", "unset": "{{ params.unset }}",
               "for": "{{ params.lift_after }}", "undo": "{{ params.undo }}"},
    sealed=True,  # the apply changes the variables the approved plan named, refused when they read differently now
    doc_md="""
### Lambda environment variables, one at a time
`lambda-env.yml`: set or remove the named variables only, every other variable kept (the write carries the
RevisionId it read, so a concurrent change is kept, not overwritten). What each variable held is recorded first
(SSM SecureString `/runbook/lambda-env/FUNCTION`, the function tagged `runbook:env-*`), so Undo puts back exactly
that. The approval shows each variable before and after; values are masked except LOG_LEVEL's.
""")

WAF_ADDRESSES = "^$|^[0-9A-Fa-f:./]+([, ]+[0-9A-Fa-f:./]+)*$"  # addresses and CIDRs, comma- or space-separated


def waf_form(which: str, duration: str) -> dict:
    """The form and the extra variables of waf_block and waf_allow."""
    params = {
        "addresses": dict(default="", type="string", pattern=WAF_ADDRESSES, title="Addresses",
                          description="Addresses or CIDRs, e.g. 198.51.100.0/24, 192.0.2.1. Empty with Undo: every "
                                      "address the earlier runs added."),
        duration: dict(default="", type="string", pattern="^$|^[0-9]+(\\.[0-9]+)?[smhdw]?$", title="For",
                       description="Empty: until undone. Or 24h, 7d: lift_expired takes them out then."),
        "undo": dict(default=False, type="boolean", title="Undo",
                     description="Take out exactly the addresses the earlier runs added (or those named)."),
        "remove": dict(default=False, type="boolean", title="Remove the addresses named",
                       description="Take out exactly the addresses named, whoever added them."),
        "ip_set": dict(default="", type="string", pattern="^$|^[A-Za-z0-9_-]{1,128}$", title="IP set",
                       description=f"Empty: the inventory's waf_{which}_ip_set."),
    }
    extravars = {"addresses": "{{ params.addresses }}", duration: f"{{{{ params.{duration} }}}}",
                 "undo": "{{ params.undo }}", "remove": "{{ params.remove }}", "ip_set": "{{ params.ip_set }}"}
    return {"params": params, "extravars": extravars}


waf_block = manual_procedure(
    "waf_block", "waf-block.yml", tags=["aws", "waf", "security"], **waf_form("block", "block_for"),
    sealed=True,  # the apply adds or removes the addresses the approved plan named, as it read the set
    doc_md="""
### Block addresses at the WAF
`waf-block.yml`: only the addresses named are added to the block IP set, every address it holds kept (the runbook's
`update-ip-set` replaces the whole list), written with the LockToken read so a concurrent change is kept. A range
wider than /16, or one covering an address of the allow list, is refused in the plan. What was added is recorded, so
Undo takes out exactly those. The approval shows the set, how many addresses it holds, and what would be added.
""")

waf_allow = manual_procedure(
    "waf_allow", "waf-allow.yml", tags=["aws", "waf", "security"], **waf_form("allow", "allow_for"),
    sealed=True,
    doc_md="""
### Let addresses through the WAF
`waf-allow.yml`: only the addresses named are added to the allow IP set, every address it holds kept, written with
the LockToken read. What was added is recorded, so Undo takes out exactly those.
""")

waf_count_rule = manual_procedure(
    "waf_count_rule", "waf-count-rule.yml", tags=["aws", "waf", "security"],
    params={
        "rule": dict(default="", type="string", minLength=1, pattern="^[A-Za-z0-9_-]{1,128}(, *[A-Za-z0-9_-]{1,128})*$",
                     title="Rules", description="Rule names of the web ACL, comma-separated (e.g. RateLimitRule)."),
        "undo": dict(default=False, type="boolean", title="Undo",
                     description="Put back what each rule did before it was set to count."),
        "web_acl": dict(default="", type="string", pattern="^$|^[A-Za-z0-9_-]{1,128}$", title="Web ACL",
                        description="Empty: the inventory's waf_web_acl."),
    },
    extravars={"rule": "{{ params.rule }}", "undo": "{{ params.undo }}", "web_acl": "{{ params.web_acl }}"},
    sealed=True,  # the apply changes the rules the approved plan read, refused when they read differently now
    doc_md="""
### Let a WAF rule count instead of block
`waf-count-rule.yml`: the rules named count (Action Count; OverrideAction Count for a rule group) while legitimate
traffic is investigated; every other rule is sent back as read, with the web ACL's LockToken. What each did before is
recorded, so Undo puts exactly that back. The approval shows each rule's action now and after.
""")

security_group_rule = manual_procedure(
    "security_group_rule", "security-group-rule.yml", tags=["aws", "ec2", "security"],
    params={
        "group": dict(default="", type="string", minLength=1, pattern="^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$",
                      title="Security group", description="Its id (sg-...) or name."),
        "port": dict(default="", type="string", pattern="^$|^[0-9]{1,5}(-[0-9]{1,5})?$", title="Port",
                     description="443, or a range 8000-8080 (empty with protocol all, or with Undo)."),
        "protocol": dict(default="tcp", type="string", enum=["tcp", "udp", "icmp", "icmpv6", "all"], title="Protocol",
                         description="all: every protocol and port."),
        "cidr": dict(default="", type="string", pattern=WAF_ADDRESSES, title="From",
                     description="CIDRs, comma-separated. 0.0.0.0/0 and ::/0 only on 80 and 443 without force."),
        "undo": dict(default=False, type="boolean", title="Undo",
                     description="Revoke exactly the rules the earlier runs added."),
        "remove": dict(default=False, type="boolean", title="Revoke the rule named",
                       description="Revoke exactly the rule named, whoever added it."),
        "force": dict(default=False, type="boolean", title="Force",
                      description="Allow the whole internet on another port than 80 and 443."),
        "force_reason": dict(default="", type="string", pattern=NO_TEMPLATE + "[^\\n]*$", title="Why (with force)",
                             description="Recorded with the rule."),
    },
    extravars={"group": "{{ params.group }}", "port": "{{ params.port }}", "protocol": "{{ params.protocol }}",
               "cidr": "{{ params.cidr }}", "undo": "{{ params.undo }}", "remove": "{{ params.remove }}",
               "force": "{{ params.force }}", "force_reason": "{{ params.force_reason }}"},
    sealed=True,  # the apply adds or revokes the rule the approved plan named, refused when the group reads differently
    doc_md="""
### One ingress rule of a security group
`security-group-rule.yml`: the rule named is added when the group lacks it (or revoked), every other rule untouched;
each rule added is recorded as a tag on the group, so Undo revokes exactly those. The whole internet is refused on any
port but 80 and 443 unless forced with a reason, which is recorded. The approval shows the group and the rule.
""")

cognito_user = manual_procedure(
    "cognito_user", "cognito-user.yml", tags=["aws", "cognito", "security"],
    params={
        "action": dict(default="confirm", type="string", title="Action",
                       enum=["confirm", "reset_password", "disable", "enable", "sign_out", "mfa", "mfa_undone"],
                       description="confirm an UNCONFIRMED sign-up; reset a locked-out user's password; disable or "
                                   "enable sign-in; sign out everywhere; the pool's MFA (and back). Deleting a user "
                                   "is not offered: disable instead."),
        "user": dict(default="", type="string", pattern="^$|^[^\\s,{}%#'\"]+(, *[^\\s,{}%#'\"]+)*$", title="Users",
                     description="Usernames, comma-separated (or a filter below)."),
        "email": dict(default="", type="string", pattern="^$|^[^\\s\"\\\\{}%#]+@[^\\s\"\\\\{}%#]+$", title="Email",
                      description="Or the user with this email."),
        "filter": dict(default="", type="string", title="Filter", pattern='^$|^[a-z_:]+ \\^?= "[^"{}%#\\\\]*"$',
                       description='A Cognito user filter, e.g. email = "kenji@example.com".'),
        "mfa": dict(default="", type="string", enum=["", "ON", "OPTIONAL", "OFF"], title="MFA",
                    description="With action mfa: ON (every user), OPTIONAL or OFF."),
        "user_pool": dict(default="", type="string", pattern="^$|^[\\w-]{1,128}$", title="User pool",
                          description="Empty: the inventory's cognito_user_pool."),
    },
    extravars={"action": "{{ params.action }}", "user": "{{ params.user }}", "filter": "{{ params.filter }}",
               "email": "{{ params.email }}",
               "mfa": "{{ params.mfa }}", "user_pool": "{{ params.user_pool }}"},
    sealed=True,  # the apply acts on the users the approved plan found, in the states it read them, or refuses
    doc_md="""
### Cognito users and MFA
`cognito-user.yml`: each action only where the user's state calls for it (confirm an UNCONFIRMED sign-up, reset a
locked-out user's password, disable or enable, sign out everywhere), or the pool's MFA with its previous value
recorded for the undo. The approval shows each user, the state it is in and what the action does.
""")
