// Package devpg runs a private PostgreSQL cluster made from the machine's
// PostgreSQL binaries (initdb, pg_ctl), for ledgerd's dev mode and for tests
// on machines that have no server running.
//
// The cluster listens only on a unix socket inside its own directory (no
// TCP: listen_addresses is empty), so it never collides with a system
// server on 5432 or with another private cluster. Options.Port adds a TCP listener on
// 127.0.0.1 for people who want to point other tools at it.
//
// Authentication is trust, so whoever reaches the socket is any role, the
// superuser included: the socket directory is therefore private (mode 0700,
// owned by the user the server runs as, never a symlink), and when the data
// dir's path is too long for a socket it is a fresh directory with an
// unpredictable name, never one a local user could have made first. One
// process at a time uses a Dir: Start locks it (flock on Dir/devpg.lock)
// until Stop or the process's exit.
//
// initdb and postgres refuse to run as root, so when the process is root the
// binaries run as the `postgres` system user, which then owns Options.Dir.
package devpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Errors returned by Start and Stop.
var (
	// ErrNoPostgres means the PostgreSQL server binaries are not installed.
	ErrNoPostgres = errors.New("postgresql server binaries (initdb, pg_ctl) not found in PATH or " +
		"/usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get install postgresql) " +
		"or set LEDGER_POSTGRES_URL to an existing server")
	// ErrNoPostgresUser means the process runs as root and there is no
	// unprivileged `postgres` system user to run the server as.
	ErrNoPostgresUser = errors.New("running as root, but there is no `postgres` system user to run " +
		"initdb/postgres as (they refuse to run as root): create one (useradd --system postgres) " +
		"or run as an unprivileged user")
	// ErrNotTraversable means the `postgres` user cannot reach Options.Dir
	// because a parent directory lacks search (x) permission for it.
	ErrNotTraversable = errors.New("data dir not reachable by the postgres user")
	// ErrVersionMismatch means Options.Dir holds a cluster made by another
	// major version than the binaries found.
	ErrVersionMismatch = errors.New("cluster was created by another postgresql major version")
	// ErrInvalidOptions means Options failed validation.
	ErrInvalidOptions = errors.New("invalid devpg options")
	// ErrNotRunning means a command needed the cluster's server and it was
	// not running.
	ErrNotRunning = errors.New("postgresql server not running")
	// ErrDirInUse means another live process (or another Start of this one)
	// holds Options.Dir: starting would stop the server it is using.
	ErrDirInUse = errors.New("data dir in use by another process")
	// ErrUnsafeSocketDir means the socket directory exists and is not
	// private to the server's user (another owner, group or other access,
	// a symlink): whoever can enter it could connect as the superuser.
	ErrUnsafeSocketDir = errors.New("socket dir not private to the postgres user")
)

// Database is the database Start creates for the ledger.
const Database = "ledger"

// superuser is the role initdb creates; auth is trust on the private socket.
const superuser = "postgres"

const (
	// pgctlWaitSeconds bounds how long pg_ctl waits for start and stop.
	pgctlWaitSeconds = 120
	// socketPathBytesMax is the kernel's sun_path limit (108) less the NUL.
	socketPathBytesMax = 107
	// logBytesMax bounds postgres.log: at Start a bigger log is rotated
	// once to postgres.log.1, so the directory holds at most twice this.
	logBytesMax = 16 << 20
	// outputBytesMax bounds the command output and log tail put in errors.
	outputBytesMax = 4 << 10
	// settingsMax bounds Options.Settings.
	settingsMax = 256
	// defaultSocketPort names the socket file (.s.PGSQL.5432) when there is
	// no TCP port; it only has to be unique inside the socket directory.
	defaultSocketPort = 5432
	// lockFile, in Options.Dir, is flocked by the process using the cluster
	// and holds its pid, for the message that refuses a second one.
	lockFile = "devpg.lock"
	// lockPIDBytesMax bounds what is read of a lock file for the pid.
	lockPIDBytesMax = 32
	// tempSocketPattern names the private socket directory made in the temp
	// dir when Options.Dir is too deep for a socket path.
	tempSocketPattern = "devpg-*"
	// tempSocketRecord, in Options.Dir, names the last such directory, so
	// that the next Start removes it when a crash left it behind.
	tempSocketRecord = "socket-dir"
)

