"""Deployment rollbacks against the AWS emulator over HTTP: an ECS service back to its previous ACTIVE task definition
revision and a Lambda alias back to its previous published version, a second rollback undoing the first; a restart's
new deployment; and every refusal made before anything changes. What changed is read back with the AWS CLI."""

from __future__ import annotations

import uuid

import pytest
from aws_world import MOTO_ACCOUNT, AwsWorkspace, aws, clients, lambda_zip

ROLLBACK = "rollback-deploy.yml"


class DeployWorld:
    """One module's services and functions with deploy histories, and a workspace whose inventory targets them.

    ECS family <tag>-app: revisions 1 (INACTIVE), 2, 3, 4; service `app` runs 4. Family <tag>-solo: revision 1 only,
    run by service `solo`. Lambda <tag>-fn: versions 1-3, alias `live` on 3, alias `edge` on $LATEST. <tag>-solo:
    version 1 only, alias `live` on it."""

    def __init__(self, env: dict, base):
        self.env, self.tag = env, f"d{uuid.uuid4().hex[:8]}"
        self.cluster, self.fn, self.solo_fn = f"{self.tag}-cluster", f"{self.tag}-fn", f"{self.tag}-solo"
        ecs, iam, lam = clients(env, "ecs", "iam", "lambda")
        ecs.create_cluster(clusterName=self.cluster)
        for family, releases in ((f"{self.tag}-app", 4), (f"{self.tag}-solo", 1)):
            for release in range(1, releases + 1):
                ecs.register_task_definition(family=family, containerDefinitions=[
                    {"name": "app", "image": f"app:{release}", "memory": 256}])
        ecs.deregister_task_definition(taskDefinition=f"{self.tag}-app:1")
        ecs.create_service(cluster=self.cluster, serviceName="app", taskDefinition=f"{self.tag}-app", desiredCount=2)
        ecs.create_service(cluster=self.cluster, serviceName="solo", taskDefinition=f"{self.tag}-solo", desiredCount=1)
        role = iam.create_role(RoleName=f"{self.tag}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        for name, releases in ((self.fn, 3), (self.solo_fn, 1)):
            lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                                Code={"ZipFile": lambda_zip()})
            for release in range(1, releases + 1):
                lam.update_function_configuration(FunctionName=name, Description=f"release {release}")
                lam.publish_version(FunctionName=name)
            lam.create_alias(FunctionName=name, Name="live", FunctionVersion=str(releases))
        lam.create_alias(FunctionName=self.fn, Name="edge", FunctionVersion="$LATEST")

        app = {"cluster": self.cluster, "name": "app"}
        live = {"function": self.fn, "alias": "live"}
        self.ws = AwsWorkspace(base, env, {}, targets={
            "latest": {"lambda": {"names": [self.fn], "qualifier": "$LATEST"}},
            "edge": {"lambda": {"names": [self.fn], "qualifier": "edge"}}})
        self.ws.extra = {"deploy_targets": {
            "release": {"ecs_services": [app], "lambda_aliases": [live]},
            "app": {"ecs_services": [app]},
            "fn": {"lambda_aliases": [live]},
            "solo": {"ecs_services": [{"cluster": self.cluster, "name": "solo"}],
                     "lambda_aliases": [{"function": self.solo_fn, "alias": "live"}]}}}
        self.ws.write_inventory({})

    def play(self, *args, **extra):
        return self.ws.play(ROLLBACK, *args, **extra)

    # -- what a person checks -------------------------------------------------------------------------
    def service(self, name: str = "app", cli: bool = True) -> dict:
        [service] = aws(self.env, "ecs", "describe-services", "--cluster", self.cluster, "--services", name,
                        "--include", "TAGS", cli=cli)["services"]
        return service

    def revision(self, name: str = "app", cli: bool = True) -> str:
        return self.service(name, cli)["taskDefinition"].rsplit("/", 1)[1]

    def version(self, function: str | None = None, alias: str = "live", cli: bool = True) -> str:
        return aws(self.env, "lambda", "get-alias", "--function-name", function or self.fn, "--name", alias,
                   cli=cli)["FunctionVersion"]

    def function_tags(self) -> dict:
        arn = f"arn:aws:lambda:{self.env['AWS_DEFAULT_REGION']}:{MOTO_ACCOUNT}:function:{self.fn}"
        return {k: v for k, v in aws(self.env, "lambda", "list-tags", "--resource", arn)["Tags"].items()
                if k.startswith("runbook:")}

    def snapshot(self) -> dict:
        """Everything a refused run must leave as it was (boto3: a tenth of the CLI's time)."""
        return {"app": self.revision(cli=False), "solo": self.revision("solo", cli=False),
                "live": self.version(cli=False), "solo-live": self.version(self.solo_fn, cli=False),
                "edge": self.version(alias="edge", cli=False),
                "tags": {t["key"]: t["value"] for t in self.service(cli=False).get("tags", [])}}


