package devpg_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/devpg"
)

// cancelWhenExists cancels when path appears.
func cancelWhenExists(ctx context.Context, path string, cancel context.CancelFunc) {
	for ctx.Err() == nil {
		if _, err := os.Stat(path); err == nil {
			cancel()
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestStartInterruptedDuringInitdb: ledgerd's start context is its
// SIGINT/SIGTERM context; a Ctrl-C during the first start's initdb (seconds
// on a fresh machine) kills initdb (exec.CommandContext) after it wrote
// PG_VERSION. The next start took the half-made cluster for a real one and
// failed at every start after; it now makes it anew.
func TestStartInterruptedDuringInitdb(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableTempDir(t), "pg")
	ctx, cancel := context.WithCancel(t.Context())
	go cancelWhenExists(ctx, filepath.Join(dir, "data", "PG_VERSION"), cancel)
	_, err := devpg.Start(ctx, devpg.Options{Dir: dir, Logf: t.Logf})
	if errors.Is(err, devpg.ErrNoPostgres) {
		t.Skip(err)
	}
	if err == nil {
		t.Skip("initdb finished before the cancel")
	}
	t.Logf("interrupted start: %.200s", err)
	cctx, ccancel := context.WithTimeout(t.Context(), 25*time.Second)
	defer ccancel()
	c, err := devpg.Start(cctx, devpg.Options{Dir: dir, Logf: t.Logf})
	if err != nil {
		t.Fatalf("start after an interrupted initdb: %v", err)
	}
	_ = c.Stop(context.Background())
}

// TestStartInterruptedLeavesNoServer: a cancel while pg_ctl start waits
// for the server killed pg_ctl, but the postmaster it forked kept running,
// and Start returned an error, unlocking the dir: the caller (ledgerd, whose
// Close stops only a cluster Start returned) exited and left PostgreSQL
// running behind it. A failed Start stops what it started; and since a
// pg_ctl status just after the cancel could find postmaster.pid not yet
// written and answer "no server" (seen under load), pg_ctl start is no
// longer killed: Start fails once it is done, and stops the server.
func TestStartInterruptedLeavesNoServer(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableTempDir(t), "pg")
	c := start(t, dir) // made once: the next start goes straight to pg_ctl start
	stop(t, c)
	ctx, cancel := context.WithCancel(t.Context())
	go cancelWhenExists(ctx, filepath.Join(dir, "data", "postmaster.pid"), cancel)
	_, err := devpg.Start(ctx, devpg.Options{Dir: dir, Logf: t.Logf})
	if err == nil {
		t.Skip("start finished before the cancel")
	}
	t.Logf("interrupted start: %.200s", err)
	time.Sleep(2 * time.Second)
	b, rerr := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if rerr != nil {
		return // no server left
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if pid > 0 && syscall.Kill(pid, 0) == nil {
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGQUIT) })
		t.Fatalf("Start failed yet left postmaster %d running in %s, its lock released", pid, dir)
	}
}
