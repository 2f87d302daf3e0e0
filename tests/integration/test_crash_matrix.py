"""A crash matrix: a procedure SIGKILLed at each of its step boundaries (RUNBOOK_CRASH_AT: the ansible-playbook
controller, its worker and the module all killed, so no rescue and no later task runs), then run again. Every case
ends consistent, with nothing lost and nothing left behind: the rows of the backup are back, the database it replaced
is kept (the only kept copy), no staging database, no journal, the database takes connections, the application
runs. Between the two runs, a killed recovery's journal is a critical finding of the health sweep. An emergency
shutdown, and a scaling, killed between their kinds of resources are completed by the next run and resumed (undone)
to the values from before them. A DynamoDB restore-and-repoint killed at each step restores once and repoints."""

from __future__ import annotations

import json

import pytest
from aws_world import AwsWorkspace, World
from conftest import Workspace, connect, create_chat_db, databases, disaster, table_fingerprints
from test_dynamodb import dynamo, items, restored_tables, variables  # noqa: F401 (a fixture, used by name)
from test_scale import capacity, configuration, create_table, function_with_everything

# Step boundaries of recover-db from a backup, in order: the application stopped, then the module's journal steps.
# Two chains: each run of the first is killed a step later than the one before (the next run settles the one
# before first); a run killed after its probe, before its record, is the second.
STEPS = ["app-stopped", "restoring", "swapping", "probing", "recording"]
JOURNALED = STEPS[1:]


@pytest.mark.parametrize("chain", [STEPS[:4], STEPS[4:]], ids=["-".join(STEPS[:4]), STEPS[4]])
def test_recover_db_killed_at_each_step_is_settled_by_the_next_run(pg, tmp_path, dockerd, backend, chain):
    project, containers = backend(1)
    database = create_chat_db(pg)
    ws = Workspace(pg, [database], tmp_path)
    ws.write_inventory(pg_app_services=[{"type": "compose", "project": project, "service": "backend"}],
                       app_docker_host=dockerd.host, app_state_dir=str(tmp_path / "app"))
    assert ws.play("backup-db.yml").rc == 0
    backed_up = table_fingerprints(pg, database)
    disaster(pg, database)
    damaged = table_fingerprints(pg, database)
    journals = ws.backup_root / ".journals"

    for step in chain:
        ws.env["RUNBOOK_CRASH_AT"] = step
        try:
            killed = ws.play("recover-db.yml", confirm=True)
        finally:
            ws.env.pop("RUNBOOK_CRASH_AT")
        assert killed.rc == -9, (step, killed.rc, killed.output[-3000:])
        assert dockerd.running(project, "backend") == [], f"{step}: the application runs again"
        found = [json.loads(path.read_text())["step"] for path in journals.glob("*.json")]
        assert found == ([step] if step in JOURNALED else []), (step, found)
        if step == "probing":  # swapped in, never probed: the sweep says so until a run settles it
            sweep = ws.play("health-sweep.yml")
            assert sweep.rc != 0 and sweep.says(f"a recovery of {database} from backup") and \
                sweep.says("was killed at step probing: run recover-db.yml"), sweep.output[-3000:]

    done = ws.play("recover-db.yml", confirm=True)
    assert done.rc == 0, done.output[-4000:]
    assert table_fingerprints(pg, database) == backed_up, "the rows of the backup are not back"
    left = sorted(d for d in databases(pg) if d.startswith(database + "__"))
    assert len(left) == 1 and left[0].startswith(database + "__pre_recovery_"), left
    assert table_fingerprints(pg, left[0]) == damaged, "the database the recovery replaced is lost"
    assert list(journals.glob("*")) == []
    with connect(pg) as conn:
        assert conn.execute("SELECT bool_and(datallowconn) FROM pg_database WHERE datname = ANY(%s)",
                            ([database, left[0]],)).fetchone() == (True,)
    assert dockerd.running(project, "backend") == [c.name for c in containers]
    [record] = [r for r in ws.audit() if r["result"] == "recovered"]
    assert (record.get("interrupted") or {}).get("step") == chain[-1], record


# Step boundaries of emergency-shutdown: right after each kind of resource was written (stages, then functions and
# their event source mappings, then ECS services), before Ansible heard of it.
SHUTDOWN_STEPS = ["after:apigateway_stage_throttle", "after:lambda_concurrency", "after:ecs_service_count"]


