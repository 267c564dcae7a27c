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
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed ${missing[*]}"
