#!/usr/bin/env bash
# Installs everything id3 needs on a fresh machine: npm packages, the Temporal CLI (pinned) and,
# for the Web UI test, Chromium (apt-get, as root).
# Idempotent and quick when already done. Part of `npm start` and `npm test`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required but not installed ($2)" >&2; exit 1; }; }
need node "Node.js >= 20.9"
need npm "comes with Node.js"

# 1. npm packages, reinstalled whenever package-lock.json changes.
stamp="node_modules/.id3-lock.sha256"
lock_sha="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sha" ]; then
  echo "setup: installing npm packages (npm ci)…" >&2
  # tfjs-node(-gpu) are optional: their install downloads libtensorflow and fails offline; npm skips them.
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sha" > "$stamp"
fi

# 2. The Temporal CLI, pinned (later tags refuse `go install`).
bash "$ROOT/scripts/install-temporal.sh"

# 3. Chromium, for the Web UI end-to-end test (tests/src/web-ui.test.ts drives it headless through
#    puppeteer-core, which never downloads a browser). The test uses CHROMIUM_PATH, else /usr/bin/chromium.
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ -n "${CHROMIUM_PATH:-}" ]; then
    echo "setup: CHROMIUM_PATH=$CHROMIUM_PATH is not an executable" >&2; exit 1
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Chromium for the Web UI test (apt-get update && apt-get install chromium)…" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2
    [ -x "$chromium" ] || { echo "setup: apt-get installed chromium but $chromium is missing; set CHROMIUM_PATH" >&2; exit 1; }
  else
    # Not fatal: the app runs without it; only the Web UI test needs it, and it fails naming this.
    echo "setup: warning: Chromium not found at $chromium; the Web UI test needs it: run 'sudo apt-get install -y chromium' or set CHROMIUM_PATH" >&2
  fi
fi
