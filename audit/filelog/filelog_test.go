package filelog_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/filelog"
	"github.com/ledgerd/ledger/audit/logtest"
	"github.com/ledgerd/ledger/eventstore"
)

// An export read back: the ledger's name comes from the file, its head is
// its last line.
func TestLogContract(t *testing.T) {
	t.Parallel()
	logtest.Run(t, "exported", func(t *testing.T, chain []eventstore.Record, omit uint64) audit.Log {
		var out []byte
		for i := range chain {
			if chain[i].Position != omit {
				out = append(chain[i].AppendJSON(out), '\n')
			}
		}
		path := filepath.Join(t.TempDir(), "log.jsonl")
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return &filelog.Log{Path: path}
	}, logtest.Features{HeadUnknown: true})
}