// defaultSettings suit a 2-core development box; fsync stays on because
// durability is the product, even in dev mode.
var defaultSettings = map[string]string{
	"fsync":              "on",
	"shared_buffers":     "256MB",
	"max_connections":    "200",
	"wal_buffers":        "16MB",
	"max_wal_size":       "4GB",
	"checkpoint_timeout": "15min",
	"log_timezone":       "UTC",
	"timezone":           "UTC",
}

// settingKeyRE is what a postgresql.conf parameter name looks like; anything
// else could inject lines into the config file.
var settingKeyRE = regexp.MustCompile(`^[a-z_][a-z0-9_.]{0,62}$`)

// Options configures Start.
type Options struct {
	// Dir holds the cluster: data/ (PGDATA), run/ (the socket) and
	// postgres.log. Created if missing, reused if it already holds a cluster.
	Dir string
	// Port, when > 0, also listens on TCP 127.0.0.1:Port, where a password
	// is asked (scram-sha-256; set one over the socket first), because every
	// local user reaches it. 0 means unix socket only, which cannot collide
	// with anything.
	Port int
	// Logf, if set, receives progress messages (initdb, start, stop).
	Logf func(format string, args ...any)
	// Settings are extra postgresql.conf settings; they override the
	// defaults. At most 256 entries.
	Settings map[string]string
	// ReplicaOf, when set, makes a new cluster a streaming replica of that
	// running cluster (pg_basebackup -R over its socket) instead of an
	// empty one: read-only, following the primary.
	ReplicaOf *Cluster
}

// Cluster is a running private PostgreSQL cluster.
type Cluster struct {
	dir     string
	binDir  string
	dataDir string
	// sockDir is dir/run, or a directory made by os.MkdirTemp when that
	// path is too long for a socket (sockTemp).
	sockDir  string
	sockTemp bool
	// oldSockDir is the temp socket dir of an earlier Start, if recorded.
	oldSockDir string
	logPath    string
	port       int
	cred       *syscall.Credential // nil: run the binaries as ourselves
	logf       func(string, ...any)
	// lock is Dir's lock file, flocked from Start to Stop; nil when stopped.
	lock *os.File
}

// Start creates the cluster in opts.Dir if needed, starts its server and
// creates the database "ledger". A server left running in opts.Dir by a
// process that died is stopped and started again, so the settings written
// now are the ones in force; a stale postmaster.pid from a crash is handled
// by pg_ctl. A Dir in use by a live process (its lock is held) is refused:
// restarting its server would cut that process off.
//
// Errors: ErrInvalidOptions, ErrDirInUse, ErrUnsafeSocketDir, ErrNoPostgres,
// ErrNoPostgresUser, ErrNotTraversable, ErrVersionMismatch, or a wrapped
// initdb, pg_ctl or connection error (with the tail of the server log).
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create dir: %w", err)
	}
	if err := c.lockDir(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && c.sockTemp && c.sockDir != "" {
			_ = os.Remove(c.sockDir) // Ours and, with no server, empty.
		}
		if err != nil {
			c.unlockDir()
		}
	}()
	if err := c.prepareDirs(); err != nil {
		return nil, err
	}
	if opts.ReplicaOf != nil {
		err = c.basebackup(ctx, opts.ReplicaOf)
	} else {
		err = c.initdb(ctx)
	}
	if err != nil {
		return nil, err
	}
	if err := c.writeConfig(opts.Settings); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		// pg_ctl may be gone (ctx ended) with its postmaster running:
		// leave nothing running that the caller cannot stop.
		return nil, errors.Join(err, c.stopAfterFailure(ctx))
	}
	c.removeOldTempSocketDir()
	if err := c.createDatabase(ctx, Database); err != nil {
		return nil, errors.Join(err, c.stopAfterFailure(ctx))
	}
	return c, nil
}

// stopAfterFailure stops the server a failed Start may have left running,
// even when ctx has ended; a server that is not running is no error.
func (c *Cluster) stopAfterFailure(ctx context.Context) error {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pgctlWaitSeconds*time.Second)
	defer cancel()
	return c.stop(stopCtx) // Start's deferred cleanup unlocks the dir
}

