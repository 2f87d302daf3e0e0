#!/usr/bin/env bash
# make test: the phases one after another, then a table of each one's wall time and how many of the machine's cores
# were busy meanwhile (from /proc/stat: every process counts, the servers the tests started too), so the table shows
# where the time budget goes and whether a phase leaves cores idle. The table is printed also when a phase fails
# (the phases after it do not run). Chromium, which only the ui phase needs, is installed meanwhile in the
# background (apt's download and unpacking barely use the CPU the phases need).
#
#   bash tests/phases.sh PHASE...      (make test passes its TEST_PHASES)
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache

cpu_ticks() {  # "busy total" jiffies of all cores since boot
	local _ user nice system idle iowait irq softirq steal
	read -r _ user nice system idle iowait irq softirq steal _ < /proc/stat
	echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

browser=""
if [[ " $* " == *" ui "* ]]; then
	make --no-print-directory deps-browser > .cache/deps-browser.log 2>&1 &
	browser=$!
fi

cores=$(nproc)
status=0 table="" begin=$SECONDS
for phase in "$@"; do
	if [ $status -ne 0 ]; then table+=$(printf '\n  %-12s %6s  not run' "$phase" -); continue; fi
	if [ "$phase" = ui ] && [ -n "$browser" ]; then
		wait "$browser" || { cat .cache/deps-browser.log; echo "installing Chromium failed: make ui tries again"; }
	fi
	read -r busy0 total0 <<< "$(cpu_ticks)"
	start=$SECONDS result=ok
	make --no-print-directory "$phase" || { status=$?; result=FAILED; }
	read -r busy1 total1 <<< "$(cpu_ticks)"
	used=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$cores" \
		'BEGIN { printf "%.1f", (t > 0 ? n * b / t : 0) }')
	table+=$(printf '\n  %-12s %5ss  %-6s  %s of %s cores busy' "$phase" $((SECONDS - start)) "$result" "$used" "$cores")
done
printf '\n== make test: wall time per phase%s\n  %-12s %5ss\n' "$table" total $((SECONDS - begin))
exit $status
