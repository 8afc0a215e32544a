// Package anchorfile keeps anchors in files: one append-only JSON Lines
// file per ledger (<dir>/<ledger>.anchors.jsonl), the sink ledgerd writes and
// the form ledgerctl audit verify --anchors reads.
package anchorfile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/ledgerd/ledger/anchor"
)

// Limits of reading anchors.
const (
	// ReadMax bounds the anchors read from files at once: one every 10 s
	// for a year is 3.2 million.
	ReadMax = 1 << 23
	// lineMax bounds a line: an anchor is about 300 bytes.
	lineMax = 64 << 10
	// fileMode: an anchor is public, but only ledgerd appends.
	fileMode = 0o644
)

// Suffix ends every anchor file's name.
const Suffix = ".anchors.jsonl"

// ErrTooMany: more than ReadMax anchors.
var ErrTooMany = errors.New("too many anchors")

// Sink appends anchors to <Dir>/<ledger>.anchors.jsonl, each synced to
// disk before Put returns.
type Sink struct {
	Dir string
	mu  sync.Mutex
}

// Name is what logs call the sink.
func (s *Sink) Name() string { return "file " + s.Dir }

// Put appends a (ctx is not consulted: a write to a local file).
//
// Errors: the file system's.
func (s *Sink) Put(_ context.Context, a anchor.Anchor) error {
	// The ledger names the file: a name with a path in it (a row made by
	// hand in the database) would write outside Dir.
	if a.Ledger == "" || a.Ledger != filepath.Base(a.Ledger) || a.Ledger == "." || a.Ledger == ".." {
		return fmt.Errorf("ledger %q: not a file name: %w", a.Ledger, anchor.ErrMalformed)
	}
	line, err := a.MarshalJSON()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(Path(s.Dir, a.Ledger), os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return err
	}
	end, err := completeLines(f)
	if err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteAt(append(line, '\n'), end); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// completeLines returns where f's complete lines end, cutting off a last
// line without its newline: a write that a crash or a power loss tore, of
// an anchor that was never published (Put returns after the sync). Left
// there, the next anchor would be appended to it, and the file no longer
// read (Load, Last).
//
// Errors: the file system's.
func completeLines(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if size == 0 {
		return 0, nil
	}
	// The last byte alone, at each Put: the tail is read only after a tear.
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return 0, err
	}
	if last[0] == '\n' {
		return size, nil
	}
	from := max(size-lineMax, 0)
	tail := make([]byte, size-from)
	if _, err := f.ReadAt(tail, from); err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(tail, '\n')
	if i < 0 && from > 0 {
		return 0, fmt.Errorf("%s: no line ends in its last %d bytes: not an anchor file", f.Name(), lineMax)
	}
	end := from + int64(i) + 1 // 0 when the file is all one torn line
	return end, f.Truncate(end)
}

// tailMax bounds what Last reads from the end of a file: the last lines,
// the highest position among them.
const tailMax = 16 << 10

// Last returns the anchor of ledger at the highest position among the last
// lines of its file (they are appended in the order signed): what a
// restarted ledgerd signed last. false when there is no file or no anchor.
//
// Errors: the file system's; a last line that is not an anchor.
func (s *Sink) Last(ledger string) (anchor.Anchor, bool, error) {
	if ledger == "" || ledger != filepath.Base(ledger) || ledger == "." || ledger == ".." {
		return anchor.Anchor{}, false, nil // never written (Put)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.Open(Path(s.Dir, ledger))
	if errors.Is(err, os.ErrNotExist) {
		return anchor.Anchor{}, false, nil
	}
	if err != nil {
		return anchor.Anchor{}, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return anchor.Anchor{}, false, err
	}
	from := max(st.Size()-tailMax, 0)
	buf := make([]byte, st.Size()-from)
	if _, err := f.ReadAt(buf, from); err != nil {
		return anchor.Anchor{}, false, err
	}
	lines := strings.Split(string(buf), "\n")
	if from > 0 {
		lines = lines[1:] // the first is cut
	}
	// The last is "" after a newline, or a write that was torn (Put cuts
	// it off before it appends): not an anchor signed.
	lines = lines[:len(lines)-1]
	var last anchor.Anchor
	found := false
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		a, err := anchor.Parse([]byte(l))
		if err != nil {
			return anchor.Anchor{}, false, fmt.Errorf("%s: %w", Path(s.Dir, ledger), err)
		}
		if !found || a.Position > last.Position {
			last, found = a, true
		}
	}
	return last, found, nil
}

// Path is the file of ledger's anchors under dir.
func Path(dir, ledger string) string { return filepath.Join(dir, ledger+Suffix) }

// Load reads the anchors of path: a file of JSON Lines (any ledgers), or a
// directory whose *.jsonl files are. Anchors come back by ledger, then
// position.
//
// Errors: the file system's; a line that is not an anchor (file and line
// number, anchor.ErrMalformed); ErrTooMany.
func Load(path string) ([]anchor.Anchor, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if st.IsDir() {
		if files, err = filepath.Glob(filepath.Join(path, "*.jsonl")); err != nil {
			return nil, err
		}
	}
	var out []anchor.Anchor
	for _, name := range files {
		if out, err = loadFile(name, out); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Ledger != out[j].Ledger {
			return out[i].Ledger < out[j].Ledger
		}
		return out[i].Position < out[j].Position
	})
	return out, nil
}

func loadFile(name string, out []anchor.Anchor) ([]anchor.Anchor, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), lineMax)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		a, err := anchor.Parse(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", name, line, err)
		}
		if len(out) == ReadMax {
			return nil, fmt.Errorf("%s: more than %d: %w", name, ReadMax, ErrTooMany)
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
