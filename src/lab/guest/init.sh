#!/bin/sh
# Ferry test guest: /init of the busybox initramfs built by src/lab/guest-image.ts.
#
# Kernel command line:
#   ferry.name=<vm name>
#   ferry.net=<mac>,<ip>/<prefix>   (repeatable, one per guest NIC)
#   ferry.fill=<MiB>                fill that much RAM with random data before ready (benchmarks)
#   ferry.memcheck=<MiB>            size of the checksummed region (default 8; 0 = none)
#   ferry.dirty=<MiB/s>             keep rewriting a RAM region at that rate (convergence benchmarks; the
#                                   region holds one second of writes: MiB/s MiB, 64 to 1024)
# Console protocol (one line each, on the serial console):
#   ferry-net <ifname> <mac> <ip> up        an interface was (re)configured
#   ferry-lower <ifname> <slave>...         a failover master's slaves changed ("-" = none)
#   ferry-filled <MiB>                      ferry.fill done (before ferry-ready)
#   ferry-dirty <MiB/s>                     ferry.dirty: the rate really written over the last ~5 s
#   ferry-memsum boot <md5>                 the memcheck region was filled (before ferry-ready; md5 "off" if none)
#   ferry-ready <name>                      setup finished (printed once)
#   ferry-heartbeat <n>                     every 100 ms; n lives in this shell's memory
#   ferry-memsum <token> <md5>              answer to the input line `memsum <token>`
#   ferry-memtouch <token> done             answer to `memtouch <token>` (a test hook: it changes the region)
# Input lines (written to the console, e.g. by src/lab/memcheck.ts through the
# instance's serial socket); a token is 1-32 letters, digits, '_' or '-':
#   memsum <token>     md5 of the memcheck region now: equal to the boot one
#                      unless guest memory was damaged (a migration's check)
#   memtouch <token>   overwrite 16 bytes in the middle of the region, so that
#                      the next memsum differs: proves the check can fail
#   panic <token>      crash the kernel (sysrq c) after `ferry-panic <token>`: a
#                      test hook for the pvpanic device (QEMU's GUEST_PANICKED)
# Dotted parameters are not passed to init by the kernel: read /proc/cmdline.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0</dev/console 1>/dev/console 2>&1

# Modules, in dependency order (written by the image builder).
while read -r m; do
  [ -n "$m" ] || continue
  insmod "/lib/modules/$m.ko" || echo "ferry-error insmod $m"
done </lib/modules/order

read -r cmdline </proc/cmdline
name=guest
nets=""
fill=0
memcheck=8
dirty=0
for w in $cmdline; do
  case "$w" in
    ferry.name=*) name=${w#ferry.name=} ;;
    ferry.net=*) nets="$nets ${w#ferry.net=}" ;;
    ferry.fill=*) fill=${w#ferry.fill=} ;;
    ferry.memcheck=*) memcheck=${w#ferry.memcheck=} ;;
    ferry.dirty=*) dirty=${w#ferry.dirty=} ;;
  esac
done
nets=$(echo "$nets" | tr 'A-F' 'a-f')
hostname "$name" 2>/dev/null
ip link set dev lo up

# pick MAC: sets $pick to the netdev that should hold the address for MAC, or "".
# A net_failover master (a virtual netdev: no "device" link, or one with lower_*
# links) beats a plain NIC; failover slaves (they have a "master" link) never qualify.
pick() {
  pick=""
  plain=""
  for d in /sys/class/net/*; do
    [ -e "$d/address" ] || continue
    read -r a <"$d/address" 2>/dev/null || continue
    [ "$a" = "$1" ] || continue
    [ -e "$d/master" ] && continue
    if [ ! -e "$d/device" ]; then pick=${d##*/}; return; fi
    for l in "$d"/lower_*; do
      if [ -e "$l" ]; then pick=${d##*/}; return; fi
    done
    [ -n "$plain" ] || plain=${d##*/}
  done
  pick=$plain
}

# lowers IF: sets $lowers to the slaves of IF ("-" if none).
lowers() {
  lowers=""
  for l in /sys/class/net/"$1"/lower_*; do
    [ -e "$l" ] && lowers="$lowers ${l##*/lower_}"
  done
  lowers=${lowers# }
  [ -n "$lowers" ] || lowers=-
}

# converge K MAC CIDR FULL: make the right netdev for MAC up with CIDR.
# State per NIC k (in this loop's memory): if_k, idx_k (ifindex), low_k.
converge() {
  k=$1 mac=$2 cidr=$3 full=$4
  pick "$mac"
  eval "cur=\$if_$k idx=\$idx_$k low=\$low_$k"
  if [ -z "$pick" ]; then
    [ -z "$cur" ] || eval "if_$k= idx_$k= low_$k="
    return
  fi
  read -r nidx </sys/class/net/"$pick"/ifindex 2>/dev/null || return
  read -r flags </sys/class/net/"$pick"/flags 2>/dev/null || return
  need=0
  [ "$pick" = "$cur" ] && [ "$nidx" = "$idx" ] || need=1
  [ $((flags & 1)) = 1 ] || need=1
  if [ $need = 0 ] && [ "$full" = 1 ]; then
    case " $(ip -4 -o addr show dev "$pick" 2>/dev/null) " in
      *" inet $cidr "*) ;;
      *) need=1 ;;
    esac
  fi
  if [ $need = 1 ]; then
    # The address follows the netdev: take it off the previous holder if still there.
    if [ -n "$cur" ] && [ "$cur" != "$pick" ] && [ -e "/sys/class/net/$cur" ]; then
      ip addr del "$cidr" dev "$cur" 2>/dev/null
    fi
    ip link set dev "$pick" up &&
      ip addr add "$cidr" dev "$pick" 2>/dev/null
    if ip -4 -o addr show dev "$pick" 2>/dev/null | grep -q " inet $cidr "; then
      eval "if_$k=\$pick idx_$k=\$nidx"
      echo "ferry-net $pick $mac ${cidr%/*} up"
    else
      eval "if_$k= idx_$k="
    fi
  fi
  lowers "$pick"
  if [ "$lowers" != "-" ] || [ -n "$low" ]; then
    if [ "$lowers" != "$low" ]; then
      eval "low_$k=\$lowers"
      echo "ferry-lower $pick $lowers"
    fi
  fi
}

netpass() {
  k=0
  for spec in $nets; do
    k=$((k + 1))
    converge "$k" "${spec%%,*}" "${spec#*,}" "$1"
  done
}

if [ -n "$nets" ]; then
  netpass 1
  (
    i=0
    while :; do
      usleep 150000
      i=$((i + 1))
      # A full check (address still present) every ~3 s; the cheap sysfs check otherwise.
      if [ $((i % 20)) = 0 ]; then netpass 1; else netpass 0; fi
    done
  ) &
fi

if [ "$fill" -gt 0 ] 2>/dev/null; then
  # the initramfs is RAM: a file of random bytes is guest memory a migration must copy
  dd if=/dev/urandom of=/fill bs=1M count="$fill" 2>/dev/null
  echo "ferry-filled $fill"
fi

# The memcheck region: random bytes in a file of the initramfs (RAM), so a
# migration that damages guest memory changes its md5.
memsum() {
  if [ -f /memcheck ]; then
    set -- $(md5sum /memcheck)
    memsum=$1
  else
    memsum=off
  fi
}
case "$memcheck" in
  '' | *[!0-9]*) echo "ferry-error ferry.memcheck=$memcheck is not a number of MiB" ;;
  0) ;;
  *) dd if=/dev/urandom of=/memcheck bs=1M count="$memcheck" 2>/dev/null ;;