func newCluster(opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("dir is empty: %w", ErrInvalidOptions)
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("port %d out of range 0..65535: %w", opts.Port, ErrInvalidOptions)
	}
	if len(opts.Settings) > settingsMax {
		return nil, fmt.Errorf("%d settings, at most %d: %w", len(opts.Settings), settingsMax, ErrInvalidOptions)
	}
	for k := range opts.Settings {
		if !settingKeyRE.MatchString(k) {
			return nil, fmt.Errorf("setting name %q: %w", k, ErrInvalidOptions)
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("dir %q: %w", opts.Dir, err)
	}
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := &Cluster{
		dir:     dir,
		binDir:  binDir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "postgres.log"),
		port:    opts.Port,
		cred:    cred,
		logf:    logf,
	}
	c.sockDir = filepath.Join(dir, "run")
	c.sockTemp = len(c.sockDir)+len("/.s.PGSQL.")+len(strconv.Itoa(c.socketPort())) > socketPathBytesMax
	if c.sockTemp {
		c.sockDir = "" // Made by MkdirTemp in prepareDirs.
	}
	return c, nil
}

// URL returns a pgx connection URL for the database "ledger".
func (c *Cluster) URL() string { return c.URLFor(Database) }

// URLFor returns a pgx connection URL for database db over the cluster's
// unix socket, as the superuser.
func (c *Cluster) URLFor(db string) string { return c.URLAs(superuser, db) }

// URLAs returns a pgx connection URL for database db over the cluster's
// unix socket, as role; no password: the private socket is trusted.
func (c *Cluster) URLAs(role, db string) string {
	q := url.Values{}
	q.Set("host", c.sockDir)
	q.Set("port", strconv.Itoa(c.socketPort()))
	q.Set("sslmode", "disable")
	// A slash needs no escaping in a query; keeping it makes the URL
	// readable and copyable into psql.
	raw := strings.ReplaceAll(q.Encode(), "%2F", "/")
	u := url.URL{Scheme: "postgres", User: url.User(role), Path: "/" + db, RawQuery: raw}
	return u.String()
}

// DataDir returns the cluster's data directory (PGDATA).
func (c *Cluster) DataDir() string { return c.dataDir }

// Stop shuts the server down (pg_ctl stop -m fast), waits until it has
// exited and releases Dir. Stopping a stopped cluster is not an error.
//
// Errors: a wrapped pg_ctl error, or ctx's error; Dir stays locked then,
// since the server may still run.
func (c *Cluster) Stop(ctx context.Context) error {
	if err := c.stop(ctx); err != nil {
		return err
	}
	if c.sockTemp {
		// The socket dir in the temp dir outlives Dir otherwise. It is ours
		// (made by MkdirTemp) and empty once the server is down.
		_ = os.Remove(c.sockDir)
	}
	c.unlockDir()
	return nil
}

func (c *Cluster) stop(ctx context.Context) error {
	running, err := c.running(ctx)
	if err != nil {
		return fmt.Errorf("stop cluster %s: %w", c.dataDir, err)
	}
	if !running {
		return nil
	}
	c.logf("devpg: stopping postgres in %s", c.dataDir)
	if _, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir, "-m", "fast", "-w",
		"-t", strconv.Itoa(pgctlWaitSeconds)); err != nil {
		return fmt.Errorf("stop cluster %s: %w", c.dataDir, err)
	}
	return nil
}

func (c *Cluster) socketPort() int {
	if c.port > 0 {
		return c.port
	}
	return defaultSocketPort
}

// findBinDir finds the directory holding initdb and pg_ctl: PATH first,
// then the highest version under the distributions' usual places.
func findBinDir() (string, error) {
	initdb, err1 := exec.LookPath("initdb")
	pgctl, err2 := exec.LookPath("pg_ctl")
	if err1 == nil && err2 == nil {
		// Symlinks (/usr/local/bin/pg_ctl) lead to the real bin directory,
		// where pg_ctl also finds postgres.
		a, errA := filepath.EvalSymlinks(initdb)
		b, errB := filepath.EvalSymlinks(pgctl)
		if errA == nil && errB == nil && filepath.Dir(a) == filepath.Dir(b) {
			return filepath.Dir(a), nil
		}
	}
	var dirs []string
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(pattern) // Only ErrBadPattern, and the patterns are constant.
		dirs = append(dirs, m...)
	}
	// Highest major version first: 9.6 < 10 < 15 < 17 compares as numbers.
	sort.Slice(dirs, func(i, j int) bool { return dirVersion(dirs[i]) > dirVersion(dirs[j]) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "pg_ctl")) &&
			isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func dirVersion(binDir string) float64 {
	v := filepath.Base(filepath.Dir(binDir))
	v = strings.TrimPrefix(v, "pgsql-")
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return -1
	}
	return f
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// credential returns nil when not root, else the postgres user's ids.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(superuser)
	if err != nil {
		return nil, fmt.Errorf("look up user %s: %w: %w", superuser, ErrNoPostgresUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s uid %q: %w", superuser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s gid %q: %w", superuser, u.Gid, err)
	}
	// Empty Groups drops root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// prepareDirs makes the socket directory private to the server's user and,
