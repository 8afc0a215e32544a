# proc.sh: CPU time from /proc, sourced by profile-run.sh, scaleout.sh and
# pgsnap.sh (Linux only).

# stat_ticks PID FIELDS: the sum of /proc/PID/stat's fields FIELDS, counted
# after the command name (12 user, 13 system, 14 and 15 the reaped
# children's), in clock ticks.
stat_ticks() {
	awk -v fs="$2" '{s=$0; sub(/.*\) /,"",s); split(s,f," "); n=split(fs,k,","); t=0; for(i=1;i<=n;i++) t+=f[k[i]]; print t}' /proc/$1/stat
}

# self_ticks PID: user+system clock ticks of PID alone.
self_ticks() { stat_ticks "$1" 12,13; }

# ticks PID: user+system clock ticks of PID, its reaped children, and its
# live children's own.
ticks() {
	local p=$1 t
	t=$(stat_ticks "$p" 12,13,14,15)
	for c in $(pgrep -P "$p"); do t=$((t + $(self_ticks "$c"))); done
	echo "$t"
}
