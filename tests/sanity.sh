#!/usr/bin/env bash
# ansible-test sanity (validate-modules) on a copy of the collection at the path ansible-test requires
# (.../ansible_collections/runbook/recovery). HOME points inside .ansible/ so nothing lands in the real
# home directory; ansible-test's pip bootstrap download is unreachable here, so its cache is pre-filled
# with a stand-in that bootstraps pip from the standard library (tests/sanity/get_pip_standin.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/.ansible/sanity"
export HOME="$root/.ansible/test-home"
pip_version="$(python -c 'import ansible_test._util.target.setup.requirements as r; print(r.__dict__.get("PIP_VERSION", "24.2"))' 2>/dev/null || echo 24.2)"
mkdir -p "$HOME/.ansible/test/cache"
cp "$root/tests/sanity/get_pip_standin.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
rm -rf "$work" && mkdir -p "$work/ansible_collections/runbook/recovery"
# Only what git would ship: tracked files and new files not ignored.
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$work/ansible_collections/runbook/recovery")
cd "$work/ansible_collections/runbook/recovery"
git init -q . && git add -A >/dev/null
ansible-test sanity --test validate-modules --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no "$@"
