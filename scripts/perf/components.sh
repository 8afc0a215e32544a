#!/usr/bin/env bash
# components.sh BIN PROFILE: CPU of a ledgerd profile by component (pprof -focus; rows overlap)
bin=$1; p=$2
total=$(go tool pprof -top -nodecount=1 $bin $p 2>/dev/null | grep -oE 'Total samples = [0-9.]+m?s' | grep -oE '[0-9.]+m?s')
echo "total $total"
for c in 'grpc.*(\*Server)|grpc.*transport|grpcapi' 'commands\.' 'nats-server' 'nats%2ego|nats\.go|natsbus' 'natsbus.*Relay' 'natsbus.*Source' 'projections\.Balances' 'projections\.Movements' 'projections\.Transfers' 'projections.*Reconciliation' 'projections\.\(\*Runner\)' 'eventstore' 'gcBgMarkWorker|runtime.gcDrain' 'UnmarshalEvent' 'pgx.*copyFrom|pgx.*CopyFrom' 'runtime.mallocgc$'; do
  v=$(go tool pprof -top -nodecount=100000 -nodefraction=0 -focus="$c" $bin $p 2>/dev/null | grep -oE 'Showing nodes accounting for [0-9.]+m?s' | grep -oE '[0-9.]+m?s$')
  printf '%-55s %s\n' "$c" "$v"
done
