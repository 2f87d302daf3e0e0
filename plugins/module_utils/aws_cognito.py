# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cognito users and a user pool's MFA, from runbook 001's "Users Cannot Sign Up / Sign In" and "Suspicious
Activity Detected": each action only where the user's state calls for it, so a second run changes nothing.

- confirm: an UNCONFIRMED sign-up confirmed (AdminConfirmSignUp); a user in any other state is not a sign-up waiting.
- reset_password: a locked-out user's password reset (AdminResetUserPassword): RESET_REQUIRED, a code sent.
- disable / enable: the user's Enabled flag. Deleting is not offered: a deleted user's `sub`, and every record keyed by
  it, is gone for good, and a user of the same name is another user; disabling stops sign-in and keeps that.
- sign_out: every session of the user ended (AdminUserGlobalSignOut): an action, not a state (Cognito keeps nothing
  to read back), so each run signs out again.
- mfa: the pool's MFA configuration set (SetUserPoolMfaConfig), what it was before recorded in SSM
  (`/runbook/cognito-mfa/<pool id>`), so `mfa_undone` puts exactly that back.

Users are named by username, or found by an attribute filter (`email = "a@example.com"`).
"""

from __future__ import annotations

import re

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    delete_parameter,
    error_code,
    paginate,
    put_json_parameter,
    read_json_parameter,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now

ACTIONS = ("confirm", "reset_password", "disable", "enable", "sign_out")
MFA_RECORD_PATH = "/runbook/cognito-mfa/"
POOL_ID = re.compile(r"^[\w-]+_[0-9a-zA-Z]+$")
FILTER = re.compile(r'^(username|email|phone_number|name|given_name|family_name|preferred_username|sub|'
                    r'cognito:user_status|status) (=|\^=) "[^"\\]*"$')
DELETE_REFUSED = ("deleting a user is not offered: the user's sub, and every record keyed by it, is gone for good, and "
                  "a new user of the same name is another user. Use action=disable: sign-in stops, and enable undoes "
                  "it. Nothing was changed.")


def find_pool(idp, given: str) -> tuple[str, str]:
    """(id, name) of the user pool named by id or by name."""
    if POOL_ID.match(given):
        try:
            pool = idp.describe_user_pool(UserPoolId=given)["UserPool"]
            return pool["Id"], pool.get("Name", "")
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
    found = [p for p in paginate(idp, "list_user_pools", "UserPools", MaxResults=60) if p["Name"] == given]
    if not found:
        raise RunbookError(f"user pool {given!r} does not exist (by id or name): check it and the region. Nothing was "
                           "changed.")
    if len(found) > 1:
        raise RunbookError(f"{len(found)} user pools are named {given!r}: give the id "
                           f"({', '.join(p['Id'] for p in found)}). Nothing was changed.")
    return found[0]["Id"], found[0]["Name"]


def find_users(idp, pool: str, usernames: list[str], filter_text: str) -> list[dict]:
    """Each user as {username, status, enabled}; an unknown username, or a filter matching nobody, refused."""
    users = []
    for name in usernames:
        try:
            user = idp.admin_get_user(UserPoolId=pool, Username=name)
        except Exception as exc:
            if error_code(exc) == "UserNotFoundException":
                raise RunbookError(f"user {name!r} does not exist in user pool {pool}. Nothing was changed.") from None
            raise
        users.append({"username": user["Username"], "status": user.get("UserStatus"),
                      "enabled": user.get("Enabled", True)})
    if filter_text:
        if not FILTER.match(filter_text):
            raise RunbookError(f"filter {filter_text!r} is not a Cognito user filter: ATTRIBUTE = \"VALUE\" (or ^= for "
                               "a prefix), e.g. email = \"a@example.com\". Nothing was changed.")
        found = paginate(idp, "list_users", "Users", UserPoolId=pool, Filter=filter_text)
        if not found:
            raise RunbookError(f"no user of {pool} matches {filter_text}. Nothing was changed.")
        known = {u["username"] for u in users}
        users += [{"username": u["Username"], "status": u.get("UserStatus"), "enabled": u.get("Enabled", True)}
                  for u in found if u["Username"] not in known]
    if not users:
        raise RunbookError("name the user: -e user=NAME, or -e 'filter=email = \"a@example.com\"'. Nothing was "
                           "changed.")
    return users


def decide(action: str, user: dict) -> tuple[str, str]:
    """(act | unchanged, why) for one user, or a refusal naming the user's state."""
    status, name = user["status"], user["username"]
    if action == "confirm":
        if status == "UNCONFIRMED":
            return "act", "UNCONFIRMED -> CONFIRMED"
        if status == "CONFIRMED":
            return "unchanged", "already CONFIRMED"
        raise RunbookError(f"{name} is {status}, not a sign-up waiting for confirmation"
                           + (": reset the password instead (action=reset_password)"
                              if status in ("FORCE_CHANGE_PASSWORD", "RESET_REQUIRED") else "") + ". Nothing was "
                           "changed.")
    if action == "reset_password":
        if status == "RESET_REQUIRED":
            return "unchanged", "already RESET_REQUIRED (a code was sent)"
        if status in ("CONFIRMED", "FORCE_CHANGE_PASSWORD"):
            return "act", f"{status} -> RESET_REQUIRED, a code sent to the verified email or phone"
        raise RunbookError(f"{name} is {status}: only a confirmed user's password can be reset"
                           + (" (confirm the sign-up first: action=confirm)" if status == "UNCONFIRMED" else "")
                           + ". Nothing was changed.")
    if action == "disable":
        return ("act", "enabled -> disabled (sign-in refused, the user kept)") if user["enabled"] else \
            ("unchanged", "already disabled")
    if action == "enable":
        return ("unchanged", "already enabled") if user["enabled"] else ("act", "disabled -> enabled")
    return "act", "every session signed out (refresh tokens revoked)"


