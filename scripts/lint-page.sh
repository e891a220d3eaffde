#!/usr/bin/env bash
# Lints the status page weir embeds (appliance/src/admin/page/): ESLint on its script,
# html-validate on its HTML, at the versions pinned in appliance/src/admin/page/lint/
# (package.json and package-lock.json). The linters are installed with `npm ci` into the
# git-ignored .cache/page-lint the first time, and again only when the pins change.
# Needs node and npm (scripts/test-deps.sh installs them). tests/tests/status_page.rs runs it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WEIR_TEST_CACHE:-$ROOT/.cache}"
PAGE="$ROOT/appliance/src/admin/page"
PINS="$PAGE/lint"
DIR="$CACHE/page-lint"

command -v npm >/dev/null 2>&1 || { echo "npm is missing: run scripts/test-deps.sh" >&2; exit 1; }
mkdir -p "$DIR"
if ! cmp -s "$PINS/package-lock.json" "$DIR/package-lock.json" || [ ! -d "$DIR/node_modules" ]; then
  cp "$PINS/package.json" "$PINS/package-lock.json" "$DIR/"
  (cd "$DIR" && npm ci --no-audit --no-fund --silent)
fi
cp "$PINS/eslint.config.mjs" "$PINS/htmlvalidate.json" "$DIR/"
cp "$PAGE/status.js" "$PAGE/index.html" "$DIR/"
cd "$DIR"
./node_modules/.bin/eslint --max-warnings 0 status.js
./node_modules/.bin/html-validate --config htmlvalidate.json index.html
echo "status page: eslint $(./node_modules/.bin/eslint --version), $(./node_modules/.bin/html-validate --version): clean"
