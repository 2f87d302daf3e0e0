#!/usr/bin/env bash
# The newcomer's tour (make demo): back up the sandbox's chat database, verify the backup by restoring
# it, cause a disaster, look at the recovery plan, recover (the application's backend stopped before the restore and
# started after), run the recovery again (changed=0), restart the backend one container at a time, and stop and
# resume the chatbot on AWS.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_NOCOLOR=1
port="$(python -c "import yaml; print(yaml.safe_load(open('inventories/local/group_vars/all/sandbox.yml'))['sandbox_pg_port'])")"
PGPASSWORD="$(cat .sandbox/pg/password)"
export PGPASSWORD PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres PGDATABASE=chat

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rows() {
  local out="" table count
  for table in users chat_sessions chat_messages; do
    count="$(psql -Atc "SELECT count(*) FROM $table" 2>/dev/null)" || count="MISSING"
    out="$out $table=$count"
  done
  echo "${out# }"
}
recap() { tail -n 3 | grep -E 'ok=|failed=' || true; }

step "The demo database now: $(rows)"

step "1. Back up (pg_dump in one snapshot, row counts and sha256 in manifest.json, verified)"
# make sandbox-up took one already: this one is taken whatever exists (a plain run is a no-op under 1 h).
ansible-playbook playbooks/backup-db.yml -e pg_backup_skip_if_newer_than=0 | recap
ls -l .sandbox/backups/chat | tail -n +2

step "2. Verify the newest backup by restoring it into a scratch database"
ansible-playbook playbooks/verify-backups.yml -e verify_level=restore | grep -E 'passed|FAILED' | head -n 3

step "3. Disaster: half the messages deleted, the users table dropped"
psql -qc "DELETE FROM chat_messages WHERE id % 2 = 0" -c "DROP TABLE users CASCADE" 2>&1 | grep -v NOTICE || true
echo "now: $(rows)"

step "4. The plan (--check changes nothing)"
ansible-playbook playbooks/recover-db.yml --check | grep -E 'would restore' | head -n 1 | sed 's/^ *msg: //'

step "5. Recover: ansible-playbook playbooks/recover-db.yml -e confirm=true -e backup=latest"
ansible-playbook playbooks/recover-db.yml -e confirm=true -e backup=latest | recap
echo "now: $(rows)"
echo "kept for investigation: $(psql -d postgres -Atc "SELECT string_agg(datname, ', ') FROM pg_database WHERE datname LIKE 'chat\_\_pre\_recovery\_%'")"

step "6. The same recovery again is a no-op"
ansible-playbook playbooks/recover-db.yml -e confirm=true -e backup=latest | recap

backend() { docker --host "unix://$PWD/.sandbox/docker/docker.sock" ps --filter label=com.docker.compose.service=backend \
  --format '{{.Names}} {{.Status}}' 2>/dev/null | sort | paste -sd ';' | sed 's/;/; /g'; }
step "6b. Restart the application's backend, one container at a time, each healthy before the next"
echo "before: $(backend)"
ansible-playbook playbooks/restart-app.yml -e confirm=true -e service=backend | recap
ansible-playbook playbooks/restart-app.yml -e service=backend -e verify=true | grep -o 'Healthy on [^:]*' | head -n 1
echo "after:  $(backend)"

eval "$(python sandbox/sandbox.py env)"
handler() { aws lambda get-function-concurrency --function-name ChatbotLambdaStack-WebSocketHandler \
  --query ReservedConcurrentExecutions --output text; }
step "7. Emergency: stop the chatbot (WebSocket handler reserved concurrency now $(handler))"
ansible-playbook playbooks/emergency-shutdown.yml -e confirm=true -e shutdown_scope=chatbot | recap
echo "handler reserved concurrency: $(handler); its tags: $(aws lambda list-tags --resource \
  "$(aws lambda get-function --function-name ChatbotLambdaStack-WebSocketHandler --query Configuration.FunctionArn \
  --output text)" --query Tags --output json | tr -d '\n ')"

step "8. Resume: every function, stage and service back to exactly what it had"
ansible-playbook playbooks/emergency-resume.yml -e confirm=true -e shutdown_scope=chatbot | recap
echo "handler reserved concurrency: $(handler)"

step "Audit log (.sandbox/audit.jsonl), last entries"
tail -n 4 .sandbox/audit.jsonl | python -c 'import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(r["at"], r["actor"], r["procedure"], r.get("database") or r.get("scope"), r.get("backup", ""), r["result"])'
printf '\nThe sandbox keeps running: make sandbox-status, make sandbox-down.\n'
