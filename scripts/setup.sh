#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (run as root):
#   1. Debian packages: every program Ferry runs, from the table scripts/programs.txt
#   2. the project's Node runtime (Node 26 from the npm registry) in .runtime/
#   3. npm dependencies (npm ci, under that runtime)
#   4. the test guest image (Debian kernel + busybox initramfs), cached by input hash
#   5. only with FERRY_SETUP_BENCH=1 (npm run bench): Debian's libvirt for bench/libvirt.ts
# Each step is skipped when what it makes is already there.
set -euo pipefail
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
say() { printf 'setup: %s\n' "$*" >&2; }

# 1. Debian packages: the table scripts/programs.txt, set base (+ bench with FERRY_SETUP_BENCH=1;
# bench: libvirtd + its QEMU driver + virsh, without libvirt-daemon-system: no system service, no
# default NAT network, bench/libvirt.ts runs its own daemons in their own namespaces)
sets=(base)
if [ "${FERRY_SETUP_BENCH:-0}" = 1 ]; then sets+=(bench); fi
bash "$root/scripts/packages.sh" "${sets[@]}"

# 2. Node runtime, project-local
want_major=26
have=$("$root/.runtime/bin/node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$have" -lt "$want_major" ] || [ ! -x "$root/.runtime/bin/npm" ]; then
  say "installing Node $want_major and npm into .runtime/ (from the npm registry)"
  npm install -g --prefix "$root/.runtime" --no-audit --no-fund --loglevel=error "node@$want_major" npm@11 >/dev/null
fi
export PATH="$root/.runtime/bin:$PATH"
hash -r
node -e "if (+process.versions.node.split('.')[0] < $want_major) { console.error('setup: .runtime/bin/node is ' + process.version + ', need >= $want_major'); process.exit(1) }"

# 3. npm dependencies, reinstalled only when package-lock.json changed
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.ferry-lock-hash ] || [ "$(cat node_modules/.ferry-lock-hash)" != "$lock_hash" ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --engine-strict --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_hash" > node_modules/.ferry-lock-hash
fi

# 4. guest image (cached; rebuilt only when its inputs change)
node src/lab/guest-image.ts build