@pytest.fixture(scope="module")
def world(aws_emulator, tmp_path_factory):
    aws_emulator.clear_faults()
    return DeployWorld(dict(aws_emulator), tmp_path_factory.mktemp("deploy-rollback"))


def arn(world: DeployWorld, key: str) -> str:
    return f"arn:aws:ecs:{world.env['AWS_DEFAULT_REGION']}:{MOTO_ACCOUNT}:task-definition/{key}"


def test_rollback_goes_to_the_previous_revision_and_version_and_a_second_one_undoes_it(world):
    app = f"{world.tag}-app"
    assert (world.revision(cli=False), world.version(cli=False)) == (f"{app}:4", "3")

    plan = world.play(check=True, deploy_target="release")
    assert plan.rc == 0, plan.output
    assert plan.says(f"task_definition={app}:4 -> task_definition={app}:3") and plan.says("version=3"), plan.output
    unconfirmed = world.play(deploy_target="release")
    assert unconfirmed.rc != 0 and unconfirmed.says("Not confirmed: nothing was changed"), unconfirmed.output
    assert (world.revision(cli=False), world.version(cli=False)) == (f"{app}:4", "3")

    first = world.play(confirm=True, deploy_target="release")
    assert first.rc == 0 and first.changed >= 1, first.output
    service = world.service()
    assert service["taskDefinition"] == arn(world, f"{app}:3")
    assert [(d["status"], d["runningCount"]) for d in service["deployments"]] == [("PRIMARY", 2)]  # waited: steady
    tags = {t["key"]: t["value"] for t in service["tags"]}
    assert tags["runbook:rollback-previous-task-definition"] == arn(world, f"{app}:4")
    assert tags["runbook:rollback-task-definition"] == arn(world, f"{app}:3")
    assert world.version() == "2"
    recorded = world.function_tags()
    assert (recorded["runbook:rollback-previous-live-version"], recorded["runbook:rollback-live-version"]) == ("3", "2")

    second = world.play(confirm=True, deploy_target="release")
    assert second.rc == 0 and second.says("undoes the rollback of"), second.output
    assert (world.revision(), world.version()) == (f"{app}:4", "3")
    audit = world.ws.audit()
    assert [(r["procedure"], r["result"]) for r in audit] == [("deploy-rollback", "acted")] * 2
    assert [r["after"]["task_definition"] for r in audit[0]["resources"] if "task_definition" in r["after"]] == \
        [f"{app}:3"]


def test_a_named_revision_and_version_skip_over_others_and_a_second_run_changes_nothing(world):
    app = f"{world.tag}-app"
    named = world.play(confirm=True, deploy_target="release", to=2)
    assert named.rc == 0 and named.changed >= 1, named.output
    assert (world.revision(cli=False), world.version(cli=False)) == (f"{app}:2", "2")
    again = world.play(confirm=True, deploy_target="release", to=2)
    assert again.rc == 0 and again.changed == 0, again.output
    assert (world.revision(cli=False), world.version(cli=False)) == (f"{app}:2", "2")

    # The rollback_deploy DAG's verify: check mode with to=recorded changes nothing while the rollback holds, and
    # shows a deploy that went over it since.
    held = world.play(check=True, deploy_target="release", to="recorded")
    assert held.rc == 0 and held.changed == 0, held.output
    clients(world.env, "lambda")[0].update_alias(FunctionName=world.fn, Name="live", FunctionVersion="3")
    lost = world.play(check=True, deploy_target="release", to="recorded")
    assert lost.rc == 0 and lost.changed >= 1 and lost.says("version=3 -> version=2"), lost.output
    assert world.version(cli=False) == "3", "check mode changed the alias"
    clients(world.env, "lambda")[0].update_alias(FunctionName=world.fn, Name="live", FunctionVersion="2")
    never = world.play(check=True, deploy_target="solo", to="recorded")
    assert never.rc != 0 and never.says("no rollback is recorded on it"), never.output