def act(idp, pool: str, action: str, username: str) -> None:
    call = {"confirm": idp.admin_confirm_sign_up, "reset_password": idp.admin_reset_user_password,
            "disable": idp.admin_disable_user, "enable": idp.admin_enable_user,
            "sign_out": idp.admin_user_global_sign_out}[action]
    call(UserPoolId=pool, Username=username)


def user_actions(idp, pool: str, action: str, users: list[dict], check_mode: bool) -> list[dict]:
    rows = []
    for user in users:  # every user decided before any is acted on: one refusal changes nothing
        decision, why = decide(action, user)
        rows.append({"user": user["username"], "status": user["status"], "action": action, "changed": decision == "act",
                     "what": why})
    if not check_mode:
        for row in rows:
            if row["changed"]:
                act(idp, pool, action, row["user"])
    return rows


# -- the pool's MFA --------------------------------------------------------------------------------------------
def mfa_state(idp, pool: str) -> dict:
    found = idp.get_user_pool_mfa_config(UserPoolId=pool)
    return {"MfaConfiguration": found.get("MfaConfiguration", "OFF"),
            "SoftwareTokenMfaConfiguration": {"Enabled": bool(
                (found.get("SoftwareTokenMfaConfiguration") or {}).get("Enabled"))}}


def describe_mfa(state: dict) -> str:
    app = "authenticator app" if state["SoftwareTokenMfaConfiguration"]["Enabled"] else "no authenticator app"
    return f"{state['MfaConfiguration']} ({app})"


def set_mfa(idp, ssm, pool: str, wanted: str, check_mode: bool, actor: str = "") -> dict:
    if wanted not in ("ON", "OPTIONAL", "OFF"):
        raise RunbookError(f"mfa={wanted!r}: use ON (every user), OPTIONAL (users may) or OFF. Nothing was changed.")
    now = mfa_state(idp, pool)
    target = {"MfaConfiguration": wanted, "SoftwareTokenMfaConfiguration": {"Enabled": wanted != "OFF"}}
    row = {"pool": pool, "before": describe_mfa(now), "after": describe_mfa(target), "changed": now != target}
    if not row["changed"] or check_mode:
        return row
    if read_json_parameter(ssm, MFA_RECORD_PATH + pool) is None:  # the first change keeps what was there before ours
        record = {"previous": now, "at": isoformat(utc_now()), "by": actor or None}
        put_json_parameter(ssm, MFA_RECORD_PATH + pool, record,
                           f"runbook.recovery: user pool {pool}'s MFA before cognito-user.yml set it")
    idp.set_user_pool_mfa_config(UserPoolId=pool, **target)
    return row


def undo_mfa(idp, ssm, pool: str, check_mode: bool) -> dict:
    now = mfa_state(idp, pool)
    record = read_json_parameter(ssm, MFA_RECORD_PATH + pool)
    if record is None:
        return {"pool": pool, "before": describe_mfa(now), "after": describe_mfa(now), "changed": False}
    previous = record["previous"]
    row = {"pool": pool, "before": describe_mfa(now), "after": describe_mfa(previous), "changed": True}
    if check_mode:
        return row
    if now != previous:
        idp.set_user_pool_mfa_config(UserPoolId=pool, **previous)
    delete_parameter(ssm, MFA_RECORD_PATH + pool)
    return row
