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
	"time"
)

// lockDir takes Dir's lock (LockFile) for the cluster's life.
//
// Errors: ErrDirInUse naming the holder's pid when it can be read.
func (c *Cluster) lockDir() error {
	path := filepath.Join(c.dir, lockFile)
	f, holder, err := LockFile(path)
	if errors.Is(err, ErrDirInUse) {
		who := "another process"
		if holder > 0 {
			who = "process " + strconv.Itoa(holder)
		}
		return fmt.Errorf("%s is used by %s (lock %s): stop it first, or use another data dir: %w", c.dir, who, path, err)
	}
	if err != nil {
		return err
	}
	c.lock = f
	return nil
}

// LockFile takes the flock of the file at path, creating it, without waiting,
// and writes our pid into it. An flock: the kernel drops it when the process
// dies, however it dies, so a crash never leaves it held; the file is
// close-on-exec, so the servers a process starts do not inherit (and keep)
// it. Close the file to release the lock.
//
// Errors: ErrDirInUse, with holder the pid the file holds (0 if unreadable);
// the error of opening or locking the file.
func LockFile(path string) (f *os.File, holder int, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := flockSoon(f); err != nil {
		holder := lockHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, holder, ErrDirInUse
		}
		return nil, 0, fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid is only for the holder's message; the flock is the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, 0, nil
}

// lockRetryFor is how long LockFile keeps trying a held lock. A process that
// forks while it holds the file open (a test starting initdb beside another
// test's cluster, a server starting pg_ctl) leaves a copy of the descriptor,
// and so the lock, in the child until the child's exec closes it: on a loaded
// machine that lasts some milliseconds after the file was closed. A real
// second server holds the lock for good, so waiting this long only delays
// its refusal.
const lockRetryFor = 2 * time.Second

// flockSoon takes f's exclusive flock, retrying for lockRetryFor while it is
// held.
func flockSoon(f *os.File) error {
	deadline := time.Now().Add(lockRetryFor)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil || !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unlockDir releases Dir; closing the file drops the flock.
func (c *Cluster) unlockDir() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// lockHolder reads the pid the lock file holds; 0 if it holds none.
func lockHolder(f *os.File) int {
	buf := make([]byte, lockPIDBytesMax)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
