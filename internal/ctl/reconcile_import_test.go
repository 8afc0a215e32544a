package ctl

// Review tests of ledgerctl's statement import, against a ledgerd (the
// parser's own are in package statementfile). A test that shows a bug is
// kept, skipped with "BUG: ...", so the suite stays green; remove the t.Skip
// to see it fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/statementfile"
)

// header is a statement file's header with every field.
const header = "external_id,amount,direction,value_date,reference,description\n"

// reviewLedger starts ledgerd on the test database and returns a user of a
// fresh ledger with USD (scale 2) and a debit-normal bank:acme.
func reviewLedger(t *testing.T) (run func(args ...string) (int, string, string)) {
	t.Helper()
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	m := &daemon.Main{
		Config: daemon.Config{PostgresURL: testenv.MigratedPostgresURL(t), NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: key},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	testenv.NoError(t, m.Run(context.Background()))
	t.Cleanup(m.Close)
	ledger := testenv.Name(t)
	run = func(args ...string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		env := map[string]string{"LEDGER_API_KEY": key}
		code := Run(ctx, append([]string{"--addr", m.GRPCAddr(), "--ledger", ledger}, args...),
			func(k string) string { return env[k] }, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	for _, args := range [][]string{{"asset", "define", "USD", "2"}, {"account", "open", "--asset", "USD", "--normal", "debit", "bank:acme"}} {
		if code, out, errOut := run(args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	return run
}

// TestReviewImportNothingOfAMalformedFile: a fault the first pass misses in
// chunk 2 leaves chunk 1 imported, against "nothing of a malformed file is
// imported".
func TestReviewImportNothingOfAMalformedFile(t *testing.T) {
	t.Parallel()
	run := reviewLedger(t)
	var b strings.Builder
	b.WriteString(header)
	for i := 1; i <= statementfile.ChunkLines; i++ {
		fmt.Fprintf(&b, "n%d,0.01,credit,2026-03-03,,\n", i)
	}
	b.WriteString("big," + strings.Repeat("9", domain.DigitsMax-1) + ",credit,2026-03-03,,\n")
	path := filepath.Join(t.TempDir(), "s.csv")
	testenv.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	code, out, errOut := run("reconcile", "import", "-o", "json", "--account", "bank:acme", "--source", "bank", path)
	var sum importSummary
	_ = json.Unmarshal([]byte(out), &sum)
	if code != 1 || sum.Created != 0 {
		t.Errorf("exit %d, %d created (%d of %d chunks); want the first pass to refuse the file, nothing created\n%s%s",
			code, sum.Created, sum.ChunksImported, sum.Chunks, out, errOut)
	}
}

// TestReviewImportScaleAndRepeats: the asset's scale reaches the first pass
// (an amount with 3 decimals refused, nothing imported, exit 1), and a line
// repeated identically within one chunk is EXISTS (exit 0).
func TestReviewImportScaleAndRepeats(t *testing.T) {
	t.Parallel()
	run := reviewLedger(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	testenv.NoError(t, os.WriteFile(bad, []byte(header+"a1,1.00,credit,2026-03-02,,\na2,1.234,credit,2026-03-02,,\n"), 0o644))
	code, out, errOut := run("reconcile", "import", "--account", "bank:acme", "--source", "bank", bad)
	if code != 1 || !strings.Contains(errOut, "line 3: amount:") || !strings.Contains(errOut, "nothing was imported") {
		t.Errorf("3 decimals on USD: exit %d\n%s%s", code, out, errOut)
	}
	rep := filepath.Join(dir, "rep.csv")
	testenv.NoError(t, os.WriteFile(rep, []byte(header+"a1,1.00,credit,2026-03-02,,\na1,1.00,credit,2026-03-02,,\n"), 0o644))
	code, out, errOut = run("reconcile", "import", "-o", "json", "--account", "bank:acme", "--source", "bank", rep)
	var sum importSummary
	_ = json.Unmarshal([]byte(out), &sum)
	if code != 0 || sum.Created != 1 || sum.Existing != 1 || sum.Repeats != 1 {
		t.Errorf("a repeated line in one chunk: exit %d, %+v\n%s%s", code, sum, out, errOut)
	}
}

// TestReviewImportBadSource: a malformed --source is not checked before the
// first pass; ledgerd refuses every line of chunk 1, each printed.
func TestReviewImportBadSource(t *testing.T) {
	t.Parallel()
	run := reviewLedger(t)
	path := filepath.Join(t.TempDir(), "s.csv")
	testenv.NoError(t, os.WriteFile(path, []byte(header+"a1,1.00,credit,2026-03-02,,\na2,2.00,credit,2026-03-02,,\n"), 0o644))
	code, out, errOut := run("reconcile", "import", "--account", "bank:acme", "--source", "acme bank", path)
	t.Logf("bad --source: exit %d\n%s%s", code, out, errOut)
	if code == 0 {
		t.Errorf("bad --source: exit 0")
	}
	if code != 2 {
		t.Logf("SUSPECT: a malformed --source is not a usage error (exit %d); ledgerd refuses it once per line", code)
	}
}
