// Command ledgerd serves the ledger: gRPC commands and queries over an event
// store in PostgreSQL and JetStream. See README.md.
//
// `ledgerd migrate [flags]` applies the schema migrations and exits: run it as
// the tables' owner, then ledgerd as a role in ledger_app. `ledgerd -version`
// prints the build's version, commit and Go version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/memtune"
	"github.com/ledgerd/ledger/internal/version"
)

// gcPercentDefault is the collector's GOGC when the environment sets none:
// the heap grows to three times what is live before a collection, not two.
// Single-transfer calls allocate about 25 kB each (gRPC, pgx, decoding),
// and at Go's default the collector took a sixth of ledgerd's CPU; 200 cut
// ledgerd's CPU a transfer by 6-8 % (docs/perf.md). Above 128 MiB live,
// memtune bounds that slack by what is live; GOMEMLIMIT or
// GOGC set in the environment leave the collector to them
// (docs/operations.md).
const gcPercentDefault = 200

func main() {
	cgroupLimit, ceiling, _ := setCollector(os.Getenv, memtune.CgroupLimit)
	args, migrate := os.Args[1:], false
	if len(args) == 1 && (args[0] == "-version" || args[0] == "--version" || args[0] == "version") {
		fmt.Println("ledgerd", version.Get())
		return
	}
	if len(args) > 0 && args[0] == "migrate" {
		args, migrate = args[1:], true
	}
	cfg, err := daemon.ParseFlags(args, os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledgerd:", err)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "ledgerd: log level:", err)
		os.Exit(2)
	}
	var handler slog.Handler
	switch opts := (&slog.HandlerOptions{Level: level}); cfg.LogFormat {
	case "text":
		handler = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		handler = slog.NewJSONHandler(os.Stderr, opts)
	default:
		fmt.Fprintf(os.Stderr, "ledgerd: log format %q: want text or json\n", cfg.LogFormat)
		os.Exit(2)
	}
	logger := slog.New(daemon.TraceLogHandler(handler))
	slog.SetDefault(logger) // what packages log without a logger of their own goes here too
	build := version.Get()
	logger.Info("ledgerd", "version", build.Version, "commit", build.Commit, "go", build.Go)
	if ceiling > 0 {
		logger.Info("memory: soft limit under the cgroup's", "cgroup_limit_bytes", cgroupLimit, "soft_limit_bytes", ceiling)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if migrate {
		if err := daemon.Migrate(ctx, cfg, logger, os.Stdout); err != nil {
			logger.Error("ledgerd migrate failed", "err", err)
			os.Exit(1)
		}
		return
	}
	m := &daemon.Main{Config: cfg, Logger: logger, Out: os.Stdout}
	if err := m.Run(ctx); err != nil {
		logger.Error("ledgerd could not start", "err", err)
		os.Exit(1)
	}
	<-ctx.Done()
	// A second SIGINT or SIGTERM stops at once, as after kill -9: what was
	// acknowledged is in the log, and the rest is the clients' to retry.
	stop()
	logger.Info("shutting down: draining writers and relays (a second signal stops at once)")
	m.Close()
	// Exit 0: a stop asked for (SIGINT, SIGTERM) and done cleanly is a
	// success, for make run, systemd and docker alike.
	logger.Info("stopped")
}

// setCollector sets Go's collector up from the environment (getenv) and
// returns the memory limit of ledgerd's cgroup (limit) and the soft limit
// kept under it (0, 0: none, or GOMEMLIMIT set), and the tuner it started,
// if any. Without GOGC: GOGC=200 and memtune's limit after each collection;
// with it, that slack, and GOGC=off none. Either way, unless GOMEMLIMIT says
// otherwise, never over memtune.Ceiling of a cgroup's limit: a container
// killed at its limit loses the writes in flight and every cache.
func setCollector(getenv func(string) string, limit func() (uint64, bool)) (cgroupLimit, ceiling uint64, tuner *memtune.Tuner) {
	if getenv("GOMEMLIMIT") == "" {
		if l, ok := limit(); ok {
			cgroupLimit, ceiling = l, memtune.Ceiling(l)
		}
	}
	switch {
	case getenv("GOGC") == "":
		debug.SetGCPercent(gcPercentDefault)
		if getenv("GOMEMLIMIT") == "" {
			tuner = memtune.Start(ceiling)
		}
	case ceiling > 0:
		debug.SetMemoryLimit(int64(ceiling))
	}
	return cgroupLimit, ceiling, tuner
}
