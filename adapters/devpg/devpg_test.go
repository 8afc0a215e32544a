package devpg_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
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

// leftRunningDirEnv makes the test binary, run again as a child, start a
// cluster in that dir and exit without stopping it: a process that died.
const leftRunningDirEnv = "DEVPG_TEST_LEFT_RUNNING_DIR"

// noPostgresExit is the child's exit status when PostgreSQL is not installed.
const noPostgresExit = 3

// TestLeaveRunning is the child of TestStartLeftRunning; it does nothing in
// a normal run.
func TestLeaveRunning(t *testing.T) {
	dir := os.Getenv(leftRunningDirEnv)
	if dir == "" {
		t.Skip("run by TestStartLeftRunning")
	}
	c, err := devpg.Start(t.Context(), devpg.Options{Dir: dir, Logf: t.Logf})
	if errors.Is(err, devpg.ErrNoPostgres) {
		os.Exit(noPostgresExit)
	}
	testenv.NoError(t, err)
	conn := connect(t, c.URL())
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatalf("create and insert: %v", err)
	}
	conn.Close(t.Context())
	os.Exit(0) // The server keeps running; the lock dies with us.
}

// TestStartLeftRunning is the crash case: a process started the cluster and
// died without stopping it; the next Start must take over cleanly.
func TestStartLeftRunning(t *testing.T) {
	t.Parallel()
	// Long enough that the socket cannot live inside it (the kernel allows
	// 107 bytes), so this also covers the private temp socket directory.
	dir := filepath.Join(searchableTempDir(t), strings.Repeat("d", 100))
	child := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestLeaveRunning$", "-test.count=1")
	child.Env = append(os.Environ(), leftRunningDirEnv+"="+dir)
	out, err := child.CombinedOutput()
	if child.ProcessState != nil && child.ProcessState.ExitCode() == noPostgresExit {
		t.Skip(devpg.ErrNoPostgres)
	}
	if err != nil {
		t.Fatalf("child starting the cluster: %v\n%s", err, out)
	}

	childSock, err := os.ReadFile(filepath.Join(dir, "socket-dir"))
	testenv.NoError(t, err)

	second := start(t, dir) // The child never stopped its server.
	if _, err := os.Lstat(string(childSock)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the dead child's socket dir %s: %v, want removed", childSock, err)
	}
	conn := connect(t, second.URL())
	var got int
	if err := conn.QueryRow(t.Context(), "SELECT v FROM kept").Scan(&got); err != nil {
		t.Fatalf("select after takeover: %v", err)
	}
	if got != 1 {
		t.Fatalf("after takeover got %d, want 1", got)
	}
}

// TestStartRefusesDirInUse: a second Start of a Dir whose cluster is in use
// is refused, naming the dir and the holder, and leaves the first serving
// (before the lock it restarted the first one's server).
func TestStartRefusesDirInUse(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableTempDir(t), "pg")
	first := start(t, dir)
	conn := connect(t, first.URL())

	second, err := devpg.Start(t.Context(), devpg.Options{Dir: dir, Logf: t.Logf})
	if !errors.Is(err, devpg.ErrDirInUse) {
		if second != nil {
			second.Stop(context.Background()) //nolint:errcheck // best effort; the test has failed
		}
		t.Fatalf("second Start: %v, want ErrDirInUse", err)
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q: want the dir %s and the holder's pid %d", msg, dir, os.Getpid())
	}
	if _, err := conn.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Fatalf("first cluster's connection after a refused second Start: %v", err)
	}

	stop(t, first) // Stop releases the dir.
	start(t, dir)
}

// oldSocketDir is where devpg put the socket of a deep Dir before it used a
// private directory: a name any local user could compute and make first.
func oldSocketDir(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(os.TempDir(), "devpg-"+hex.EncodeToString(sum[:6]))
}

// serverUID is the user the server runs as: postgres when we are root.
func serverUID(t *testing.T) uint32 {
	t.Helper()
	if os.Geteuid() != 0 {
		return uint32(os.Geteuid())
	}
	u, err := user.Lookup("postgres")
	testenv.NoError(t, err)
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	testenv.NoError(t, err)
	return uint32(uid)
}

