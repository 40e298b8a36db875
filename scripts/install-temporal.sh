#!/usr/bin/env bash
# Puts the Temporal CLI v1.5.1 at .id3/bin/temporal: TEMPORAL_CLI_PATH wins; an installed
# binary of that exact module version is reused; otherwise it is built with `go install`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WANT="v1.5.1"
MODULE="github.com/temporalio/cli"
BIN_DIR="$ROOT/.id3/bin"
TARGET="$BIN_DIR/temporal"

if [ -n "${TEMPORAL_CLI_PATH:-}" ]; then
  [ -x "$TEMPORAL_CLI_PATH" ] || { echo "setup: TEMPORAL_CLI_PATH=$TEMPORAL_CLI_PATH is not an executable" >&2; exit 1; }
  exit 0
fi

# `go install`ed binaries report 0.0.0-DEV from --version; the module version is in the build info.
is_wanted() { [ -x "$1" ] && command -v go >/dev/null 2>&1 && go version -m "$1" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+$MODULE[[:space:]]+$WANT([[:space:]]|$)"; }

if is_wanted "$TARGET"; then exit 0; fi
command -v go >/dev/null 2>&1 || { echo "setup: Go is required to install the Temporal CLI ($MODULE $WANT), or set TEMPORAL_CLI_PATH" >&2; exit 1; }
mkdir -p "$BIN_DIR"
for candidate in "$(go env GOPATH)/bin/temporal" "$(command -v temporal || true)"; do
  if [ -n "$candidate" ] && is_wanted "$candidate"; then
    ln -sf "$candidate" "$TARGET"
    echo "setup: using installed Temporal CLI $WANT at $candidate" >&2
    exit 0
  fi
done
echo "setup: building the Temporal CLI $WANT with go install (a few minutes, once)…" >&2
GOBIN="$BIN_DIR" go install "$MODULE/cmd/temporal@$WANT"
is_wanted "$TARGET" || { echo "setup: $TARGET is not $MODULE $WANT after go install" >&2; exit 1; }
