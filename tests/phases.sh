#!/usr/bin/env bash
# make test: the phases one after another, then a table of each one's wall time and how many of the machine's cores
# were busy meanwhile (from /proc/stat: every process counts, the servers the tests started too), so the table shows
# where the time budget goes and whether a phase leaves cores idle. The table is printed also when a phase fails
# (the phases after it do not run). Chromium, which only the ui phase needs, is installed meanwhile in the
# background (apt's download and unpacking barely use the CPU the phases need).
#
# A step written A+B runs phases A and B side by side, each one's output kept in .cache/phase-NAME.log and printed
# whole when it ends: for phases that leave a core idle (the browser test mostly waits on Airflow's scheduler).
#
#   bash tests/phases.sh PHASE|PHASE+PHASE...      (make test passes its TEST_PHASES)
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache

cpu_ticks() {  # "busy total" jiffies of all cores since boot
	local _ user nice system idle iowait irq softirq steal
	read -r _ user nice system idle iowait irq softirq steal _ < /proc/stat
	echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

browser=""
if [[ " $* " =~ [\ +]ui[\ +] ]]; then
	make --no-print-directory deps-browser > .cache/deps-browser.log 2>&1 &
	browser=$!
fi

run_phase() {  # run_phase NAME: the phase's make target; writes its wall time and result to .cache/phase-NAME.result
	local start=$SECONDS result=ok
	make --no-print-directory "$1" || result=FAILED
	echo "$((SECONDS - start)) $result" > ".cache/phase-$1.result"
	[ "$result" = ok ]
}

rm -f .cache/phase-*.result
cores=$(nproc)
status=0 table="" begin=$SECONDS
for step in "$@"; do
	IFS=+ read -r -a phases <<< "$step"
	if [ $status -ne 0 ]; then
		for phase in "${phases[@]}"; do table+=$(printf '\n  %-12s %6s  not run' "$phase" -); done
		continue
	fi
	if [[ "+$step+" == *+ui+* ]] && [ -n "$browser" ]; then
		wait "$browser" || { cat .cache/deps-browser.log; echo "installing Chromium failed: make ui tries again"; }
		browser=""
	fi
	read -r busy0 total0 <<< "$(cpu_ticks)"
	if [ ${#phases[@]} -eq 1 ]; then
		run_phase "${phases[0]}" || status=1
	else
		pids=()
		for phase in "${phases[@]}"; do
			(run_phase "$phase" > ".cache/phase-$phase.log" 2>&1; code=$?
			 cat ".cache/phase-$phase.log"; exit $code) &
			pids+=($!)
		done
		for pid in "${pids[@]}"; do wait "$pid" || status=1; done
	fi
	read -r busy1 total1 <<< "$(cpu_ticks)"
	used=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$cores" \
		'BEGIN { printf "%.1f", (t > 0 ? n * b / t : 0) }')
	side=""
	[ ${#phases[@]} -gt 1 ] && side="  (side by side: ${step//+/, })"
	for phase in "${phases[@]}"; do
		read -r seconds result < ".cache/phase-$phase.result" 2>/dev/null || { seconds=-; result=FAILED; }
		table+=$(printf '\n  %-12s %5ss  %-6s  %s of %s cores busy%s' "$phase" "$seconds" "$result" "$used" "$cores" "$side")
	done
done
printf '\n== make test: wall time per phase%s\n  %-12s %5ss\n' "$table" total $((SECONDS - begin))
exit $status
