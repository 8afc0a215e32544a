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

// A resumed export (--from P --out FILE) must leave FILE as it was when it
// refuses, or when the ledger it reads is not the file's: openExport drops
// the file's trailer (os.Truncate) before anything checks that the events
// to come link to the file's last, or that the file is of this ledger.
//   - Another ledger with events past P: refused ("does not link"), but the
//     file has lost its trailer (and its anchors): log import and audit
//     verify --in now refuse it as a cut export.
//   - Another ledger whose head is before P: nothing is read, nothing is
//     checked, exit 0 ("nothing to export"), and the file of B gets a trailer
//     naming the other ledger, which import and verify --in refuse.
func TestReviewResumedExportOfAnotherLedgerKeepsTheFile(t *testing.T) {
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
	for _, other := range []string{large, small} {
		t.Run(other[len(other)-1:], func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "b.jsonl")
			h.runCtlOK(t, b, "log", "export", "--out", file)
			before, err := os.ReadFile(file)
			testenv.NoError(t, err)
			code, out, errOut := h.runCtl(t, other, "log", "export", "--from", from, "--out", file)
			t.Logf("resume of %s's file with --ledger %s: exit %d\n%s%s", b, other, code, out, errOut)
			after, err := os.ReadFile(file)
			testenv.NoError(t, err)
			if !bytes.Equal(before, after) {
				t.Errorf("the export of %s changed (%d bytes, was %d); its last line now:\n%s", b, len(after), len(before),
					lastLine(after))
			}
			if code, vout, verr := h.runCtl(t, b, "audit", "verify", "--in", file); code != 0 || !strings.Contains(vout, "clean") {
				t.Errorf("audit verify --in of %s's export after the resume: exit %d\n%s%s", b, code, vout, verr)
			}
		})
	}
}

func lastLine(b []byte) string {
	b = bytes.TrimRight(b, "\n")
	return string(b[bytes.LastIndexByte(b, '\n')+1:])
}
