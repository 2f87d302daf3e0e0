"""Cognito users and a pool's MFA (cognito-user.yml) against the AWS emulator over HTTP: each action only where the
user's state calls for it (a second run changes nothing), a user in another state refused naming it, delete refused,
and the pool's MFA set and put back exactly. Read back with the AWS CLI."""

from __future__ import annotations

import pytest
from aws_world import AwsWorkspace, World, aws, clients

PLAYBOOK = "cognito-user.yml"


@pytest.fixture
def world(aws_emulator):
    aws_emulator.clear_faults()
    return World(dict(aws_emulator))


@pytest.fixture
def pool(world):
    return make_pool(world)


def make_pool(world: World) -> str:
    """Runbook 001's user pool with a user in each state: a sign-up waiting (UNCONFIRMED), two confirmed users with a
    verified email, and one an administrator created (FORCE_CHANGE_PASSWORD)."""
    [idp] = clients(world.env, "cognito-idp")
    pool_id = idp.create_user_pool(PoolName=f"{world.tag}-users")["UserPool"]["Id"]
    client = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="web")["UserPoolClient"]["ClientId"]
    idp.sign_up(ClientId=client, Username="newcomer", Password="Str0ng!Passw0rd",
                UserAttributes=[{"Name": "email", "Value": "newcomer@example.com"}])
    for name in ("kenji", "mallory"):
        idp.admin_create_user(UserPoolId=pool_id, Username=name, MessageAction="SUPPRESS", UserAttributes=[
            {"Name": "email", "Value": f"{name}@example.com"}, {"Name": "email_verified", "Value": "true"}])
        idp.admin_set_user_password(UserPoolId=pool_id, Username=name, Password="Str0ng!Passw0rd", Permanent=True)
    idp.admin_create_user(UserPoolId=pool_id, Username="invited", MessageAction="SUPPRESS")
    return pool_id


@pytest.fixture
def ws(tmp_path, world, pool):
    workspace = AwsWorkspace(tmp_path, world.env, {})
    workspace.extra = {"cognito_user_pool": f"{world.tag}-users"}
    workspace.write_inventory({})
    return workspace


def user(world: World, pool: str, name: str) -> dict:
    found = aws(world.env, "cognito-idp", "admin-get-user", "--user-pool-id", pool, "--username", name)
    return {"status": found["UserStatus"], "enabled": found["Enabled"]}


def test_a_sign_up_is_confirmed_once_and_other_states_are_refused(ws, world, pool):
    plan = ws.play(PLAYBOOK, check=True, user="newcomer", action="confirm")
    assert plan.rc == 0 and plan.says("newcomer: would UNCONFIRMED -> CONFIRMED"), plan.output[-3000:]
    assert user(world, pool, "newcomer")["status"] == "UNCONFIRMED"
    run = ws.play(PLAYBOOK, user="newcomer,kenji", action="confirm", confirm=True)
    assert run.rc == 0 and run.changed and run.says("kenji: already CONFIRMED"), run.output[-3000:]
    assert user(world, pool, "newcomer")["status"] == "CONFIRMED"
    again = ws.play(PLAYBOOK, user="newcomer", action="confirm", confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]
    invited = ws.play(PLAYBOOK, user="invited", action="confirm", confirm=True)
    assert invited.rc != 0 and invited.says("invited is FORCE_CHANGE_PASSWORD, not a sign-up waiting"), \
        invited.output[-3000:]
    assert user(world, pool, "invited")["status"] == "FORCE_CHANGE_PASSWORD"


def test_a_locked_out_user_found_by_email_gets_a_password_reset_once(ws, world, pool):
    run = ws.play(PLAYBOOK, email="kenji@example.com", action="reset_password", confirm=True)
    assert run.rc == 0 and run.changed and run.says("kenji: CONFIRMED -> RESET_REQUIRED"), run.output[-3000:]
    assert user(world, pool, "kenji")["status"] == "RESET_REQUIRED"
    assert user(world, pool, "mallory")["status"] == "CONFIRMED"  # only the user the filter found
    again = ws.play(PLAYBOOK, filter='email = "kenji@example.com"', action="reset_password", confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]


def test_a_compromised_account_is_signed_out_and_disabled_and_enabled_again(ws, world, pool):
    out = ws.play(PLAYBOOK, user="mallory", action="sign_out", confirm=True)
    assert out.rc == 0 and out.says("mallory: every session signed out"), out.output[-3000:]
    disabled = ws.play(PLAYBOOK, user="mallory", action="disable", confirm=True)
    assert disabled.rc == 0 and disabled.changed, disabled.output[-3000:]
    assert user(world, pool, "mallory") == {"status": "CONFIRMED", "enabled": False}
    assert ws.play(PLAYBOOK, user="mallory", action="disable", confirm=True).changed == 0
    enabled = ws.play(PLAYBOOK, user="mallory", action="enable", confirm=True)
    assert enabled.rc == 0 and user(world, pool, "mallory") == {"status": "CONFIRMED", "enabled": True}
    assert [(r["procedure"], r["result"], r["action"]) for r in ws.audit()] == [
        ("cognito-user", "acted", action) for action in ("sign_out", "disable", "enable")]


def test_the_pools_mfa_is_set_and_put_back_exactly(ws, world, pool):
    def mfa() -> tuple:
        found = aws(world.env, "cognito-idp", "get-user-pool-mfa-config", "--user-pool-id", pool)
        return found.get("MfaConfiguration"), (found.get("SoftwareTokenMfaConfiguration") or {}).get("Enabled", False)

    before = mfa()
    assert before[0] == "OFF"
    run = ws.play(PLAYBOOK, action="mfa", mfa="OPTIONAL", confirm=True)
    assert run.rc == 0 and run.says("MFA: OFF (no authenticator app) -> OPTIONAL (authenticator app)"), \
        run.output[-3000:]
    assert mfa() == ("OPTIONAL", True)
    assert ws.play(PLAYBOOK, action="mfa", mfa="OPTIONAL", confirm=True).changed == 0
    ws.play(PLAYBOOK, action="mfa", mfa="ON", confirm=True)  # a second change keeps the first record
    undo = ws.play(PLAYBOOK, action="mfa_undone", confirm=True)
    assert undo.rc == 0 and undo.changed, undo.output[-3000:]
    assert mfa() == before
    assert ws.play(PLAYBOOK, action="mfa_undone", confirm=True).changed == 0


@pytest.mark.parametrize(("extra", "says"), [
    ({"user": "kenji", "action": "delete"}, "deleting a user is not offered"),
    ({"user": "nobody", "action": "disable"}, "user 'nobody' does not exist in user pool"),
    ({"user": "kenji", "action": "disable", "user_pool": "no-such-pool"}, "user pool 'no-such-pool' does not exist"),
    ({"filter": "email = kenji@example.com", "action": "disable"}, "is not a Cognito user filter"),
    ({"filter": 'email = "nobody@example.com"', "action": "disable"}, "no user of"),
    ({"action": "disable"}, "name the user"),
    ({"user": "newcomer", "action": "reset_password"}, "confirm the sign-up first"),
    ({"action": "mfa"}, "action=mfa needs -e mfa=ON, OPTIONAL or OFF"),
])
def test_bad_input_is_refused_before_any_change(ws, world, pool, extra, says):
    before = {name: user(world, pool, name) for name in ("newcomer", "kenji")}
    run = ws.play(PLAYBOOK, confirm=True, **extra)
    assert run.rc != 0 and run.says(says), run.output[-3000:]
    assert {name: user(world, pool, name) for name in ("newcomer", "kenji")} == before
