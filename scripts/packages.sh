#!/usr/bin/env bash
# Installs the Debian packages of the given sets of scripts/programs.txt (base, bench, fresh),
# only those that are missing; prints what it did. Used by scripts/setup.sh and scripts/test-fresh.sh.
#   bash scripts/packages.sh base [bench] [fresh]
set -euo pipefail
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
(($#)) || { echo "usage: bash scripts/packages.sh SET... (sets: the third column of scripts/programs.txt)" >&2; exit 2; }
want=()
while read -r program package set _; do
  case $program in '' | '#'*) continue ;; esac
  for s in "$@"; do [ "$s" = "$set" ] && want+=("$package"); done
done < "$root/scripts/programs.txt"
((${#want[@]})) || { echo "packages: no package in set(s) $* of scripts/programs.txt" >&2; exit 2; }
mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
# one dpkg-query for all: unknown packages print nothing on stdout
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${want[@]}" 2>/dev/null | sed -n 's/ install ok installed$//p' || true)
missing=()
for p in "${want[@]}"; do grep -qxF -- "$p" <<<"$installed" || missing+=("$p"); done
if ((${#missing[@]} == 0)); then echo "all ${#want[@]} packages of set(s) $* installed"; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "packages: missing Debian packages: ${missing[*]}; run this as root (or: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "packages: installing ${missing[*]}" >&2
# Ferry runs its own daemons (etcd in the tests, on their own ports and data dirs; libvirtd in the
# bench), never the system services some packages start on install (etcd-server starts etcd on
# 2379/2380): unless the machine has a policy already (Docker images do), a policy-rc.d that
# refuses every start holds for this install only.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  trap 'rm -f "$policy"' EXIT
  printf '#!/bin/sh\n# written by ferry scripts/packages.sh for one apt-get install; removed after it\nexit 101\n' > "$policy"
  chmod 755 "$policy"
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# etcd-server is here for its binary: its system service is not enabled at boot either
# (update-rc.d disables the init script's links and, where systemctl is, the systemd unit)
if printf '%s\n' "${missing[@]}" | grep -qxF etcd-server; then
  update-rc.d etcd disable >/dev/null 2>&1 || true
fi
echo "installed ${missing[*]}"
