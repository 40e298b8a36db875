#!/usr/bin/env bash
# Installs everything id3 needs on a fresh machine: npm packages and the Temporal CLI (pinned).
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
