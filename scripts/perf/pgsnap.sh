#!/usr/bin/env bash
# pgsnap.sh POSTMASTER_PID: "pid ticks cmdline" for the postmaster (with reaped children) and each child
pm=$1
awk '{s=$0; sub(/.*\) /,"",s); split(s,f," "); print "'$pm'", f[12]+f[13], "postmaster", f[14]+f[15]}' /proc/$pm/stat
for c in $(pgrep -P $pm); do
  t=$(awk '{s=$0; sub(/.*\) /,"",s); split(s,f," "); print f[12]+f[13]}' /proc/$c/stat 2>/dev/null) || continue
  echo "$c $t $(tr '\0' ' ' < /proc/$c/cmdline | cut -c1-60)"
done