def test_emergency_shutdown_killed_at_each_step_is_completed_and_resumed_exactly(tmp_path, aws_emulator):
    """Half a shutdown (some resources at 0, the rest serving) is completed by the next run, itself killed at the
    next step, and so on; the resume then puts back the values from before the first run: the previous values were
    recorded on each resource before its write, so no kill loses one and no later run records a 0 as one."""
    aws_emulator.clear_faults()
    world = World(dict(aws_emulator))
    world.build(reserved=(7, None), rest_stage=False, unthrottled_stage=False)
    ws = AwsWorkspace(tmp_path, world.env, {"incident": world.scope()})
    before, t = world.observe(cli=False), world.tag

    for done_by_then, step in enumerate(SHUTDOWN_STEPS, start=1):
        ws.env["RUNBOOK_CRASH_AT"] = step
        try:
            killed = ws.play("emergency-shutdown.yml", confirm=True, shutdown_scope="incident")
        finally:
            ws.env.pop("RUNBOOK_CRASH_AT")
        assert killed.rc == -9, (step, killed.rc, killed.output[-3000:])
        half = world.observe(cli=False)
        assert [half[f"stage:{t}-ws"] == (0, 0.0), half[f"lambda:{t}-fn-0"] == 0, half["ecs:backend"][0] == 0] == \
            [i < done_by_then for i in range(3)], (step, half)

    done = ws.play("emergency-shutdown.yml", confirm=True, shutdown_scope="incident")
    assert done.rc == 0 and done.changed == 0, done.output[-3000:]  # the last kill came after the last write
    stopped = world.observe(cli=False)
    assert stopped[f"lambda:{t}-fn-0"] == 0 and stopped[f"lambda:{t}-fn-1"] == 0
    assert stopped[f"lambda:{t}-fn-0:tags"]["runbook:previous-reserved-concurrency"] == "7"
    assert stopped["ecs:backend"][1]["runbook:previous-desired-count"] == "3"

    resume = ws.play("emergency-resume.yml", confirm=True, shutdown_scope="incident")
    assert resume.rc == 0, resume.output[-3000:]
    assert world.observe() == before


SCALE_STEPS = ["after:lambda_capacity", "after:dynamodb_capacity", "after:ecs_service_count"]


def test_scaling_killed_at_each_step_is_completed_and_undone_exactly(tmp_path, aws_emulator):
    """A scaling of a function, a table and a service, killed after each kind in turn (each run completing the one
    before): the next run completes it, and the undo puts back the values from before the first run."""
    aws_emulator.clear_faults()
    world = World(dict(aws_emulator))
    world.build(reserved=(), throttled_stage=False, unthrottled_stage=False, rest_stage=False, ecs_desired=3)
    name, table = function_with_everything(world), create_table(world)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"all": {
        "lambda": {"names": [name]}, "dynamodb_tables": [table], "ecs_services": world.services}})
    wanted = {"scale_target": "all", "lambda_memory_mb": 1024, "dynamodb_read_capacity": 10,
              "dynamodb_write_capacity": 20, "ecs_desired_count": 6}

    def observe() -> tuple:
        return (configuration(world, name, cli=False)["MemorySize"], capacity(world, table)["table"],
                world.observe(cli=False)["ecs:backend"][0])

    before = (configuration(world, name), capacity(world, table), world.observe()["ecs:backend"])
    assert observe() == (256, (5, 5), 3)
    for done_by_then, step in enumerate(SCALE_STEPS, start=1):
        ws.env["RUNBOOK_CRASH_AT"] = step
        try:
            killed = ws.play("scale.yml", confirm=True, **wanted)
        finally:
            ws.env.pop("RUNBOOK_CRASH_AT")
        assert killed.rc == -9, (step, killed.rc, killed.output[-3000:])
        assert observe() == tuple(new if i < done_by_then else old for i, (old, new) in
                                  enumerate(zip((256, (5, 5), 3), (1024, (10, 20), 6), strict=True))), step

    done = ws.play("scale.yml", confirm=True, **wanted)
    assert done.rc == 0 and done.changed == 0, done.output[-3000:]
    undo = ws.play("scale-undo.yml", confirm=True, scale_target="all")
    assert undo.rc == 0, undo.output[-3000:]
    assert (configuration(world, name), capacity(world, table), world.observe()["ecs:backend"]) == before


DYNAMODB_STEPS = ["dynamodb-restore-requested", "dynamodb-settings-copied", "dynamodb-repointed"]


def test_dynamodb_restore_and_repoint_killed_at_each_step_restores_once_and_repoints(dynamo):  # noqa: F811
    """Killed after asking AWS for the restore, after putting back what the restore drops, and after repointing the
    consumer (each run going one step further): the next run finds the restored table by its name instead of
    restoring a second one, and ends with every item back and the consumer pointed at it."""
    ws, table, ddb, lam, function = dynamo["ws"], dynamo["table"], dynamo["ddb"], dynamo["lam"], dynamo["function"]
    assert ws.play("backup-dynamodb.yml").rc == 0
    original = items(ddb, table)
    ddb.delete_item(TableName=table, Key={"pk": {"S": "session-3"}})  # the incident

    for step in DYNAMODB_STEPS:
        ws.env["RUNBOOK_CRASH_AT"] = step
        try:
            killed = ws.play("recover-dynamodb.yml", confirm=True, table=table)
        finally:
            ws.env.pop("RUNBOOK_CRASH_AT")
        assert killed.rc == -9, (step, killed.rc, killed.output[-3000:])
        assert len(restored_tables(ddb, table)) == 1, (step, restored_tables(ddb, table))
        pointed = variables(lam, function)["SESSIONS_TABLE"]
        assert (pointed == table) == (step != "dynamodb-repointed"), (step, pointed)

    done = ws.play("recover-dynamodb.yml", confirm=True, table=table)
    assert done.rc == 0 and done.changed == 0, done.output[-3000:]
    [restored] = restored_tables(ddb, table)
    assert variables(lam, function) == {"SESSIONS_TABLE": restored, "MODEL": "claude"}
    assert items(ddb, restored) == original and len(items(ddb, table)) == 29
