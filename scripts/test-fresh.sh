#!/usr/bin/env bash
# npm run test:fresh — the README's two commands in a clean Debian 12 root.
#
# Builds (once; cached as a tarball keyed by its inputs) a minimal Debian root with
# mmdebstrap (variant minbase, plus ca-certificates and Debian's own npm: what a Debian user
# gets from `apt-get install npm`), from this machine's own apt sources. Copies into it
# `git archive HEAD` (nothing untracked) and exactly the package clients' configuration of
# this machine (apt sources, apt Acquire options, the CA file npm and Node are told to trust,
# the npmrc files), then, in its own mount and PID namespace, runs as root:
#     npm run demo      then      npm test
# and prints the wall time of setup, demo and tests. Logs: /var/cache/ferry/fresh-root/logs.
# FERRY_FRESH_TEST="CMD" runs CMD instead of npm test (after setup and the demo), e.g. one test file.
# Holds /tmp/ferry-heavy.lock for the whole run (it starts QEMU guests).
set -euo pipefail
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
say() { printf 'test:fresh: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "run this as root (it builds a Debian root and mounts /proc, /sys, /dev in it)"; exit 1; }
bash scripts/packages.sh fresh >&2

cache=/var/cache/ferry/fresh-root
mkdir -p "$cache/logs"
. /etc/os-release
suite=${VERSION_CODENAME:-}
[ -n "$suite" ] || { say "/etc/os-release has no VERSION_CODENAME: cannot tell which Debian release to build"; exit 1; }

# the machine's own apt configuration: sources (one-line or deb822) and Acquire options
sources=()
[ -s /etc/apt/sources.list ] && sources+=(/etc/apt/sources.list)
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && sources+=("$f"); done
((${#sources[@]})) || { say "this machine has no apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/): nothing to build a root from"; exit 1; }
aptopts=()
for f in /etc/apt/apt.conf.d/*; do grep -q '^[[:space:]]*Acquire' "$f" 2>/dev/null && aptopts+=(--aptopt="$f"); done
# the CA file the package clients trust (a proxy's CA), and npm's configuration files
ca=${NODE_EXTRA_CA_CERTS:-${SSL_CERT_FILE:-}}
npmrcs=()
for f in /root/.npmrc /etc/npmrc /usr/etc/npmrc; do [ -f "$f" ] && npmrcs+=("$f"); done

key=$( { echo "$suite minbase ca-certificates,npm v1"; cat "${sources[@]}"; for o in "${aptopts[@]}"; do cat "${o#--aptopt=}"; done; } | sha256sum | cut -c1-16)
tarball="$cache/$suite-$key.tar"
if [ ! -s "$tarball" ]; then
  say "building a minimal $suite root with mmdebstrap (once; cached as $tarball)"
  t0=$SECONDS
  part=${tarball%.tar}.part.tar   # mmdebstrap tells the format by the name's ending
  mmdebstrap --variant=minbase --include=ca-certificates,npm "${aptopts[@]}" "$suite" "$part" "${sources[@]}" > "$cache/logs/mmdebstrap.log" 2>&1 \
    || { say "mmdebstrap failed: see $cache/logs/mmdebstrap.log"; exit 1; }
  mv "$part" "$tarball"
  say "root built in $((SECONDS - t0)) s"
fi

work=$(mktemp -d /var/tmp/ferry-fresh.XXXXXX)
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT
tar -C "$work" -xf "$tarball"
mkdir -p "$work/root/ferry"
git archive HEAD | tar -C "$work/root/ferry" -x
# exactly the package clients' configuration, nothing else: the machine's apt sources replace
# the copies mmdebstrap wrote (0000<name>), which apt would otherwise read twice ("configured multiple times")
rm -f "$work"/etc/apt/sources.list "$work"/etc/apt/sources.list.d/*.list "$work"/etc/apt/sources.list.d/*.sources
for f in "${sources[@]}"; do cp "$f" "$work$f"; done
for o in "${aptopts[@]}"; do cp "${o#--aptopt=}" "$work${o#--aptopt=}"; done
for f in "${npmrcs[@]}"; do mkdir -p "$work$(dirname "$f")"; cp "$f" "$work$f"; done
env_in=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
if [ -n "$ca" ] && [ -f "$ca" ]; then
  # a path of its own: the root's ca-certificates rewrites /etc/ssl/certs/ca-certificates.crt
  cp "$ca" "$work/etc/ferry-host-ca.crt"
  env_in+=(NODE_EXTRA_CA_CERTS=/etc/ferry-host-ca.crt SSL_CERT_FILE=/etc/ferry-host-ca.crt npm_config_cafile=/etc/ferry-host-ca.crt)
fi
cp /etc/resolv.conf "$work/etc/resolv.conf"
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do [ -n "${!v:-}" ] && env_in+=("$v=${!v}"); done

say "running the README's two commands in the clean root (logs in $cache/logs)"
t0=$SECONDS
printf '%s\n' "${env_in[@]}" > "$work/root/.ferry-fresh-env"
export FRESH_ROOT="$work" FRESH_LOGS="$cache/logs"
flock /tmp/ferry-heavy.lock unshare --mount --pid --fork --mount-proc=/proc bash "$root/scripts/test-fresh-inner.sh"
say "passed in $((SECONDS - t0)) s"
