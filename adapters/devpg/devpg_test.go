package devpg_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/adapters/devpg"
	"github.com/ledgerd/ledger/internal/testenv"
)

// searchableTempDir returns t.TempDir() with its parents inside the temp
// dir made searchable (o+x) when root, because the server then runs as the
// postgres user, and t.TempDir creates 0700 directories owned by root.
func searchableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		return dir
	}
	root := filepath.Clean(os.TempDir())
	for d := dir; d != root && strings.HasPrefix(d, root+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatalf("stat %s: %v", d, err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
			t.Fatalf("chmod %s: %v", d, err)
		}
	}
	return dir
}

// start starts a cluster in dir, skipping the test where PostgreSQL is not
// installed, and stops it at cleanup.
func start(t *testing.T, dir string) *devpg.Cluster {
	t.Helper()
	began := time.Now()
	c, err := devpg.Start(t.Context(), devpg.Options{Dir: dir, Logf: t.Logf})
	if errors.Is(err, devpg.ErrNoPostgres) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Logf("cluster up in %v", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	return c
}

func stop(t *testing.T, c *devpg.Cluster) {
	t.Helper()
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartRestartKeepsData(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableTempDir(t), "pg")
	c := start(t, dir)

	cfg, err := pgx.ParseConfig(c.URL())
	if err != nil {
		t.Fatalf("parse %s: %v", c.URL(), err)
	}
	if !strings.HasPrefix(cfg.Host, dir) || cfg.Database != devpg.Database {
		t.Fatalf("parsed %s: host %q database %q, want host under %s, database %s",
			c.URL(), cfg.Host, cfg.Database, dir, devpg.Database)
	}

	conn := connect(t, c.URL())
	var fsync string
	if err := conn.QueryRow(t.Context(), "SHOW fsync").Scan(&fsync); err != nil {
		t.Fatalf("show fsync: %v", err)
	}
	if fsync != "on" {
		t.Fatalf("fsync = %q, want on", fsync)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')"); err != nil {
		t.Fatalf("create and insert: %v", err)
	}
	conn.Close(t.Context())
	stop(t, c)
	stop(t, c) // Stopping a stopped cluster is fine.

	c = start(t, dir)
	conn = connect(t, c.URL())
	var got string
	if err := conn.QueryRow(t.Context(), "SELECT v FROM kept").Scan(&got); err != nil {
		t.Fatalf("select after restart: %v", err)
	}
	if got != "survives" {
		t.Fatalf("after restart got %q, want %q", got, "survives")
	}
	conn.Close(t.Context())
	stop(t, c)
}

// TestStartLeftRunning is the crash case: a process started the cluster and
// died without stopping it; the next Start must take over cleanly.
func TestStartLeftRunning(t *testing.T) {
	t.Parallel()
	// Long enough that the socket cannot live inside it (the kernel allows
	// 107 bytes), so this also covers the short socket directory fallback.
	dir := filepath.Join(searchableTempDir(t), strings.Repeat("d", 100))
	first := start(t, dir)
	conn := connect(t, first.URL())
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatalf("create and insert: %v", err)
	}
	conn.Close(t.Context())

	second := start(t, dir) // first is never stopped.
	conn = connect(t, second.URL())
	var got int
	if err := conn.QueryRow(t.Context(), "SELECT v FROM kept").Scan(&got); err != nil {
		t.Fatalf("select after takeover: %v", err)
	}
	if got != 1 {
		t.Fatalf("after takeover got %d, want 1", got)
	}
}

func TestStartInvalidOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts devpg.Options
	}{
		{"empty dir", devpg.Options{}},
		{"negative port", devpg.Options{Dir: "x", Port: -1}},
		{"port too big", devpg.Options{Dir: "x", Port: 65536}},
		{"setting injects a line", devpg.Options{Dir: "x", Settings: map[string]string{"fsync = off\nx": "on"}}},
		{"setting with capitals", devpg.Options{Dir: "x", Settings: map[string]string{"Fsync": "on"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := devpg.Start(t.Context(), tc.opts)
			if !errors.Is(err, devpg.ErrInvalidOptions) {
				t.Fatalf("got %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// TestStartAfterKill is the server crashing: postmaster.pid is left behind
// naming a dead process, and Start must still bring the cluster up.
func TestStartAfterKill(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableTempDir(t), "pg")
	c := start(t, dir)
	pidFile, err := os.ReadFile(filepath.Join(c.DataDir(), "postmaster.pid"))
	if err != nil {
		t.Fatalf("read postmaster.pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err != nil {
		t.Fatalf("parse postmaster.pid: %v", err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatalf("find postmaster %d: %v", pid, err)
	}
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill postmaster %d: %v", pid, err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if err := proc.Signal(syscall.Signal(0)); err == nil {
			return fmt.Errorf("postmaster %d still alive", pid)
		}
		return nil
	})

	c = start(t, dir)
	conn := connect(t, c.URL())
	if _, err := conn.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Fatalf("query after crash: %v", err)
	}
}

func TestStartVersionMismatch(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableTempDir(t), "pg")
	testenv.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o700))
	testenv.NoError(t, os.WriteFile(filepath.Join(dir, "data", "PG_VERSION"), []byte("9.6\n"), 0o600))
	_, err := devpg.Start(t.Context(), devpg.Options{Dir: dir})
	if errors.Is(err, devpg.ErrNoPostgres) {
		t.Skip(err)
	}
	if !errors.Is(err, devpg.ErrVersionMismatch) {
		t.Fatalf("got %v, want ErrVersionMismatch", err)
	}
}
