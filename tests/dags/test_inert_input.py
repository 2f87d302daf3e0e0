"""Form values stay data even past the form: every manual DAG's playbook, run as its plan task runs it (ansible-runner,
the extra variables written by PlaybookRun) with a template in every one of its free-text inputs, never renders
it: the marker file the template would create never exists. (The form's patterns and the task's own refusal come
first: tests/dags/test_dag_integrity.py and tests/unit/dags/test_inert_input.py; this is the layer under them.)"""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "dags"))

PLAYBOOKS = {  # each manual DAG's playbook and its free-text inputs (dags/manual.py)
    "recover-db.yml": ["database", "backup", "target_name"],
    "recover-rows.yml": ["database", "tables", "where", "backup", "target_time", "target_lsn", "target_name"],
    "emergency-shutdown.yml": ["shutdown_scope"],
    "emergency-resume.yml": ["shutdown_scope"],
    "scale.yml": ["scale_target", "dynamodb_billing_mode"],
    "kill-long-queries.yml": ["pg_sessions_max_duration"],
    "restart-app.yml": ["service"],
    "terraform-unlock.yml": ["lock_path", "lock_table", "lock_id", "min_age"],
    "rollback-deploy.yml": ["deploy_target", "to"],
    "lambda-env.yml": ["function", "variables", "unset", "for"],
    "waf-block.yml": ["addresses", "block_for", "ip_set"],
    "waf-allow.yml": ["addresses", "allow_for", "ip_set"],
    "waf-count-rule.yml": ["rule", "web_acl"],
    "security-group-rule.yml": ["group", "port", "cidr", "force_reason"],
    "cognito-user.yml": ["user", "filter", "email", "user_pool"],
}


def test_every_manual_playbook_is_listed():
    import re

    named = set(re.findall(r'manual_procedure\(\s*"\w+", "([\w-]+\.yml)"', (ROOT / "dags" / "manual.py").read_text()))
    assert named - {"bootstrap-fixes.yml"} == set(PLAYBOOKS)  # bootstrap_fixes takes no input but the reason


@pytest.mark.parametrize("playbook", sorted(PLAYBOOKS))
def test_a_template_in_any_input_never_runs(playbook, tmp_path, monkeypatch, pg, chat_db):
    from conftest import Workspace
    from runbook_airflow import PlaybookFailed, PlaybookRun

    ws = Workspace(pg, [chat_db], tmp_path)
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(ws.inventory))
    marker = tmp_path / "F"
    # An expression and a statement in the one value: either would create the marker if rendered.
    payload = f"x{{{{ lookup('pipe', 'touch {marker}') }}}}{{% set y = lookup('pipe', 'touch {marker}') %}}"
    run = PlaybookRun(playbook, {name: payload for name in PLAYBOOKS[playbook]}, check=True, reason=f"INC {payload}")
    try:
        run.run()
    except PlaybookFailed:
        pass  # refused as bad input, or found nothing: either way nothing was rendered
    assert not marker.exists(), (playbook, payload, run.failures)
