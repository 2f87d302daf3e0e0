#!/usr/bin/env bash
# ansible-test sanity, every test of the suite, on what the collection ships: the artifact `ansible-galaxy
# collection build` makes (galaxy.yml's allowlist), unpacked at the path ansible-test requires
# (.../ansible_collections/runbook/recovery), with the collection's unit tests beside it. The sandbox, the DAGs,
# the benchmarks and the other test suites are not part of the collection and are linted by ruff (make lint).
# Two tests find nothing to check here and say so: pslint (no PowerShell) and shellcheck (no shell script ships).
# HOME points inside .ansible/ so nothing lands in the real home directory; ansible-test's pip bootstrap download
# is unreachable here, so its cache is pre-filled with a stand-in that bootstraps pip from the standard library
# (tests/sanity/get_pip_standin.py). The tests' own requirements come from the package index, as ansible-test
# installs them.
#
#   bash tests/sanity.sh [ansible-test sanity options]     e.g. --test pep8
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/.ansible/sanity"
export HOME="$root/.ansible/test-home"
pip_version="$(python -c 'import ansible_test._util.target.setup.requirements as r; print(r.__dict__.get("PIP_VERSION", "24.2"))' 2>/dev/null || echo 24.2)"
mkdir -p "$HOME/.ansible/test/cache"
cp "$root/tests/sanity/get_pip_standin.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
rm -rf "$work" && mkdir -p "$work/artifact" "$work/ansible_collections/runbook/recovery"
collection="$work/ansible_collections/runbook/recovery"
(cd "$root" && ansible-galaxy collection build --force --output-path "$work/artifact" . > /dev/null)
tar -xzf "$work"/artifact/runbook-recovery-*.tar.gz -C "$collection"
(cd "$root" && git ls-files -co --exclude-standard -z tests/unit tests/sanity | xargs -0 cp --parents -t "$collection")
cd "$collection"
git init -q . && git add -A >/dev/null
ansible-test sanity --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no "$@"
