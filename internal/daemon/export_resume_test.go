package daemon_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/internal/testenv"
)

// A resumed export (--from P --out FILE) that is refused leaves FILE as it
// was, and a file of another ledger is refused. It did cut the file's
// trailer (os.Truncate) before anything checked that the events to come
// link to the file's last, or that the file is of this ledger:
//   - another ledger with events past P: refused ("does not link"), but the
//     file had lost its trailer, and log import and audit verify --in
//     refused it as a cut export;
//   - another ledger whose head is before P: nothing was read or checked,
//     exit 0 ("nothing to export"), and the file got a trailer naming the
//     other ledger, which import and verify --in refused;
//   - the file's last event not the log's (an altered file): its trailer
//     was rewritten over the altered hash.
//
// Now the file's last event is checked against the log's at its position
// (its ledger, its hash) before the file is touched.
func TestRefusedExportResumeLeavesTheFile(t *testing.T) {
	t.Parallel()
	h := start(t)
	b := testenv.Name(t) + "-b"
	small := testenv.Name(t) + "-s"
	large := testenv.Name(t) + "-l"
	for _, l := range []struct {
		name  string
		steps int
	}{{b, 20}, {small, 3}, {large, 60}} {
		w := newTBWorkload(t, h, l.name, 31)
		for range l.steps {
			w.step(t)
		}
	}
	hb, hs, hl := h.head(t, b), h.head(t, small), h.head(t, large)
	if hs > hb || hl <= hb+1 {
		t.Fatalf("heads %d %d %d: want small <= b < large", hs, hb, hl)
	}
	from := strconv.FormatUint(hb+1, 10)
	for _, c := range []struct {
		name   string
		ledger string
		// alter edits b's export before the resume: the file is then not
		// one verify --in passes.
		alter func(t *testing.T, file string)
	}{
		{"another ledger past the file", large, nil},
		{"another ledger before the file's end", small, nil},
		{"an event the log does not hold", b, alterLastEventHash},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "b.jsonl")
			h.runCtlOK(t, b, "log", "export", "--out", file)
			if c.alter != nil {
				c.alter(t, file)
			}
			before, err := os.ReadFile(file)
			testenv.NoError(t, err)
			code, out, errOut := h.runCtl(t, c.ledger, "log", "export", "--from", from, "--out", file)
			t.Logf("resume with --ledger %s: exit %d: %s", c.ledger, code, strings.SplitN(errOut, "\n", 2)[0])
			if code == 0 {
				t.Errorf("resume of %s's file with --ledger %s: exit 0\n%s%s", b, c.ledger, out, errOut)
			}
			after, err := os.ReadFile(file)
			testenv.NoError(t, err)
			if !bytes.Equal(before, after) {
				t.Errorf("the export of %s changed (%d bytes, was %d); its last line now:\n%s", b, len(after), len(before),
					lastLine(after))
			}
			if c.alter != nil {
				return
			}
			if code, vout, verr := h.runCtl(t, b, "audit", "verify", "--in", file); code != 0 || !strings.Contains(vout, "clean") {
				t.Errorf("audit verify --in of %s's export after the resume: exit %d\n%s%s", b, code, vout, verr)
			}
		})
	}
}

// alterLastEventHash changes a digit of the hash of the export's last
// event, as a file of another history of a ledger of the same name has.
func alterLastEventHash(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	testenv.NoError(t, err)
	lines := bytes.SplitAfter(b, []byte("\n"))
	ev := lines[len(lines)-3] // the last event, before the trailer and the empty rest
	i := bytes.Index(ev, []byte(`"hash":"`)) + len(`"hash":"`)
	ev[i] = "01"[(ev[i]-'0'+1)%2] // a digit: '0' or '1', whichever it is not
	testenv.NoError(t, os.WriteFile(file, bytes.Join(lines, nil), 0o600))
}

func lastLine(b []byte) string {
	b = bytes.TrimRight(b, "\n")
	return string(b[bytes.LastIndexByte(b, '\n')+1:])
}