// as root, hands Dir to the postgres user after checking that user can
// reach it and the socket directory.
func (c *Cluster) prepareDirs() error {
	if err := rotateLog(c.logPath); err != nil {
		return err
	}
	if err := c.makeSocketDir(); err != nil {
		return err
	}
	if c.cred == nil {
		return nil
	}
	// Only the top of the tree: data/ is created by initdb as postgres, and
	// chowning a user's existing tree recursively would be a surprise.
	for _, p := range []string{c.dir, c.logPath} {
		if err := os.Lchown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("chown %s to %s: %w", p, superuser, err)
		}
	}
	for _, d := range []string{c.dir, c.sockDir} {
		if err := checkTraversable(filepath.Dir(d), c.cred); err != nil {
			return err
		}
	}
	return nil
}

// makeSocketDir makes the socket directory: a fresh one from MkdirTemp when
// Dir is too deep, else Dir/run, made now or checked private if it exists.
// A directory we just made is handed to the server's user; one that existed
// is never chowned, because chowning what someone else made first would
// hand it over with whatever they put in it.
func (c *Cluster) makeSocketDir() error {
	if c.sockTemp {
		d, err := os.MkdirTemp("", tempSocketPattern)
		if err != nil {
			return fmt.Errorf("create socket dir: %w", err)
		}
		c.sockDir = d
		if err := c.chownNew(d); err != nil {
			return err
		}
		c.oldSockDir = c.readTempSocketRecord()
		if err := os.WriteFile(filepath.Join(c.dir, tempSocketRecord), []byte(d), 0o600); err != nil {
			return fmt.Errorf("record socket dir: %w", err)
		}
		return nil
	}
	err := os.Mkdir(c.sockDir, 0o700)
	if err == nil {
		return c.chownNew(c.sockDir)
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create socket dir: %w", err)
	}
	return checkPrivate(c.sockDir, c.serverUID())
}

func (c *Cluster) chownNew(dir string) error {
	if c.cred != nil {
		if err := os.Lchown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("chown %s to %s: %w", dir, superuser, err)
		}
	}
	return checkPrivate(dir, c.serverUID())
}

// readTempSocketRecord returns the temp socket dir an earlier Start made,
// or "" if none is recorded or the record does not name one of ours.
func (c *Cluster) readTempSocketRecord() string {
	b, err := os.ReadFile(filepath.Join(c.dir, tempSocketRecord))
	if err != nil {
		return ""
	}
	d := string(b)
	if ok, _ := filepath.Match(tempSocketPattern, filepath.Base(d)); !ok || filepath.Dir(d) != filepath.Clean(os.TempDir()) {
		return ""
	}
	return d
}

// removeOldTempSocketDir removes the temp socket dir a process that died
// left behind, once its server is stopped: only if it is still a private
// directory of the server's user, and only if empty (os.Remove).
func (c *Cluster) removeOldTempSocketDir() {
	if c.oldSockDir == "" || c.oldSockDir == c.sockDir || checkPrivate(c.oldSockDir, c.serverUID()) != nil {
		return
	}
	_ = os.Remove(c.oldSockDir)
}

// serverUID is the user the server runs as.
func (c *Cluster) serverUID() uint32 {
	if c.cred != nil {
		return c.cred.Uid
	}
	return uint32(os.Geteuid())
}

