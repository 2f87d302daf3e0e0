#!/usr/bin/env bash
# make molecule: every role's molecule `default` scenario against one set of servers. The servers are started once
# (tests/molecule/prepare.yml), each scenario's own prepare only puts back what it uses and its cleanup is skipped
# (RUNBOOK_MOLECULE_SHARED_SERVERS), and everything is removed once at the end, also when a scenario fails.
# With MOLECULE_JOBS=2, scenarios that share no server run side by side: the AWS ones beside the others.
#
#   bash tests/molecule/run.sh [ROLE...]     every role's scenario, or these ones in this order
set -uo pipefail
cd "$(dirname "$0")/../.."
jobs=${MOLECULE_JOBS:-1}
logs=.ansible/molecule

# Which servers a scenario uses: its platform's groups (aws, postgres, redis; log_hosts only writes files).
if [ $# -eq 0 ]; then
	set -- $(for dir in roles/*/molecule/default; do role=${dir#roles/}; echo "${role%/molecule/default}"; done)
fi
roles=(); aws=(); others=(); both=()
for role in "$@"; do
	groups=$(grep -E '^ +groups:' "roles/$role/molecule/default/molecule.yml") || { echo "no scenario: $role"; exit 2; }
	roles+=("$role")
	if [[ $groups =~ aws ]]; then
		if [[ $groups =~ postgres|redis ]]; then both+=("$role"); else aws+=("$role"); fi
	else
		others+=("$role")
	fi
done

play() {  # play NAME: tests/molecule/NAME.yml on the scenarios' host, outside molecule
	ansible-playbook -i tests/molecule/inventory.yml "tests/molecule/$1.yml" > "$logs/$1.log" 2>&1 \
		|| { tail -n 40 "$logs/$1.log"; echo "molecule $1 failed (log: $logs/$1.log)"; return 1; }
}
scenario() {  # scenario ROLE: molecule test in roles/ROLE, its log in $logs/ROLE.log
	local role=$1 log="$logs/$1.log" start=$SECONDS
	if (cd "roles/$role" && RUNBOOK_MOLECULE_SHARED_SERVERS=1 NO_COLOR=1 molecule test) > "$log" 2>&1; then
		echo "== molecule: $role ($((SECONDS - start)) s) $(grep -E 'failed=' "$log" | tail -n 1 | tr -s ' ')"
	else
		tail -n 80 "$log"; echo "== molecule failed for $role ($((SECONDS - start)) s; log: $log)"; return 1
	fi
}
lane() {  # lane ROLE...: one after another, stopping at the first failure
	local role
	for role in "$@"; do scenario "$role" || return 1; done
}

mkdir -p "$logs"
rm -f "$logs"/*.log
trap 'play cleanup' EXIT
trap 'exit 130' INT TERM
play prepare || exit 1
if [ "$jobs" -ge 2 ]; then
	lane "${aws[@]}" & aws_lane=$!
	lane "${others[@]}"; status=$?
	wait "$aws_lane" || status=1
	[ $status -ne 0 ] || lane "${both[@]}" || status=1
else
	lane "${roles[@]}"; status=$?
fi
exit $status