// TestSocketDirPrivateForDeepDir: a directory made in advance at the
// predictable path (world-writable, someone else's) is not used; the socket
// goes into a fresh directory, 0700 and owned by the server's user.
func TestSocketDirPrivateForDeepDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableTempDir(t), strings.Repeat("e", 100))
	trap := oldSocketDir(dir)
	testenv.NoError(t, os.Mkdir(trap, 0o777))
	testenv.NoError(t, os.Chmod(trap, 0o777)) // Past the umask.
	t.Cleanup(func() { os.RemoveAll(trap) })
	trapOwner := uint32(os.Geteuid())
	if os.Geteuid() == 0 {
		trapOwner = 65534 // nobody: the local user who got there first.
		testenv.NoError(t, os.Chown(trap, int(trapOwner), int(trapOwner)))
	}

	c := start(t, dir)
	cfg, err := pgx.ParseConfig(c.URL())
	testenv.NoError(t, err)
	if cfg.Host == trap {
		t.Fatalf("socket in %s, the predictable directory made by someone else", trap)
	}
	fi, err := os.Lstat(cfg.Host)
	testenv.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || st.Uid != serverUID(t) {
		t.Errorf("socket dir %s: %v uid %d, want a directory 0700 of uid %d", cfg.Host, fi.Mode(), st.Uid, serverUID(t))
	}
	entries, err := os.ReadDir(trap)
	testenv.NoError(t, err)
	fi, err = os.Lstat(trap)
	testenv.NoError(t, err)
	if len(entries) != 0 || fi.Sys().(*syscall.Stat_t).Uid != trapOwner || fi.Mode().Perm() != 0o777 {
		t.Errorf("predictable dir %s touched: %d entries, uid %d, mode %v", trap, len(entries), fi.Sys().(*syscall.Stat_t).Uid, fi.Mode())
	}
	connect(t, c.URL())
}

// TestSocketDirRefusedIfNotPrivate: Dir/run that exists and is not private
// to the server's user (open to others, someone else's, a symlink) is
// refused before any server starts.
func TestSocketDirRefusedIfNotPrivate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		make func(t *testing.T, run string)
	}{
		{"world writable", func(t *testing.T, run string) {
			testenv.NoError(t, os.Mkdir(run, 0o700))
			testenv.NoError(t, os.Chmod(run, 0o777))
			testenv.NoError(t, os.Chown(run, int(serverUID(t)), -1))
		}},
		{"group readable", func(t *testing.T, run string) {
			testenv.NoError(t, os.Mkdir(run, 0o700))
			testenv.NoError(t, os.Chmod(run, 0o750))
			testenv.NoError(t, os.Chown(run, int(serverUID(t)), -1))
		}},
		{"symlink to a private dir", func(t *testing.T, run string) {
			target := filepath.Join(filepath.Dir(run), "elsewhere")
			testenv.NoError(t, os.Mkdir(target, 0o700))
			testenv.NoError(t, os.Chown(target, int(serverUID(t)), -1))
			testenv.NoError(t, os.Symlink(target, run))
		}},
		{"someone else's", func(t *testing.T, run string) {
			if os.Geteuid() != 0 {
				t.Skip("only root can make a directory of another user")
			}
			testenv.NoError(t, os.Mkdir(run, 0o700))
			testenv.NoError(t, os.Chown(run, 65534, 65534))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(searchableTempDir(t), "pg")
			testenv.NoError(t, os.Mkdir(dir, 0o700))
			tc.make(t, filepath.Join(dir, "run"))
			c, err := devpg.Start(t.Context(), devpg.Options{Dir: dir, Logf: t.Logf})
			if errors.Is(err, devpg.ErrNoPostgres) {
				t.Skip(err)
			}
			if err == nil {
				c.Stop(context.Background()) //nolint:errcheck // the test has failed anyway
			}
			if !errors.Is(err, devpg.ErrUnsafeSocketDir) {
				t.Fatalf("Start with %s: %v, want ErrUnsafeSocketDir", tc.name, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("postmaster.pid: %v, want no server started", err)
			}
		})
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
	stop(t, c) // The server is dead: this only releases the dir.

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

// TestTCPAsksForPassword: the optional TCP listener is reachable by every
// local user, so unlike the private socket it does not trust: connecting
// without a password is refused, the socket still works.
func TestTCPAsksForPassword(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	port := lis.Addr().(*net.TCPAddr).Port
	testenv.NoError(t, lis.Close())
	dir := filepath.Join(searchableTempDir(t), "pg")
	c, err := devpg.Start(t.Context(), devpg.Options{Dir: dir, Port: port, Logf: t.Logf})
	if errors.Is(err, devpg.ErrNoPostgres) {
		t.Skip(err)
	}
	testenv.NoError(t, err)
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	connect(t, c.URL())
	conn, err := pgx.Connect(t.Context(), fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", port, devpg.Database))
	if err == nil {
		conn.Close(context.Background())
		t.Fatalf("TCP 127.0.0.1:%d let the superuser in without a password", port)
	}
	if !strings.Contains(err.Error(), "password") {
		t.Fatalf("TCP without a password: %v, want a password asked for", err)
	}
}
