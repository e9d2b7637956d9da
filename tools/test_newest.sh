#!/usr/bin/env bash
# The suite against the newest releases fluxscale's requirements allow, without the lock
# (constraints.txt): finds a dependency's drift on purpose, before a user or CI does.
#
#   bash tools/test_newest.sh            # fresh .venv-newest, newest releases, the suite
#   bash tools/test_newest.sh --lock     # the same; when it passes, rewrite constraints.txt
#
# Extra arguments go to pytest (e.g. -x, -k ssh). Python 3.11 on linux x86_64 is what the lock
# is made on (CI's machine).
set -euo pipefail
cd "$(dirname "$0")/.."
lock=0
args=()
for a in "$@"; do
    if [[ "$a" == "--lock" ]]; then lock=1; else args+=("$a"); fi
done
rm -rf .venv-newest
python3 -m venv .venv-newest
. .venv-newest/bin/activate
pip install --upgrade pip >/dev/null
pip install --upgrade --upgrade-strategy eager -e ".[test]"
python -m pytest -n 2 -q "${args[@]}"
if [[ $lock == 1 ]]; then
    {
        echo "# The versions the test suite last passed with (bash tools/test_newest.sh --lock,"
        echo "# $(date -u +%Y-%m-%d), $(python -c 'import platform; print("Python", platform.python_version(), platform.system(), platform.machine())'))."
        echo "# Used by .ci/run and the README's commands: pip install -c constraints.txt -e \".[test]\"."
        echo "# torch==2.13.0 also matches the local CPU build 2.13.0+cpu."
        pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+cpu$/\1/' | sort -f
    } > constraints.txt
    echo "constraints.txt rewritten ($(grep -vc '^#' constraints.txt) packages)"
fi
