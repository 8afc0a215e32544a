#!/usr/bin/env bash
# pgss.sh BINDIR LEDGERBENCH-ARGS...: where PostgreSQL's time goes in one ledgerbench run.
# Starts a fresh ledgerd from BINDIR on its embedded default with pg_stat_statements
# loaded (a first start makes the cluster, a second loads the module), runs one
# scenario, and prints: PostgreSQL's CPU per transfer from /proc, each backend's with
# the last statement it ran (which tells the writer's session from the projections'),
# and the statements by time per transfer (exec and plan; waits for the client
# included). Ports 17171/18181. Linux only; needs psql and the pg_stat_statements
# module. On failure the directory is kept, with ledgerd.log.
set -u
bindir=$1; shift
here=$(dirname "$0")
. "$here"/proc.sh
dir=$(mktemp -d /tmp/pgss.XXXXXX); chmod 755 $dir
lpid=
start() {
  $bindir/ledgerd -data-dir $dir -grpc-addr 127.0.0.1:17171 -http-addr 127.0.0.1:18181 >>$dir/ledgerd.log 2>&1 &
  lpid=$!
  for _ in $(seq 600); do
    curl -fsS --max-time 2 http://127.0.0.1:18181/readyz >/dev/null 2>&1 && return 0
    kill -0 $lpid 2>/dev/null || break
    sleep 0.2
  done
  echo "ledgerd did not get ready (kept $dir):"; tail -5 $dir/ledgerd.log; stop; exit 1
}
stop() { [ -n "$lpid" ] && kill -INT $lpid 2>/dev/null && wait $lpid; lpid=; }
trap stop EXIT
start; stop
printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = 'all'\npg_stat_statements.track_planning = on\n" \
  >> $dir/postgres/data/postgresql.auto.conf
start
export LEDGER_API_KEY=$(cat $dir/admin.key)
psql="psql -U postgres -h $dir/postgres/run -d ledger -X -q"
$psql -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
pm=$(head -1 $dir/postgres/data/postmaster.pid)
"$here"/pgsnap.sh $pm > $dir/pg0.txt; p0=$(ticks $pm)
$bindir/ledgerbench -addr 127.0.0.1:17171 "$@" > $dir/bench.txt 2>$dir/bench.err
"$here"/pgsnap.sh $pm > $dir/pg1.txt; p1=$(ticks $pm)
$psql -At -F'|' -c "SELECT pid, application_name, left(regexp_replace(query, '\s+', ' ', 'g'), 70) FROM pg_stat_activity" > $dir/activity.txt
n=$(grep -oE 'measuring: [0-9]+' $dir/bench.err | grep -oE '[0-9]+' || echo 0)
[ "$n" -gt 0 ] || { echo "no transfers measured (kept $dir): $(tail -3 $dir/bench.err)"; exit 1; }
echo "transfers $n; PostgreSQL CPU $(( (p1-p0)*10000/n )) µs a transfer (setup included)"
grep -E 'throughput|latency' $dir/bench.txt
echo "per backend, µs a transfer, with its last statement (backends that exited: the postmaster's reaped children):"
python3 - $dir $n <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
a = {l.split()[0]: int(l.split()[1]) for l in open(d + "/pg0.txt")}
b = {}
for l in open(d + "/pg1.txt"):
    f = l.split(None, 2)
    b[f[0]] = (int(f[1]), f[2].strip() if len(f) > 2 else "")
act = {l.split("|")[0]: l.strip().split("|", 1)[1] for l in open(d + "/activity.txt") if "|" in l}
for pid, (t, cmd) in sorted(b.items(), key=lambda x: -(x[1][0] - a.get(x[0], 0))):
    if t - a.get(pid, 0) > 0:
        print(f"  {(t - a.get(pid, 0)) * 10000 / n:7.1f}  {act.get(pid, cmd[:60])}")
PY
echo "statements, µs a transfer (exec + plan):"
$psql -A -F' | ' -c "SELECT round(((total_exec_time + total_plan_time) * 1000 / $n)::numeric, 2) AS us_a_transfer,
    calls, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 100) AS query
  FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 20"
stop
rm -rf $dir
