#!/usr/bin/env bash
# scaleout.sh: aggregate throughput with 1, 2 and 3 writer processes over as
# many ledgers (issue 16's scaling shape). For k in $NODES, it starts k ledgerd
# processes (all roles) on one PostgreSQL database and one NATS server, runs k
# ledgerbench instances at once, each on its own ledger through its own node
# (so each ledger's writer runs on a different process), and reports the sum
# of their acknowledged and sustained rates, the CPU of every process from
# /proc, and the PostgreSQL primary's WAL bytes per transfer (the bound of
# the model in BENCHMARKS.md: pg_current_wal_lsn before and after).
#
# Environment (all optional):
#   SCALE_PG_URL    a database on the server to use; dropped and created again
#                   (default postgres://postgres@127.0.0.1:5432/ledger_scaleout)
#   SCALE_NATS_URL  NATS with JetStream (default nats://127.0.0.1:4222)
#   NODES           the process counts to run (default "1 2 3")
#   LEDGERS         ledgers (ledgerbench instances) for every process count,
#                   spread over the processes in turn; default: as many as
#                   processes
#   TRANSFERS       transfers per ledgerbench (default 60000)
#   BATCH           transfers per call (default 100)
#   CONCURRENCY     workers per ledgerbench (default 16)
#   ACCOUNTS        accounts per ledger (default 10000)
#   OUT             where reports go (default var/scaleout)
# Linux only (/proc). Ports 17270.. and 18270.. .
set -euo pipefail
cd "$(dirname "$0")/../.."
pg=${SCALE_PG_URL:-postgres://postgres@127.0.0.1:5432/ledger_scaleout?sslmode=disable}
nats=${SCALE_NATS_URL:-nats://127.0.0.1:4222}
nodes=${NODES:-1 2 3}
transfers=${TRANSFERS:-60000}
batch=${BATCH:-100}
concurrency=${CONCURRENCY:-16}
accounts=${ACCOUNTS:-10000}
out=${OUT:-var/scaleout}
mkdir -p "$out"
# Ledger names fresh per run: the NATS server outlives the database, and a
# stream left by an earlier run is another log (the relay refuses it).
run=$(date +%s)
bin=$(mktemp -d /tmp/scaleout.XXXXXX)
trap 'pkill -INT -f "$bin/ledgerd" 2>/dev/null || true; sleep 2; rm -rf "$bin"' EXIT
go build -o "$bin/ledgerd" ./cmd/ledgerd
go build -o "$bin/ledgerbench" ./cmd/ledgerbench

db=${pg##*/}; db=${db%%\?*}
admin=${pg%/*}/postgres${pg#*"$db"}
psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
"$bin/ledgerd" migrate -postgres-url "$pg" >"$out/migrate.log" 2>&1
# An admin key made up here (lk_<12 hex>_<secret [a-z0-9]>), which every
# process is given (-admin-key through the environment) and ledgerbench sends.
key=lk_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')_$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
pm=$(psql -Atq "$pg" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
pm=$(awk '{print $4}' /proc/$pm/stat) # the postmaster: the checkpointer's parent
. scripts/perf/proc.sh
natspid=$(pgrep -x nats-server | head -1 || true)

printf '| writer processes | ledgers | acknowledged /s | sustained /s | CPU µs a transfer (ledgerd + PostgreSQL + NATS) | WAL bytes a transfer |\n'
printf '|---|---|---|---|---|---|\n'
for k in $nodes; do
	pids=()
	for i in $(seq 1 "$k"); do
		dir=$(mktemp -d /tmp/scaleout-node.XXXXXX); chmod 755 "$dir"
		LEDGER_ADMIN_KEY=$key "$bin/ledgerd" -postgres-url "$pg" -nats-url "$nats" -node-id "n$i" \
			-grpc-addr 127.0.0.1:$((17269 + i)) -http-addr 127.0.0.1:$((18269 + i)) -data-dir "$dir" >"$out/k$k-n$i.log" 2>&1 &
		pids+=($!)
		for _ in $(seq 1 300); do # 60 s, and no longer than the process lives
			curl -fsS --max-time 2 http://127.0.0.1:$((18269 + i))/readyz >/dev/null 2>&1 && break
			kill -0 "${pids[-1]}" 2>/dev/null || { echo "ledgerd n$i exited: see $out/k$k-n$i.log" >&2; exit 1; }
			sleep 0.2
		done
		curl -fsS --max-time 2 http://127.0.0.1:$((18269 + i))/readyz >/dev/null 2>&1 || { echo "ledgerd n$i not ready in 60 s" >&2; exit 1; }
	done
	lsn0=$(psql -Atq "$pg" -c "SELECT pg_current_wal_lsn()")
	l0=0; for p in "${pids[@]}"; do l0=$((l0 + $(ticks "$p"))); done
	p0=$(ticks "$pm"); n0=0; [ -n "$natspid" ] && n0=$(ticks "$natspid")
	t0=$(date +%s.%N)
	bpids=()
	nl=${LEDGERS:-$k}
	for i in $(seq 1 "$nl"); do
		LEDGER_API_KEY=$key "$bin/ledgerbench" -addr 127.0.0.1:$((17269 + (i - 1) % k + 1)) -ledger "scale-$run-k$k-$i" -transfers "$transfers" \
			-batch "$batch" -concurrency "$concurrency" -accounts "$accounts" -json-out "$out/k$k-$i.json" >"$out/k$k-$i.txt" 2>&1 &
		bpids+=($!)
	done
	for p in "${bpids[@]}"; do wait "$p" || echo "ledgerbench $p failed: see $out" >&2; done
	t1=$(date +%s.%N)
	l1=0; for p in "${pids[@]}"; do l1=$((l1 + $(ticks "$p"))); done
	p1=$(ticks "$pm"); n1=0; [ -n "$natspid" ] && n1=$(ticks "$natspid")
	lsn1=$(psql -Atq "$pg" -c "SELECT pg_current_wal_lsn()")
	wal=$(psql -Atq "$pg" -c "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")
	python3 - "$k" "$out" "$transfers" "$((l1 - l0))" "$((p1 - p0))" "$((n1 - n0))" "$wal" "$nl" <<'PY'
import json, sys, glob
k, out, per = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
lt, pt, nt, wal = (int(x) for x in sys.argv[4:8])
nl = int(sys.argv[8])
acked = sustained = 0.0
n = 0
for i in range(1, nl + 1):
    r = json.load(open(f"{out}/k{k}-{i}.json"))
    acked += r["transfers_per_second"]; sustained += r["sustained_per_second"]; n += r["transfers"]
    # setup (accounts) is in the CPU and WAL figures too: a small share at these sizes
us = (lt + pt + nt) * 10000 / max(n, 1)
print(f"| {k} | {nl} | {acked:,.0f} | {sustained:,.0f} | {us:.0f} ({lt*10000/max(n,1):.0f} + {pt*10000/max(n,1):.0f} + {nt*10000/max(n,1):.0f}) | {wal/max(n,1):,.0f} |")
PY
	for p in "${pids[@]}"; do kill -INT "$p"; done
	for p in "${pids[@]}"; do wait "$p" || true; done
done
