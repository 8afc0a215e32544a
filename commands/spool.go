package commands

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/ledgerd/ledger/eventstore"
)

// spool holds a snapshot from its encoding until it is written: in a
// temporary file, unlinked at once, or in memory when no file can be made.
//
// A snapshot is the writer's whole state encoded (about 7 bytes a transfer
// id in format 5 and 27 an account without metadata: some 100 MB at a
// million accounts and ten million transfers, 140 MB in format 4), taken
// between two batches and written in the background for seconds after.
// Held in memory, it was live beside the state it encodes: the collector's
// goal, and the peak, grew by twice its size
// (docs/perf.md, "Session 28"). In a file it costs the page cache, which
// the kernel reclaims, not the heap. The file has no name once created, so
// nothing is left behind by a crash.
type spool struct {
	f   *os.File     // nil: buf holds the data
	buf bytes.Buffer // when no file could be made
	sum hash.Hash
	n   int
	// err is the first write's error: the snapshot is then dropped.
	err error
}

// newSpool returns a spool in a file under dir ("": os.TempDir), or in
// memory with room for hint bytes when the file cannot be made (fileErr
// says why).
func newSpool(dir string, hint int) (sp *spool, fileErr error) {
	sp = &spool{sum: sha256.New()}
	f, err := os.CreateTemp(dir, "ledgerd-snapshot-*")
	if err == nil {
		// Unlinked now, the file lives as long as it is open.
		if err = os.Remove(f.Name()); err == nil {
			sp.f = f
			return sp, nil
		}
		_ = f.Close()
	}
	sp.buf.Grow(hint)
	return sp, err
}

// Write adds p to the spool; after a failed write, every write fails.
func (sp *spool) Write(p []byte) (int, error) {
	if sp.err != nil {
		return 0, sp.err
	}
	var n int
	if sp.f != nil {
		n, sp.err = sp.f.Write(p)
	} else {
		n, sp.err = sp.buf.Write(p)
	}
	sp.sum.Write(p[:n])
	sp.n += n
	if sp.err != nil {
		sp.err = fmt.Errorf("snapshot spool: %w", sp.err)
	}
	return n, sp.err
}

// Len is the bytes written.
func (sp *spool) Len() int { return sp.n }

// Checksum is the SHA-256 of the bytes written.
func (sp *spool) Checksum() (h eventstore.Hash) {
	copy(h[:], sp.sum.Sum(nil))
	return h
}

// inFile says whether the data is in a file.
func (sp *spool) inFile() bool { return sp.f != nil }

// Reader reads the data written, from its start.
//
// Errors: the file's seek.
func (sp *spool) Reader() (io.Reader, error) {
	if sp.f == nil {
		return bytes.NewReader(sp.buf.Bytes()), nil
	}
	if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("snapshot spool: %w", err)
	}
	return sp.f, nil
}

// Close lets go of the data (the file's space, or the buffer).
func (sp *spool) Close() error {
	sp.buf = bytes.Buffer{}
	if sp.f == nil {
		return nil
	}
	err := sp.f.Close()
	sp.f = nil
	return err
}
