package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrDataDirInUse means another live ledgerd holds the data dir: starting on
// it would restart that one's PostgreSQL under it and share its JetStream
// store.
var ErrDataDirInUse = errors.New("data dir in use by another ledgerd")

const (
	// dataDirLockFile, in the data dir, is flocked by the ledgerd using it
	// and holds its pid, for the message that refuses a second one.
	dataDirLockFile = "ledgerd.lock"
	// lockPIDBytesMax bounds what is read of the lock file for the pid.
	lockPIDBytesMax = 32
)

// lockDataDir takes the data dir's lock, without waiting, when ledgerd runs
// an embedded server in it. An flock: the kernel drops it when the process
// dies, however it dies, so a crash never leaves the dir locked; the file is
// close-on-exec, so the servers we start do not keep it.
//
// Errors: ErrDataDirInUse naming the dir and the holder's pid.
func (m *Main) lockDataDir() error {
	if m.Config.PostgresURL != "" && m.Config.NATSURL != "" {
		return nil
	}
	dir := m.Config.DataDir
	// Searchable by others: as root, the private cluster runs as the
	// postgres user, which must reach its own directory below this one.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, dataDirLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := lockHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			abs, _ := filepath.Abs(dir) // Only for the message; dir will do if it fails.
			return fmt.Errorf("%s is used by %s (lock %s): stop it first, or give this one another -data-dir: %w",
				cmp.Or(abs, dir), holder, path, ErrDataDirInUse)
		}
		return fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid only serves the message above; the flock is the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	m.dataDirLock = f
	return nil
}

// unlockDataDir releases the data dir, after the embedded servers stopped.
func (m *Main) unlockDataDir() {
	if m.dataDirLock != nil {
		m.dataDirLock.Close()
		m.dataDirLock = nil
	}
}

// lockHolder names the ledgerd whose pid the lock file holds.
func lockHolder(f *os.File) string {
	buf := make([]byte, lockPIDBytesMax)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "another ledgerd"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return "another ledgerd"
	}
	return "ledgerd pid " + strconv.Itoa(pid)
}
