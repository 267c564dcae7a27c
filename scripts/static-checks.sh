#!/usr/bin/env bash
# npm test's first step: typecheck and lint side by side (each is one busy
# process; on 2 cores together they take as long as the slower one). Each
# one's output is printed whole when it ends; fails if either fails.
set -uo pipefail
cd "$(dirname -- "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm run -s typecheck >"$tmp/typecheck" 2>&1 & tc=$!
npm run -s lint >"$tmp/lint" 2>&1 & li=$!
wait "$tc"; tcrc=$?
wait "$li"; lirc=$?
cat "$tmp/typecheck" "$tmp/lint"
[ "$tcrc" = 0 ] || echo "static checks: typecheck failed (exit $tcrc)" >&2
[ "$lirc" = 0 ] || echo "static checks: lint failed (exit $lirc)" >&2
[ "$tcrc" = 0 ] && [ "$lirc" = 0 ]
