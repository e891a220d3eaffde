#!/usr/bin/env bash
# Comments and docs cite `docs/...` or nothing (docs/design.md, "How the code should read"):
# never design notes, style notes, corrections lists or issue numbers that live outside the
# repository, since a reader of the repository cannot open them. Lists every tracked line
# that cites one and exits 1; exits 0 when there is none. Generated data (raw bench records,
# fuzz seeds and crash inputs, plots, the lock file) is not checked.
set -euo pipefail
cd "$(dirname "$0")/.."

# DESIGN.md, STYLE.md (and "DESIGN §2", "STYLE habit 4"), CORRECTIONS (with or without a
# number or .md), and "issue 7" / "Issue 7's" / "issues 3 and 4" / "issue #7".
pattern='DESIGN\.md|DESIGN §|STYLE\.md|STYLE habit|CORRECTIONS|(^|[^[:alnum:]_])[Ii]ssues? #?[0-9]'

found=$(git grep -n -I -E "$pattern" -- . \
    ':!scripts/check-cites.sh' \
    ':!*Cargo.lock' \
    ':!bench/results/raw/*' \
    ':!*.svg' \
    ':!*/fuzz/seeds/*' \
    ':!*/fuzz/corpus/*' \
    ':!*/fuzz/artifacts*' || true)

if [ -n "$found" ]; then
    echo "check-cites: cite docs/ (e.g. docs/design.md, \"<section>\") or nothing, not these:" >&2
    echo "$found" >&2
    exit 1
fi
echo "check-cites: no citations of DESIGN.md, STYLE.md, CORRECTIONS or issue numbers"
