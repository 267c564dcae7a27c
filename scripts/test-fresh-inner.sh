#!/usr/bin/env bash
# Inside scripts/test-fresh.sh's own mount and PID namespace: mounts /proc, /sys, /dev (a fresh
# /dev/shm) and a fresh /run into the clean root $FRESH_ROOT, then runs setup, the demo and the
# tests there as root with only the environment listed in $FRESH_ROOT/root/.ferry-fresh-env.
set -euo pipefail
R=${FRESH_ROOT:?} LOGS=${FRESH_LOGS:?}
# the root must be a mount point of its own, as / is on a real machine: `ip netns exec` and
# `ip -n` remount / as a slave and fail with "Invalid argument" on a plain directory
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t tmpfs tmpfs "$R/run"
mkdir -p "$R/run/netns"
mapfile -t env_in < "$R/root/.ferry-fresh-env"
step() {
  local name=$1 cmd=$2 rc=0
  local t0=$EPOCHREALTIME
  printf 'test:fresh: %s ...\n' "$name" >&2
  chroot "$R" /usr/bin/env -i "${env_in[@]}" bash -c "cd /root/ferry && $cmd" > "$LOGS/$name.log" 2>&1 || rc=$?
  local t1=$EPOCHREALTIME
  local ms=$(( (${t1/./} - ${t0/./}) / 1000 ))
  printf 'test:fresh: %-6s %s, %d.%01d s (log: %s)\n' "$name" "$([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)")" $((ms / 1000)) $((ms % 1000 / 100)) "$LOGS/$name.log" >&2
  return "$rc"
}
step setup "bash scripts/setup.sh"
step demo "npm run demo"
# FERRY_FRESH_TEST: another test command (e.g. one file, to chase a failure seen only here)
step test "${FERRY_FRESH_TEST:-npm test}"
