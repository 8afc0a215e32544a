#!/usr/bin/env bash
# pgsnap.sh POSTMASTER_PID: "pid ticks cmdline" for the postmaster (with reaped children) and each child
. "$(dirname "$0")"/proc.sh
pm=$1
echo "$pm $(self_ticks "$pm") postmaster $(stat_ticks "$pm" 14,15)"
for c in $(pgrep -P $pm); do
  t=$(self_ticks "$c" 2>/dev/null) || continue
  echo "$c $t $(tr '\0' ' ' < /proc/$c/cmdline | cut -c1-60)"
done
