#!/usr/bin/env bash
# make airflow: Airflow standalone (scheduler, dag processor, triggerer, api-server) on 127.0.0.1:8080 with this
# project's dags/, pointed at the sandbox: the inventory inventories/local, the aws_default connection at the AWS
# emulator. Everything Airflow writes stays in .airflow/ (its home, SQLite metadata, logs).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# Four eyes (dags/runbook_approval.py): admin triggers a procedure (the operators: role op and above), approver
# approves it (never the requester).
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,approver:user"
export RUNBOOK_APPROVERS="${RUNBOOK_APPROVERS:-approver}" RUNBOOK_OPERATORS="${RUNBOOK_OPERATORS:-role:op}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
export AIRFLOW__API__HOST="${AIRFLOW_UI_HOST:-127.0.0.1}" AIRFLOW__API__PORT="${AIRFLOW_UI_PORT:-8080}"
export AIRFLOW__API__BASE_URL="http://$AIRFLOW__API__HOST:$AIRFLOW__API__PORT"
export ANSIBLE_HOME="$PWD/.ansible" ANSIBLE_COLLECTIONS_PATH="$PWD/.ansible/collections"
export RUNBOOK_PROJECT_DIR="$PWD" RUNBOOK_INVENTORY="${RUNBOOK_INVENTORY:-inventories/local}"
mkdir -p "$AIRFLOW_HOME" && chmod 700 "$AIRFLOW_HOME"
# Each user with a random password, made once and kept (0600).
python -c 'import json, os, secrets, sys
path = sys.argv[1]
known = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
users = {user: known.get(user) or secrets.token_urlsafe(12) for user in ("admin", "approver")}
if users != known:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(path, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(users, handle)' "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
# The AWS emulator of the sandbox as the aws_default connection (in production: a real connection, or none and
# the machine's instance role).
eval "$(python sandbox/sandbox.py env)"
AIRFLOW_CONN_AWS_DEFAULT="$(python -c 'import json, os; print(json.dumps({"conn_type": "aws",
  "login": os.environ["AWS_ACCESS_KEY_ID"], "password": os.environ["AWS_SECRET_ACCESS_KEY"],
  "extra": {"region_name": os.environ["AWS_DEFAULT_REGION"], "endpoint_url": os.environ["AWS_ENDPOINT_URL"]}}))')"
export AIRFLOW_CONN_AWS_DEFAULT
airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -n 40 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
cat <<INFO

  Airflow UI:  $AIRFLOW__API__BASE_URL   (log in as admin to trigger a procedure, as approver to approve it:
               the passwords are in $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE, 0600)
  DAGs:        $AIRFLOW__CORE__DAGS_FOLDER, against the sandbox (inventory $RUNBOOK_INVENTORY)
  Stop:        Ctrl-C. Scheduled DAGs start paused: unpause them in the UI.

INFO
exec airflow standalone
