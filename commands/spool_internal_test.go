package commands

import (
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestSpool: what is written comes back from the start, with its length
// and SHA-256, from a file that has no name in its directory; where no
// file can be made, from memory; a failed write fails every later one.
func TestSpool(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("a state, encoded "), 100_000)
	for _, c := range []struct {
		name   string
		dir    string
		inFile bool
	}{
		{"file", t.TempDir(), true},
		{"memory", filepath.Join(t.TempDir(), "missing"), false},
	} {
		sp, fileErr := newSpool(c.dir, 0)
		if (fileErr == nil) != c.inFile || sp.inFile() != c.inFile {
			t.Fatalf("%s: in a file %v (%v), want %v", c.name, sp.inFile(), fileErr, c.inFile)
		}
		for rest := data; len(rest) > 0; rest = rest[min(len(rest), 70_000):] {
			if _, err := sp.Write(rest[:min(len(rest), 70_000)]); err != nil {
				t.Fatal(err)
			}
		}
		if c.inFile {
			if names, err := os.ReadDir(c.dir); err != nil || len(names) != 0 {
				t.Errorf("%s: the spool's directory holds %v (%v), want nothing", c.name, names, err)
			}
		}
		for range 2 { // read twice: each read starts at the start
			r, err := sp.Reader()
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: read back %d bytes (%v), want the %d written", c.name, len(got), err, len(data))
			}
		}
		if sp.Len() != len(data) || sp.Checksum() != sha256.Sum256(data) {
			t.Errorf("%s: length %d checksum %x, want %d %x", c.name, sp.Len(), sp.Checksum(), len(data), sha256.Sum256(data))
		}
		if err := sp.Close(); err != nil {
			t.Errorf("%s: close: %v", c.name, err)
		}
		if err := sp.Close(); err != nil {
			t.Errorf("%s: second close: %v", c.name, err)
		}
	}

	sp, err := newSpool(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = sp.f.Close() // as a full disk would, the next write fails
	if _, err := sp.Write([]byte("x")); err == nil || sp.err == nil {
		t.Fatalf("a write to a closed file: %v, spool error %v", err, sp.err)
	}
	sp.f = nil // a spool in memory from here on would accept writes
	if _, err := sp.Write([]byte("y")); err == nil {
		t.Fatal("a write after a failed one succeeded")
	}
}
