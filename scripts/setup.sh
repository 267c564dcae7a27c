#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (run as root). The one prerequisite is npm, any
# version (`apt-get install npm`: Debian's npm 9 on Node 18 is enough). Steps:
#   1. Debian packages: every program Ferry runs, from the table scripts/programs.txt
#   2. the project's Node runtime: Node 26 and npm 11 from the npm registry, in .runtime/
#   3. npm dependencies (npm ci, under that runtime)
#   4. the test guest image (Debian kernel + busybox initramfs), cached by input hash
# With FERRY_SETUP_BENCH=1 (npm run bench) step 1 also installs set `bench` (Debian's libvirt
# for bench/libvirt.ts). Each step says when it starts and how long it took; a step whose
# result is already there does nothing (a rerun with nothing to do takes well under a second).
set -euo pipefail
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
say() { printf 'setup: %s\n' "$*" >&2; }
want_major=26
nsteps=4

# step N TITLE FUNCTION: runs FUNCTION, printing TITLE as it starts and its time when it ends
step() {
  local n=$1 title=$2 fn=$3 t0=$EPOCHREALTIME
  say "[$n/$nsteps] $title ..."
  note=""
  "$fn"
  local ms=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
  say "[$n/$nsteps] $title: ${note:-done} ($((ms / 1000)).$(printf '%03d' $((ms % 1000))) s)"
}

debian_packages() {
  # set bench: libvirtd + its QEMU driver + virsh, without libvirt-daemon-system (no system
  # service, no default NAT network: bench/libvirt.ts runs its own daemons in their own namespaces)
  local sets=(base)
  if [ "${FERRY_SETUP_BENCH:-0}" = 1 ]; then sets+=(bench); fi
  note=$(bash "$root/scripts/packages.sh" "${sets[@]}")
}

runtime_major() { "$root/.runtime/bin/node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
runtime_versions() { "$root/.runtime/bin/node" -p "process.version + ', npm ' + require('$root/.runtime/lib/node_modules/npm/package.json').version"; }

# Node 26 from the npm registry, then npm 11 run by that Node: the system npm only downloads
# (`npm install node@26` and `npm pack npm@11` check no engine), so any npm version works.
node_runtime() {
  if [ "$(runtime_major)" -ge "$want_major" ] && [ -x "$root/.runtime/bin/npm" ]; then
    note="Node $(runtime_versions) already there"
    return
  fi
  if ! command -v npm >/dev/null; then
    say "npm is missing: it is the one prerequisite (any version), e.g. apt-get install npm"
    exit 1
  fi
  npm install -g --prefix "$root/.runtime" --no-audit --no-fund --loglevel=error "node@$want_major" >/dev/null
  if [ "$(runtime_major)" -lt "$want_major" ]; then
    say ".runtime/bin/node is $("$root/.runtime/bin/node" --version 2>&1 || true), need >= $want_major; remove .runtime/ and run setup again"
    exit 1
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  npm pack --silent --pack-destination "$tmp" npm@11 >/dev/null
  tar -xzf "$tmp"/npm-*.tgz -C "$tmp"
  "$root/.runtime/bin/node" "$tmp/package/bin/npm-cli.js" install -g --prefix "$root/.runtime" --no-audit --no-fund --loglevel=error "$tmp"/npm-*.tgz >/dev/null
  rm -rf "$tmp"
  note="installed Node $(runtime_versions)"
}

# reinstalled only when package-lock.json changed
npm_dependencies() {
  local lock_hash
  lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ -f node_modules/.ferry-lock-hash ] && [ "$(cat node_modules/.ferry-lock-hash)" = "$lock_hash" ]; then
    note="package-lock.json unchanged"
    return
  fi
  npm ci --engine-strict --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_hash" > node_modules/.ferry-lock-hash
}

# cached; rebuilt only when its inputs change
guest_image() { note=$(node src/lab/guest-image.ts build); }

step 1 "Debian packages (scripts/programs.txt)" debian_packages
step 2 "Node $want_major runtime in .runtime/" node_runtime
export PATH="$root/.runtime/bin:$PATH"
hash -r
step 3 "npm dependencies" npm_dependencies
step 4 "guest image" guest_image
