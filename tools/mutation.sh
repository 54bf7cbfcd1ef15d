#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the functions that compute cfzoo's reported numbers: metrics (FPR/TPR/ACC,
# PSNR), FGSM, and the scoring and counting behind Tables II-IV (files in [tool.mutmut]
# of pyproject.toml, functions in NUMBERS below). iterative_fgsm is left out: mutants of its stopping rule
# loop until mutmut's timeout, minutes each; so are the markdown builders of reports.py, whose tests run the
# CLI in a subprocess that mutmut's in-process mutants never reach. Not part of CI: about 20 minutes on
# 2 cores. Runs in a throw-away git worktree of HEAD, so the checkout is left alone; prints every mutant
# not killed and the score.
#
#   tools/mutation.sh            # HEAD's code and tests
#   tools/mutation.sh REF        # HEAD's code, the tests of REF (the score before a change to the tests)
#   MUTANTS="name ..." tools/mutation.sh   # only these mutants (mutmut names or fnmatch patterns)
set -euo pipefail
repository=$(cd "$(dirname "$0")/.." && pwd)
venv="$repository/.venv"
[ -x "$venv/bin/python" ] || { echo "error: no .venv; run README's test command first" >&2; exit 1; }
"$venv/bin/python" -m pip show mutmut >/dev/null 2>&1 || "$venv/bin/python" -m pip install -q "mutmut==3.8.1"

work=$(mktemp -d)
trap 'git -C "$repository" worktree remove --force "$work" >/dev/null 2>&1 || true' EXIT
git -C "$repository" worktree add -q --detach "$work" HEAD
cd "$work"
if [ -n "${1:-}" ]; then
    rm -rf tests && git checkout -q "$1" -- tests
fi
NUMBERS=(
    "cfzoo.metrics.*"
    "cfzoo.ops.attacks.fgsm.x_fgsm__*" "cfzoo.ops.attacks.fgsm.x_gradient_sign__*" "cfzoo.ops.attacks.fgsm.x_check_eps__*"
    "cfzoo.ops.attacks.fgsm.x_attack_patches__*"
    "cfzoo.experiments.transfer.x_attack_patch_set__*" "cfzoo.experiments.transfer.x__tpr__*"
    "cfzoo.ops.scoring.x_called_manipulated__*" "cfzoo.ops.scoring.x_score_positions__*"
    "cfzoo.data.x_manipulated_rows__*" "cfzoo.data.x__even_quotas__*" "cfzoo.experiments.transfer.x_paper_tpr__*"
)
[ -n "${MUTANTS:-}" ] && read -r -a NUMBERS <<< "$MUTANTS"
"$venv/bin/mutmut" run --max-children "${MUTATION_WORKERS:-2}" "${NUMBERS[@]}" >mutmut-run.log 2>&1 || { tail -c 2000 mutmut-run.log >&2; exit 1; }
"$venv/bin/python" - "${NUMBERS[@]}" <<'PY'
import collections, fnmatch, json, pathlib, sys
from mutmut.stats import status_by_exit_code

patterns = sys.argv[1:]
statuses = {}
for meta in pathlib.Path("mutants").rglob("*.meta"):
    for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
        if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
            statuses[name] = status_by_exit_code[exit_code]
for name, status in sorted(statuses.items()):
    if status != "killed":
        print(f"{status}: {name}")
counts = collections.Counter(statuses.values())
killed = counts["killed"] + counts["timeout"]
print(", ".join(f"{status}: {count}" for status, count in counts.most_common()))
print(f"mutation score: {killed} of {len(statuses)} mutants killed ({100 * killed / max(1, len(statuses)):.1f}%)")
PY