// checkPrivate reports ErrUnsafeSocketDir unless dir is a directory (not a
// symlink to one) owned by uid that nobody else may enter or write.
func checkPrivate(dir string, uid uint32) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("check socket dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("socket dir %s: no owner to check: %w", dir, ErrUnsafeSocketDir)
	}
	if !fi.IsDir() || st.Uid != uid || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("socket dir %s is %v owned by uid %d, want a directory of uid %d with mode 0700 "+
			"(remove it if it is not yours): %w", dir, fi.Mode(), st.Uid, uid, ErrUnsafeSocketDir)
	}
	return nil
}

// checkTraversable reports ErrNotTraversable when some directory from dir
// up to / lacks search permission for cred's user.
func checkTraversable(dir string, cred *syscall.Credential) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil // Not a unix file system we can reason about; let postgres tell.
		}
		perm := fi.Mode().Perm()
		var can bool
		switch {
		case st.Uid == cred.Uid:
			can = perm&0o100 != 0
		case st.Gid == cred.Gid:
			can = perm&0o010 != 0
		default:
			can = perm&0o001 != 0
		}
		if !can {
			return fmt.Errorf("%s (mode %v) lacks search permission for user %s; "+
				"use a dir under a world-searchable path or chmod o+x %s: %w",
				d, perm, superuser, d, ErrNotTraversable)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// rotateLog keeps postgres.log under logBytesMax by moving a big one aside.
func rotateLog(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat log: %w", err)
	}
	if fi.Size() <= logBytesMax {
		return nil
	}
	if err := os.Rename(path, path+".1"); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	return nil
}

// initdb creates the cluster unless dataDir already holds one of the same
// major version.
func (c *Cluster) initdb(ctx context.Context) error {
	if exists, err := c.existing(ctx); exists || err != nil {
		return err
	}
	c.logf("devpg: initdb %s", c.dataDir)
	// Locale C: byte-order collation is deterministic, fast and the same on
	// every machine, which matters more for a ledger than linguistic sorting.
	// Trust only on the private socket: the TCP listener of Options.Port is
	// reachable by every local user, so it asks for a password.
	if _, err := c.run(ctx, "initdb", "-D", c.dataDir, "--auth-local=trust", "--auth-host=scram-sha-256", "-U", superuser,
		"--encoding=UTF8", "--locale=C"); err != nil {
		// Half made (initdb killed, ctx ended): the next Start makes it anew.
		return errors.Join(fmt.Errorf("initdb %s: %w", c.dataDir, err), os.RemoveAll(c.dataDir))
	}
	// Settings live in devpg.conf, rewritten at every Start.
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = io.WriteString(f, "\n# Written by devpg, rewritten at each start.\ninclude_if_exists = 'devpg.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to postgresql.conf: %w", err)
	}
	return nil
}

// existing says whether dataDir holds a cluster already.
//
// Errors: ErrVersionMismatch, for a cluster of another major version than
// the binaries'; PG_VERSION unreadable.
func (c *Cluster) existing(ctx context.Context) (bool, error) {
	have, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read PG_VERSION: %w", err)
	}
	want, err := c.majorVersion(ctx)
	if err != nil {
		return true, err
	}
	if got := strings.TrimSpace(string(have)); got != want {
		return true, fmt.Errorf("cluster in %s is version %s, binaries in %s are %s: %w",
			c.dataDir, got, c.binDir, want, ErrVersionMismatch)
	}
	// initdb writes PG_VERSION first and global/pg_control late: a
	// process killed in between (kill -9 during the first start) left a
	// directory of these binaries' version that no server starts from.
	// Made anew.
	if _, err := os.Stat(filepath.Join(c.dataDir, "global", "pg_control")); errors.Is(err, fs.ErrNotExist) {
		c.logf("devpg: %s holds a cluster initdb did not finish: making it anew", c.dataDir)
		return false, os.RemoveAll(c.dataDir)
	}
	return true, nil
}

// basebackup copies primary into dataDir as a streaming replica of it,
// unless dataDir already holds a cluster (of the binaries' version).
func (c *Cluster) basebackup(ctx context.Context, primary *Cluster) error {
	if exists, err := c.existing(ctx); exists || err != nil {
		return err
	}
	c.logf("devpg: pg_basebackup of %s into %s", primary.dataDir, c.dataDir)
	// -R writes standby.signal and primary_conninfo: the copy starts as a
	// replica streaming from primary's socket (local replication is trusted,
	// as initdb made it).
	if _, err := c.run(ctx, "pg_basebackup", "-h", primary.sockDir, "-p", strconv.Itoa(primary.socketPort()), "-U", superuser,
		"-D", c.dataDir, "-R", "-X", "stream", "-c", "fast"); err != nil {
		return fmt.Errorf("pg_basebackup into %s: %w", c.dataDir, err)
	}
	return nil
}

