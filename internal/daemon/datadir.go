package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ledgerd/ledger/adapters/devpg"
)

// ErrDataDirInUse means another live ledgerd holds the data dir: starting on
// it would restart that one's PostgreSQL under it and share its JetStream
// store.
var ErrDataDirInUse = errors.New("data dir in use by another ledgerd")

const (
	// dataDirLockFile, in the data dir, is flocked by the ledgerd using it
	// and holds its pid, for the message that refuses a second one.
	dataDirLockFile = "ledgerd.lock"
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
	f, holder, err := devpg.LockFile(path)
	if errors.Is(err, devpg.ErrDirInUse) {
		who := "another ledgerd"
		if holder > 0 {
			who = "ledgerd pid " + strconv.Itoa(holder)
		}
		abs, _ := filepath.Abs(dir) // Only for the message; dir will do if it fails.
		return fmt.Errorf("%s is used by %s (lock %s): stop it first, or give this one another -data-dir: %w",
			cmp.Or(abs, dir), who, path, ErrDataDirInUse)
	}
	if err != nil {
		return err
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
