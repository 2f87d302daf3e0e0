#!/usr/bin/env bash
# make test: every phase, in two lanes side by side, then a table of each phase's wall time.
#
#   lane 1: integration (pytest -n 2)
#   lane 2: lint, sanity, unit, dags, ui, molecule
#
# The integration tests keep both cores busy most of the time, but not all of it: they wait on archivers, servers
# and timeouts; lane 2 fills those waits (its phases wait on Airflow, a browser and servers even more). Each phase
# writes to .cache/test-logs/<phase>.log; the log is printed whole when the phase ends (so two phases' lines never
# interleave), and a failed phase's log is printed again at the end. A failure stops both lanes after their
# current phase.
#
#   bash tests/phases.sh [LANE1_PHASES] [LANE2_PHASES]      defaults: "integration" "lint sanity unit dags ui molecule"
set -uo pipefail
cd "$(dirname "$0")/.."
lane1=${1:-integration}
lane2=${2:-lint sanity unit dags ui molecule}
logs=.cache/test-logs
mkdir -p "$logs"
rm -f "$logs"/*.log "$logs"/*.result "$logs"/.failed
begin=$SECONDS

run_lane() {  # run_lane PHASE...: one after another, until one fails (here or in the other lane)
	local phase start status
	for phase in "$@"; do
		if [ -e "$logs/.failed" ]; then
			echo "$phase - not-run" > "$logs/$phase.result"
			continue
		fi
		start=$SECONDS
		make --no-print-directory "$phase" > "$logs/$phase.log" 2>&1
		status=$?
		{ echo "== $phase ($((SECONDS - start)) s, exit $status)"; cat "$logs/$phase.log"; } 
		if [ $status -eq 0 ]; then
			echo "$phase $((SECONDS - start)) ok" > "$logs/$phase.result"
		else
			echo "$phase $((SECONDS - start)) FAILED" > "$logs/$phase.result"
			touch "$logs/.failed"
		fi
	done
}

# shellcheck disable=SC2086 # the phase lists are words
run_lane $lane1 &
first=$!
# shellcheck disable=SC2086
run_lane $lane2
wait "$first"

status=0
printf '\n== make test: wall time per phase (two lanes side by side)\n'
for phase in $lane1 $lane2; do
	read -r name seconds result < "$logs/$phase.result"
	printf '  %-12s %5ss  %s\n' "$name" "$seconds" "$result"
	[ "$result" = ok ] || status=1
done
printf '  %-12s %5ss\n' total $((SECONDS - begin))
for phase in $lane1 $lane2; do
	if grep -q FAILED "$logs/$phase.result"; then
		printf '\n== %s FAILED; the end of its log (%s):\n' "$phase" "$logs/$phase.log"
		tail -n 120 "$logs/$phase.log"
	fi
done
exit $status