esac
memsum
echo "ferry-memsum boot $memsum"

# Console input: one command a line. No echo, so that what the host writes
# never lands in the middle of a line the guest prints (each reply is one
# echo: one write, which the tty does not split). A background job's stdin is
# /dev/null unless redirected.
stty -echo </dev/console 2>/dev/null
(
  while :; do
    if ! read -r cmd token rest; then
      usleep 100000
      continue
    fi
    case "$token" in
      '' | *[!A-Za-z0-9_-]*) continue ;;
    esac
    [ ${#token} -le 32 ] || continue
    case "$cmd" in
      memsum)
        memsum
        echo "ferry-memsum $token $memsum"
        ;;
      memtouch)
        if [ -f /memcheck ]; then
          echo -n "ferry-memtouch!!" | dd of=/memcheck bs=16 seek=$((memcheck * 32768)) conv=notrunc 2>/dev/null
        fi
        echo "ferry-memtouch $token done"
        ;;
      panic)
        echo "ferry-panic $token"
        echo 1 >/proc/sys/kernel/sysrq
        echo c >/proc/sysrq-trigger
        ;;
    esac
  done
) </dev/console &

# ferry.dirty: a background writer that dirties guest RAM at a steady rate, so
# a migration has to re-send pages (what real workloads do). A 17 MiB random
# buffer, made once, is copied over a file of the initramfs (RAM) in chunks at
# offsets that shift every pass (with 64 MiB: 0, 17, 34, 4, 21, …), so the bytes
# of a page change too, not only its dirty bit (calc-dirty-rate's sampling
# compares page contents). Non-zero data: QEMU cannot send it as zero pages.
# Paced on /proc/uptime (centiseconds); when the vCPU cannot keep up, the rate
# is what it can do, and ferry-dirty says so. The memcheck region and the
# heartbeat are other files/processes: untouched. The region holds one second
# of writes (at least 64 MiB, at most 1024): a smaller one would cap the rate
# of distinct pages dirtied, which is what a migration has to re-send.
uptime_cs() {
  read -r up _ </proc/uptime
  up_cs=$(( ${up%.*} * 100 + 1${up#*.} - 100 ))
}
case "$dirty" in
  '' | *[!0-9]*) echo "ferry-error ferry.dirty=$dirty is not a number of MiB/s"; dirty=0 ;;
esac
if [ "$dirty" -gt 0 ]; then
  dd if=/dev/urandom of=/dirty-src bs=1M count=17 2>/dev/null
  region=$dirty
  [ "$region" -ge 64 ] || region=64
  [ "$region" -le 1024 ] || region=1024
  dd if=/dev/urandom of=/dirty bs=1M count="$region" 2>/dev/null
  (
    off=0
    uptime_cs
    next=$up_cs
    win=$up_cs
    written=0
    while :; do
      dd if=/dirty-src of=/dirty bs=1M seek="$off" conv=notrunc 2>/dev/null
      written=$((written + 17))
      off=$(((off + 17) % (region - 17)))
      # the next chunk is due 17 MiB later at $dirty MiB/s
      next=$((next + 1700 / dirty))
      uptime_cs
      if [ "$next" -gt "$up_cs" ]; then
        usleep $(((next - up_cs) * 10000))
      elif [ $((up_cs - next)) -gt 100 ]; then
        next=$up_cs # behind by more than a second: do not try to catch up in a burst
      fi
      if [ $((up_cs - win)) -ge 500 ]; then
        echo "ferry-dirty $((written * 100 / (up_cs - win)))"
        win=$up_cs
        written=0
      fi
    done
  ) </dev/null &
fi

echo "ferry-ready $name"

n=0
while :; do
  n=$((n + 1))
  echo "ferry-heartbeat $n"
  usleep 100000
done
