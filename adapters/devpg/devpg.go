// Package devpg runs a private PostgreSQL cluster made from the machine's
// PostgreSQL binaries (initdb, pg_ctl), for ledgerd's dev mode and for tests
// on machines that have no server running.
//
// The cluster listens only on a unix socket inside its own directory (no
// TCP: listen_addresses is empty), so it never collides with a system
// server on 5432 or with another private cluster. Options.Port adds a TCP listener on
// 127.0.0.1 for people who want to point other tools at it.
//
// initdb and postgres refuse to run as root, so when the process is root the
// binaries run as the `postgres` system user, which then owns Options.Dir.
package devpg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	// Port, when > 0, also listens on TCP 127.0.0.1:Port. 0 means unix
	// socket only, which cannot collide with anything.
	Port int
	// Logf, if set, receives progress messages (initdb, start, stop).
	Logf func(format string, args ...any)
	// Settings are extra postgresql.conf settings; they override the
	// defaults. At most 256 entries.
	Settings map[string]string
}

// Cluster is a running private PostgreSQL cluster.
type Cluster struct {
	binDir  string
	dataDir string
	sockDir string
	logPath string
	port    int
	cred    *syscall.Credential // nil: run the binaries as ourselves
	logf    func(string, ...any)
}

// Start creates the cluster in opts.Dir if needed, starts its server and
// creates the database "ledger". A server left running in opts.Dir by an
// earlier process is stopped and started again, so the settings written now
// are the ones in force; a stale postmaster.pid from a crash is handled by
// pg_ctl. Two live processes must not Start the same Dir at once.
//
// Errors: ErrInvalidOptions, ErrNoPostgres, ErrNoPostgresUser,
// ErrNotTraversable, ErrVersionMismatch, or a wrapped initdb, pg_ctl or
// connection error (with the tail of the server log).
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	if err := c.prepareDirs(filepath.Dir(c.dataDir)); err != nil {
		return nil, err
	}
	if err := c.initdb(ctx); err != nil {
		return nil, err
	}
	if err := c.writeConfig(opts.Settings); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	if err := c.createDatabase(ctx, Database); err != nil {
		// Leave nothing running that the caller cannot stop.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pgctlWaitSeconds*time.Second)
		defer cancel()
		return nil, errors.Join(err, c.Stop(stopCtx))
	}
	return c, nil
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
		binDir:  binDir,
		dataDir: filepath.Join(dir, "data"),
		sockDir: socketDir(dir, opts.Port),
		logPath: filepath.Join(dir, "postgres.log"),
		port:    opts.Port,
		cred:    cred,
		logf:    logf,
	}
	return c, nil
}

// URL returns a pgx connection URL for the database "ledger".
func (c *Cluster) URL() string { return c.URLFor(Database) }

// URLFor returns a pgx connection URL for database db over the cluster's
// unix socket.
func (c *Cluster) URLFor(db string) string {
	q := url.Values{}
	q.Set("host", c.sockDir)
	q.Set("port", strconv.Itoa(c.socketPort()))
	q.Set("sslmode", "disable")
	// A slash needs no escaping in a query; keeping it makes the URL
	// readable and copyable into psql.
	raw := strings.ReplaceAll(q.Encode(), "%2F", "/")
	u := url.URL{Scheme: "postgres", User: url.User(superuser), Path: "/" + db, RawQuery: raw}
	return u.String()
}

// DataDir returns the cluster's data directory (PGDATA).
func (c *Cluster) DataDir() string { return c.dataDir }

// Stop shuts the server down (pg_ctl stop -m fast) and waits until it has
// exited. Stopping a stopped cluster is not an error.
//
// Errors: a wrapped pg_ctl error, or ctx's error.
func (c *Cluster) Stop(ctx context.Context) error {
	if err := c.stop(ctx); err != nil {
		return err
	}
	if filepath.Dir(c.sockDir) != filepath.Dir(c.dataDir) {
		// The short socket dir in the temp dir outlives Dir otherwise; a
		// non-empty one (someone else's) is left alone by os.Remove.
		_ = os.Remove(c.sockDir)
	}
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

// socketDir is dir/run unless the socket path would pass the kernel's
// limit; then it is a short directory in the temp dir named by a hash of
// dir, so the same Dir always gets the same socket.
func socketDir(dir string, port int) string {
	if port == 0 {
		port = defaultSocketPort
	}
	sock := filepath.Join(dir, "run")
	if len(sock)+len("/.s.PGSQL.")+len(strconv.Itoa(port)) <= socketPathBytesMax {
		return sock
	}
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(os.TempDir(), "devpg-"+hex.EncodeToString(sum[:6]))
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

// prepareDirs creates dir and the socket directory and, as root, hands them
// to the postgres user after checking that user can reach them.
func (c *Cluster) prepareDirs(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create dir: %w", err)
	}
	if err := rotateLog(c.logPath); err != nil {
		return err
	}
	if err := os.MkdirAll(c.sockDir, 0o700); err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	if c.cred == nil {
		return nil
	}
	// Only the top of the tree: data/ is created by initdb as postgres, and
	// chowning a user's existing tree recursively would be a surprise.
	for _, p := range []string{dir, c.sockDir, c.logPath} {
		if err := os.Lchown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("chown %s to %s: %w", p, superuser, err)
		}
	}
	for _, d := range []string{dir, c.sockDir} {
		if err := checkTraversable(filepath.Dir(d), c.cred); err != nil {
			return err
		}
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
	have, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION"))
	if err == nil {
		want, err := c.majorVersion(ctx)
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(have)); got != want {
			return fmt.Errorf("cluster in %s is version %s, binaries in %s are %s: %w",
				c.dataDir, got, c.binDir, want, ErrVersionMismatch)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read PG_VERSION: %w", err)
	}
	c.logf("devpg: initdb %s", c.dataDir)
	// Locale C: byte-order collation is deterministic, fast and the same on
	// every machine, which matters more for a ledger than linguistic sorting.
	if _, err := c.run(ctx, "initdb", "-D", c.dataDir, "-A", "trust", "-U", superuser,
		"--encoding=UTF8", "--locale=C"); err != nil {
		return fmt.Errorf("initdb %s: %w", c.dataDir, err)
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
	if _, err := c.run(ctx, "pg_ctl", "start", "-D", c.dataDir, "-l", c.logPath, "-w",
		"-t", strconv.Itoa(pgctlWaitSeconds)); err != nil {
		return fmt.Errorf("start cluster %s: %w\nserver log tail:\n%s", c.dataDir, err, tail(c.logPath))
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
