# proc.sh: CPU time from /proc, sourced by profile-run.sh and scaleout.sh.
# ticks PID: user+system clock ticks of PID, its reaped children, and its
# live children's own (Linux only).
ticks() {
	local p=$1 t
	t=$(awk '{s=$0; sub(/.*\) /,"",s); split(s,f," "); print f[12]+f[13]+f[14]+f[15]}' /proc/$p/stat)
	for c in $(pgrep -P "$p"); do t=$((t + $(awk '{s=$0; sub(/.*\) /,"",s); split(s,f," "); print f[12]+f[13]}' /proc/$c/stat))); done
	echo "$t"
}