def test_a_restart_starts_a_new_deployment_of_the_same_revision(world):
    before = world.service(cli=False)
    restart = world.play(confirm=True, deploy_target="app", action="restart")
    assert restart.rc == 0 and restart.changed >= 1, restart.output
    after = world.service()
    [deployment] = after["deployments"]
    assert deployment["id"] != before["deployments"][0]["id"]
    assert (deployment["taskDefinition"], deployment["rolloutState"], deployment["runningCount"]) == \
        (before["taskDefinition"], "COMPLETED", 2)
    assert after["taskDefinition"] == before["taskDefinition"]


def test_a_failure_names_what_was_done_before_it(world, aws_emulator):
    app = f"{world.tag}-app"
    assert (world.revision(cli=False), world.version(cli=False)) == (f"{app}:2", "2")  # the named rollback's
    aws_emulator.inject({"operation": "UpdateAlias", "match": world.fn, "code": "AccessDeniedException",
                         "status": 403, "message": "not authorized to perform: lambda:UpdateAlias"})
    try:
        run = world.play(confirm=True, deploy_target="release")  # undoes the named rollback: ECS first, then Lambda
    finally:
        aws_emulator.clear_faults()
    assert run.rc != 0, run.output
    assert run.says("not authorized to perform: lambda:UpdateAlias"), run.output
    assert run.says(f"Done before the failure: {world.cluster}/app ({app}:2 -> {app}:4)"), run.output
    assert (world.revision(cli=False), world.version(cli=False)) == (f"{app}:4", "2")
    assert world.ws.audit()[-1]["result"] == "failed"


@pytest.mark.parametrize(("playbook", "extra", "messages"), [
    (ROLLBACK, {"deploy_target": "solo"}, [
        "{tag}-cluster/solo: it runs {tag}-solo:1, and {tag}-solo has no ACTIVE revision older than it: nothing to "
        "roll back to",
        "{tag}-solo:live: it points at version 1, and {tag}-solo has no published version older than it"]),
    (ROLLBACK, {"deploy_target": "release", "to": 1}, [
        "task definition {tag}-app:1 is INACTIVE (deregistered)",
        "ACTIVE revision of {tag}-app with to=REVISION (2, 3, 4)"]),
    (ROLLBACK, {"deploy_target": "release", "to": 9}, [
        "task definition {tag}-app:9 does not exist", "function {tag}-fn has no published version '9'"]),
    (ROLLBACK, {"deploy_target": "fn", "to": "$LATEST"}, [
        "version=$LATEST: a rollback never points an alias at $LATEST"]),
    (ROLLBACK, {"deploy_target": "nope"}, ['Unknown deploy target "nope"', "defines app, fn, release, solo"]),
    ("scale.yml", {"scale_target": "latest", "lambda_provisioned_concurrency": 2}, [
        "qualifier=$LATEST: AWS applies provisioned concurrency only to a published version"]),
    ("scale.yml", {"scale_target": "edge", "lambda_provisioned_concurrency": 2}, [
        "alias edge points at $LATEST: AWS applies provisioned concurrency only to a published version"]),
], ids=["no-previous", "inactive", "missing", "latest-alias-target", "unknown-target", "latest-qualifier",
        "alias-on-latest"])
def test_bad_input_is_refused_before_any_change(world, playbook, extra, messages):
    before = world.snapshot()
    run = world.ws.play(playbook, confirm=True, **extra)
    assert run.rc != 0, run.output
    for message in messages:
        assert run.says(message.format(tag=world.tag)), run.output
    assert world.snapshot() == before


def test_an_alias_moved_between_the_read_and_the_write_is_not_overwritten(aws_emulator, tmp_path):
    """Someone points the alias elsewhere after the rollback read it and before it writes (the emulator holds the
    write until then): UpdateAlias carries the RevisionId read, AWS refuses it, their change stands and the run
    says so."""
    aws_emulator.clear_faults()
    (tmp_path / "fresh").mkdir()
    fresh = DeployWorld(dict(aws_emulator), tmp_path / "fresh")
    [lam] = clients(fresh.env, "lambda")
    run = aws_emulator.race(
        {"operation": "UpdateAlias", "match": fresh.fn}, lambda: fresh.play(confirm=True, deploy_target="fn"),
        lambda: lam.update_alias(FunctionName=fresh.fn, Name="live", FunctionVersion="1"),  # someone else
        tmp_path / "release")
    assert run.rc != 0 and run.says(f"someone changed alias {fresh.fn}:live after this run read it"), \
        run.output[-4000:]
    assert fresh.version(cli=False) == "1", "their change was overwritten"