// versionRE finds the version in "pg_ctl (PostgreSQL) 15.20 (Debian ...)";
// before 10 the major version had two parts (9.6.24).
var versionRE = regexp.MustCompile(`\(PostgreSQL\) (9\.\d+|\d+)`)

// majorVersion returns the binaries' major version, as PG_VERSION holds it.
func (c *Cluster) majorVersion(ctx context.Context) (string, error) {
	out, err := c.run(ctx, "pg_ctl", "--version")
	if err != nil {
		return "", fmt.Errorf("pg_ctl --version: %w", err)
	}
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("pg_ctl --version: no version in %q", out)
	}
	return m[1], nil
}

// writeConfig writes devpg.conf: defaults, then extra, then the listening
// settings, which devpg owns because URL depends on them.
func (c *Cluster) writeConfig(extra map[string]string) error {
	settings := make(map[string]string, len(defaultSettings)+len(extra)+4)
	for k, v := range defaultSettings {
		settings[k] = v
	}
	for k, v := range extra {
		settings[k] = v
	}
	settings["unix_socket_directories"] = c.sockDir
	settings["port"] = strconv.Itoa(c.socketPort())
	settings["listen_addresses"] = ""
	if c.port > 0 {
		settings["listen_addresses"] = "127.0.0.1"
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("# Written by devpg at each start; edits are lost. Use Options.Settings.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, quoteConf(settings[k]))
	}
	path := filepath.Join(c.dataDir, "devpg.conf")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write devpg.conf: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(path, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("chown devpg.conf: %w", err)
		}
	}
	return nil
}

// quoteConf escapes a value for a single-quoted postgresql.conf string; a
// newline would end the line, so it is dropped.
func quoteConf(v string) string {
	v = strings.NewReplacer("\\", "\\\\", "'", "''", "\n", " ", "\r", " ").Replace(v)
	return v
}

// start starts the server; one left running by an earlier process is
// stopped first so that the config just written takes effect.
func (c *Cluster) start(ctx context.Context) error {
	running, err := c.running(ctx)
	if err != nil {
		return fmt.Errorf("start cluster %s: %w", c.dataDir, err)
	}
	if running {
		c.logf("devpg: restarting the server left running in %s", c.dataDir)
		if err := c.stop(ctx); err != nil {
			return fmt.Errorf("start cluster: %w", err)
		}
	}
	c.logf("devpg: starting postgres in %s (socket %s)", c.dataDir, c.sockDir)
	began := time.Now()
	// pg_ctl runs to its end (bounded by its own -t) whatever ctx: killed
	// while it waits, it leaves the postmaster it forked starting, whose
	// postmaster.pid may not say so yet (a pg_ctl status at that instant
	// answers "no server"), so nothing could stop it. Once pg_ctl is done
	// the server is up or gone, and an ended ctx fails the start, which
	// stops it (Start's stopAfterFailure). A second signal to ledgerd
	// exits at once meanwhile.
	if _, err := c.run(context.WithoutCancel(ctx), "pg_ctl", "start", "-D", c.dataDir, "-l", c.logPath, "-w",
		"-t", strconv.Itoa(pgctlWaitSeconds)); err != nil {
		return fmt.Errorf("start cluster %s: %w\nserver log tail:\n%s", c.dataDir, err, tail(c.logPath))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start cluster %s: %w", c.dataDir, err)
	}
	c.logf("devpg: postgres ready in %v", time.Since(began).Round(time.Millisecond))
	return nil
}

// running asks pg_ctl status: exit 0 is running, 3 is not running.
func (c *Cluster) running(ctx context.Context) (bool, error) {
	_, err := c.run(ctx, "pg_ctl", "status", "-D", c.dataDir)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		return false, nil
	default:
		return false, fmt.Errorf("pg_ctl status: %w", err)
	}
}

func (c *Cluster) createDatabase(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, c.URLFor("postgres"))
	if err != nil {
		return fmt.Errorf("connect to new cluster: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).
		Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", db, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: someone beat us.
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}
