#!/usr/bin/env bash
# profile-run.sh NAME BINDIR LEDGERBENCH-ARGS...: the measurement behind docs/perf.md.
# Starts a fresh ledgerd from BINDIR on its embedded default (-pprof), runs one
# ledgerbench scenario, and writes to $PROF_OUT/NAME (default var/prof/NAME):
# the CPU of ledgerd and of its PostgreSQL (postmaster, children, reaped children)
# from /proc over the whole run including catch-up, per process kind; a CPU profile
# of ledgerd ($PROF_SECONDS s from $PROF_DELAY s); its /metrics and peak RSS at the end.
# Extra ledgerd flags: LEDGERD_FLAGS. Ports 17171/18181. Linux only.
name=$1; bindir=$2; shift 2
out=${PROF_OUT:-var/prof}/$name; mkdir -p $out
dir=$(mktemp -d /tmp/prof.XXXXXX); chmod 755 $dir
$bindir/ledgerd ${LEDGERD_FLAGS:-} -data-dir $dir -grpc-addr 127.0.0.1:17171 -http-addr 127.0.0.1:18181 -pprof >$dir/ledgerd.log 2>&1 &
lpid=$!
until curl -fsS --max-time 2 http://127.0.0.1:18181/readyz >/dev/null 2>&1; do sleep 0.2; done
export LEDGER_API_KEY=$(cat $dir/admin.key)
pm=$(head -1 $dir/postgres/data/postmaster.pid)
. "$(dirname "$0")"/proc.sh
"$(dirname "$0")"/pgsnap.sh $pm > $out/pg0.txt; l0=$(self_ticks $lpid); p0=$(ticks $pm); t0=$(date +%s.%N)
( sleep ${PROF_DELAY:-3}; curl -s "http://127.0.0.1:18181/debug/pprof/profile?seconds=${PROF_SECONDS:-15}" -o $out/cpu.pprof ) &
"$bindir"/ledgerbench -addr 127.0.0.1:17171 "$@" > $out/bench.txt 2>$out/bench.err || true
"$(dirname "$0")"/pgsnap.sh $pm > $out/pg1.txt; l1=$(self_ticks $lpid); p1=$(ticks $pm); t1=$(date +%s.%N)
wait %2 2>/dev/null || true
curl -s http://127.0.0.1:18181/metrics > $out/metrics.txt; hwm=$(awk '/VmHWM/{printf "%.0f MiB", $2/1024}' /proc/$lpid/status); kill -INT $lpid; wait $lpid || true
n=$(grep -oE 'measuring: [0-9]+' $out/bench.err | grep -oE '[0-9]+' || echo 0)
echo "$name: transfers=$n wall=$(echo "$t1-$t0"|bc) ledgerd_ticks=$((l1-l0)) pg_ticks=$((p1-p0)) ledgerd_peak_rss=$hwm" | tee $out/cpu.txt
awk -v n=$n -v l=$((l1-l0)) -v p=$((p1-p0)) 'BEGIN{ if(n>0) printf "µs/transfer (incl. setup): ledgerd %.1f  postgres %.1f  total %.1f\n", l*10000/n, p*10000/n, (l+p)*10000/n }' | tee -a $out/cpu.txt
grep -E 'throughput|latency|PASS proj' $out/bench.txt | tee -a $out/cpu.txt
python3 - $out/pg0.txt $out/pg1.txt $n <<'PY'
import sys,collections
def rd(f):
    d={}
    for l in open(f):
        p=l.split(None,2); d[p[0]]=(int(p[1]),p[2].strip())
    return d
a,b=rd(sys.argv[1]),rd(sys.argv[2]); n=int(sys.argv[3]) or 1
g=collections.Counter()
for pid,(t,cmd) in b.items():
    t0=a.get(pid,(0,cmd))[0]
    if cmd.startswith('postmaster'):
        g['postmaster itself']+=t-t0; g['exited children (reaped)']+=int(cmd.split()[1])-int(a[pid][1].split()[1]); continue
    key=cmd.replace('postgres: ','').split('[')[0].strip()
    g[key]+=t-t0
for k,v in g.most_common(): print(f"  pg {k:45s} {v*10000/n:7.1f} µs/transfer")
PY
rm -rf $dir
