package devpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// run runs one of the PostgreSQL binaries, as the postgres user when root,
// and returns its output; on failure the error carries the output's tail.
func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Env = childEnv()
	// A cwd the postgres user cannot enter makes initdb and pg_ctl complain.
	cmd.Dir = filepath.Dir(c.dataDir)
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	out := &tailBuffer{max: outputBytesMax}
	cmd.Stdout = out
	cmd.Stderr = out
	// pg_ctl start leaves the server holding our pipes; do not wait for it
	// to close them.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// childEnv is our environment without PG* variables, which would otherwise
// point the binaries at another server, data dir or port.
func childEnv() []string {
	env := os.Environ()
	kept := env[:0:0]
	for _, kv := range env {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		kept = append(kept, kv)
	}
	return append(kept, "LC_ALL=C")
}

// tail returns at most outputBytesMax bytes from the end of a file.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot stat %s: %v)", path, err)
	}
	off := fi.Size() - outputBytesMax
	if off < 0 {
		off = 0
	}
	buf := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(buf, off) // Best effort: this only decorates an error.
	return string(buf[:n])
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.buf) }