def test_a_rollback_whose_tasks_fail_to_start_is_stopped_by_the_circuit_breaker_and_named(aws_emulator, tmp_path):
    """The revision to go back to cannot start its tasks (its image is gone): ECS's deployment circuit breaker marks
    the deployment FAILED after the rollout (the emulator's, as AWS's); the run waits through it, fails naming
    ECS's reason, and says what it had changed."""
    aws_emulator.clear_faults()
    env = dict(aws_emulator)
    tag = f"cb{uuid.uuid4().hex[:8]}"
    [ecs] = clients(env, "ecs")
    ecs.create_cluster(clusterName=tag)
    reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
    ecs.register_task_definition(family=tag, containerDefinitions=[{
        "name": "app", "image": "app:gone", "memory": 256,
        "environment": [{"name": "RUNBOOK_EMULATOR_TASKS_FAIL", "value": reason}]}])
    ecs.register_task_definition(family=tag, containerDefinitions=[{"name": "app", "image": "app:2", "memory": 256}])
    ecs.create_service(cluster=tag, serviceName="app", taskDefinition=f"{tag}:2", desiredCount=2)
    ws = AwsWorkspace(tmp_path, env, {})
    ws.extra = {"deploy_targets": {"app": {"ecs_services": [{"cluster": tag, "name": "app"}]}}}
    ws.write_inventory({})
    run = ws.play(ROLLBACK, confirm=True, deploy_target="app")
    assert run.rc != 0 and run.says("ECS deployment circuit breaker: tasks failed to start."), run.output[-4000:]
    assert run.says(reason), run.output[-4000:]
    [service] = ecs.describe_services(cluster=tag, services=["app"])["services"]
    failed = [d for d in service["deployments"] if d["rolloutState"] == "FAILED"]
    assert failed and failed[0]["taskDefinition"].endswith(f"{tag}:1"), service["deployments"]


def test_a_sealed_plan_applies_what_it_resolved_and_refuses_a_deploy_made_since(aws_emulator, tmp_path):
    """--check -e plan_out=FILE resolves "the previous revision" once; a deploy after the plan (revision 5) makes the
    previous one another revision, so that plan is refused with nothing changed; a plan made after it applies
    exactly what it showed, with no target typed. An edited or expired plan is refused too."""
    aws_emulator.clear_faults()
    (tmp_path / "fresh").mkdir()
    fresh = DeployWorld(dict(aws_emulator), tmp_path / "fresh")
    app = f"{fresh.tag}-app"
    stale = tmp_path / "stale.json"
    made = fresh.play(check=True, deploy_target="release", plan_out=str(stale))
    assert made.rc == 0, made.output
    document = stale.read_text()
    assert f"{app}:3" in document and f"{app}:4" in document

    # A deploy lands after the plan: the service runs revision 5, whose previous one is 4, not what was reviewed.
    [ecs] = clients(fresh.env, "ecs")
    ecs.register_task_definition(family=app, containerDefinitions=[{"name": "app", "image": "app:5", "memory": 256}])
    ecs.update_service(cluster=fresh.cluster, service="app", taskDefinition=f"{app}:5")
    before = fresh.snapshot()
    refused = fresh.play(plan=str(stale), confirm=True)
    assert refused.rc != 0 and refused.says("no longer holds, so nothing was changed"), refused.output
    assert refused.says(f"{app}:5"), refused.output
    assert fresh.snapshot() == before and fresh.ws.audit() == []

    plan_file = tmp_path / "rollback.json"
    assert fresh.play(check=True, deploy_target="release", plan_out=str(plan_file)).rc == 0
    for path, extra, message in (
            (tmp_path / "edited.json", {}, "was changed after it was made"),
            (plan_file, {"plan_max_age": "0"}, "longer ago than plan_max_age"),
            (plan_file, {"deploy_target": "app"}, "was made for deploy_target='release'")):
        if path != plan_file:
            path.write_text(plan_file.read_text().replace(f'"{app}:4"', f'"{app}:2"'))
        run = fresh.play(plan=str(path), confirm=True, **extra)
        assert run.rc != 0 and run.says(message), (message, run.output)
        assert fresh.snapshot() == before

    applied = fresh.play(plan=str(plan_file), confirm=True)
    assert applied.rc == 0 and applied.changed >= 1, applied.output
    assert (fresh.revision(), fresh.version()) == (f"{app}:4", "2")
    [record] = fresh.ws.audit()
    assert record["procedure"] == "deploy-rollback" and record["result"] == "acted"
