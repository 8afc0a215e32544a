package devpg

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDir takes Dir's lock without waiting and writes our pid into it. The
// lock is an flock, so the kernel drops it when the process dies however it
// dies: a crashed process never leaves Dir locked. The file is opened
// close-on-exec, so the server pg_ctl starts does not inherit (and keep) it.
//
// Errors: ErrDirInUse naming the holder's pid when it can be read.
func (c *Cluster) lockDir() error {
	path := filepath.Join(c.dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := lockHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%s is used by %s (lock %s): stop it first, or use another data dir: %w",
				c.dir, holder, path, ErrDirInUse)
		}
		return fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid is only for the message above; the flock is the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	c.lock = f
	return nil
}

// unlockDir releases Dir; closing the file drops the flock.
func (c *Cluster) unlockDir() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// lockHolder names the process whose pid the lock file holds.
func lockHolder(f *os.File) string {
	buf := make([]byte, lockPIDBytesMax)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "another process"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return "another process"
	}
	return "process " + strconv.Itoa(pid)
}
