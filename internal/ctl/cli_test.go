package ctl_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/ledgerd/ledger/internal/testenv"
)

// TestCommandHelp: a command's help, by --help or by help COMMAND, is that
// command's: its usage, its flags and an example, on stdout, exit 0.
func TestCommandHelp(t *testing.T) {
	t.Parallel()
	e := env{"LEDGER_ADDR": closedAddr(t)}
	for _, args := range [][]string{{"transfer", "--help"}, {"help", "transfer"}, {"transfer", "-h"}} {
		r := e.run(t, args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("ledgerctl %q: %s\nwant exit 0, nothing on stderr", args, r)
			continue
		}
		for _, want := range []string{"Usage:\n  ledgerctl transfer", "--posting", "--file", "Examples:", "ledgerctl transfer --id fx1 --posting"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("ledgerctl %q: help lacks %q:\n%s", args, want, r.stdout)
			}
		}
		// Not the whole tool's help: no other command's line.
		if strings.Contains(r.stdout, "reconcile import") {
			t.Errorf("ledgerctl %q: help of transfer lists other commands:\n%s", args, r.stdout)
		}
	}
	r := e.run(t, "help", "reconcile", "import")
	if r.code != 0 || !strings.Contains(r.stdout, "ledgerctl reconcile import FILE") || !strings.Contains(r.stdout, "--decimal-comma") {
		t.Errorf("ledgerctl help reconcile import: %s\nwant its usage and flags", r)
	}
}

// TestSuggestions: a mistyped command is a usage error that names the
// command meant, at the top level and within a group.
func TestSuggestions(t *testing.T) {
	t.Parallel()
	e := env{"LEDGER_ADDR": closedAddr(t)}
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"tranfer", "--id", "t1"}, `did you mean "transfer"`},
		{[]string{"balence", "alice"}, `did you mean "balance"`},
		{[]string{"acount", "open", "alice"}, `did you mean "account"`},
		{[]string{"ledger", "lst"}, `did you mean "ledger list"`},
		{[]string{"reconcile", "reprot", "--account", "a"}, `did you mean "reconcile report"`},
	} {
		r := e.run(t, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, "unknown command") || !strings.Contains(r.stderr, c.says) || r.stdout != "" {
			t.Errorf("ledgerctl %q: %s\nwant exit 2, stderr saying %q, nothing on stdout", c.args, r, c.says)
		}
	}
}

// TestMissingFlagNamed: a command without a flag it needs names the flag,
// every one missing, and sends nothing.
func TestMissingFlagNamed(t *testing.T) {
	t.Parallel()
	e := env{"LEDGER_ADDR": closedAddr(t)}
	for _, c := range []struct {
		args []string
		says []string
	}{
		{[]string{"post", "--id", "p1"}, []string{"--pending-id"}},
		{[]string{"void"}, []string{"--id", "--pending-id"}},
		{[]string{"reverse", "--transfer-id", "t1"}, []string{"--id"}},
		{[]string{"keys", "create"}, []string{"--role"}},
		{[]string{"log", "import"}, []string{"--in"}},
		{[]string{"reconcile", "report"}, []string{"--account"}},
		{[]string{"transfer", "--id", "t1", "--from", "a", "--to", "b"}, []string{"--amount", "--asset"}},
		{[]string{"transfer", "--posting", "a:b:1.00:USD"}, []string{"--id"}},
	} {
		r := e.run(t, c.args...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "Usage:") {
			t.Errorf("ledgerctl %q: %s\nwant exit 2 with the usage, nothing on stdout", c.args, r)
		}
		for _, flag := range c.says {
			if !strings.Contains(r.stderr, flag) {
				t.Errorf("ledgerctl %q: stderr %q does not name %s", c.args, r.stderr, flag)
			}
		}
	}
}

// TestCompletion: each shell gets a script that names the tool.
func TestCompletion(t *testing.T) {
	t.Parallel()
	e := env{"LEDGER_ADDR": closedAddr(t)}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := e.run(t, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, "ledgerctl") || len(strings.Split(r.stdout, "\n")) < 20 {
			t.Errorf("ledgerctl completion %s: exit %d, %d bytes of script\n%s", shell, r.code, len(r.stdout), r.stderr)
		}
	}
	// What the scripts ask: the commands after a word, the values of -o.
	r := e.run(t, "__complete", "trans")
	if !strings.Contains(r.stdout, "transfer\t") || !strings.Contains(r.stdout, "transfers\t") {
		t.Errorf("completion of trans: %q, want transfer and transfers", r.stdout)
	}
	r = e.run(t, "__complete", "balance", "-o", "")
	for _, v := range []string{"table", "json", "yaml"} {
		if !strings.Contains(r.stdout, v) {
			t.Errorf("completion of -o: %q, want %s", r.stdout, v)
		}
	}
}

// TestVersion prints the build: a version and the Go version, as a line or
// as JSON.
func TestVersion(t *testing.T) {
	t.Parallel()
	e := env{"LEDGER_ADDR": closedAddr(t)}
	r := e.run(t, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ledgerctl ") || !strings.Contains(r.stdout, " go1.") {
		t.Errorf("ledgerctl version: %s\nwant \"ledgerctl VERSION (commit ...) goX\"", r)
	}
	var v struct{ Version, Go string }
	decodeJSON(t, e.run(t, "version", "-o", "json").stdout, &v)
	if v.Version == "" || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("ledgerctl version -o json: %+v", v)
	}
}

// writeJSON is CreateTransfersResponse as -o json prints it.
type writeJSON struct {
	Results []struct {
		ID       string `json:"id"`
		Code     string `json:"code"`
		Position uint64 `json:"position,string"`
		Detail   string `json:"detail"`
	} `json:"results"`
}

// TestWriteOutputFormats: a write answers in JSON (one compact line) and in
// YAML; a refusal still exits 1 after printing it.
func TestWriteOutputFormats(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	r := u.must(t, "-o", "json", "transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD")
	if strings.Count(r.stdout, "\n") != 1 || strings.Contains(r.stdout, ": ") {
		t.Errorf("transfer -o json: %q, want one compact line", r.stdout)
	}
	var w writeJSON
	decodeJSON(t, r.stdout, &w)
	if len(w.Results) != 1 || w.Results[0].ID != "t1" || w.Results[0].Code != "RESULT_CODE_CREATED" || w.Results[0].Position == 0 {
		t.Errorf("transfer -o json: %+v, want t1 CREATED at a position", w)
	}

	r = u.must(t, "transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD", "-o", "yaml")
	var y writeJSON
	if err := yaml.Unmarshal([]byte(r.stdout), &y); err != nil {
		t.Fatalf("transfer -o yaml: %v\n%s", err, r.stdout)
	}
	if len(y.Results) != 1 || y.Results[0].Code != "RESULT_CODE_EXISTS" || y.Results[0].Position != w.Results[0].Position {
		t.Errorf("transfer -o yaml again: %+v\n%s\nwant EXISTS at %d", y, r.stdout, w.Results[0].Position)
	}

	r = u.run(t, "-o", "json", "transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "2.00", "--asset", "USD")
	w = writeJSON{}
	decodeJSON(t, r.stdout, &w)
	if r.code != 1 || len(w.Results) != 1 || w.Results[0].Code != "RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS" || !strings.Contains(r.stderr, "refused") {
		t.Errorf("transfer -o json with other fields: %s\nwant exit 1, EXISTS_WITH_DIFFERENT_FIELDS in the JSON", r)
	}

	r = u.must(t, "-o", "yaml", "account", "open", "--asset", "USD", "carol", "dave")
	var opened writeJSON
	if err := yaml.Unmarshal([]byte(r.stdout), &opened); err != nil || len(opened.Results) != 2 || opened.Results[1].ID != "dave" {
		t.Errorf("account open -o yaml: %v %+v\n%s", err, opened, r.stdout)
	}
}

// TestCompactJSONPages: a paged listing in JSON is one compact object a
// line (JSON Lines).
func TestCompactJSONPages(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	last := u.send(t, "t1", "alice", "bob", "1.00")
	u.send(t, "t2", "alice", "bob", "2.00")
	u.send(t, "t3", "alice", "bob", "3.00")
	r := u.must(t, "-o", "json", "statement", "--min-position", at(last.position+2), "--limit", "1", "--all", "alice")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("statement -o json --limit 1 --all: %d lines, want 3 pages:\n%s", len(lines), r.stdout)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) || strings.Contains(l, ": ") {
			t.Errorf("page %q is not one compact JSON object", l)
		}
	}
}

// TestMultiLegByFlags: several --posting make one transfer whose postings
// apply together, in several assets; one that cannot apply refuses all.
func TestMultiLegByFlags(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "desk-usd", "fees")
	u.must(t, "asset", "define", "EUR", "2")
	u.must(t, "account", "open", "--asset", "EUR", "desk-eur", "alice-eur")
	u.must(t, "account", "open", "--asset", "USD", "--min", "0", "users:1:wallet")

	fx := u.created(t, "transfer", "--id", "fx1", "--posting", "alice:desk-usd:100.00:USD", "--posting", "alice:fees:0.50:USD",
		"--posting", "desk-eur:alice-eur:92.00:EUR")
	for account, want := range map[string]string{"alice": "-100.50", "desk-usd": "100.00", "fees": "0.50", "desk-eur": "-92.00", "alice-eur": "92.00"} {
		if b := u.balanceOf(t, fx.position, account); b[2] != want {
			t.Errorf("after fx1: %s is %v, want %s", account, b, want)
		}
	}
	rows := table(t, u.settled(t, fx.position, "transfers", "get", "fx1").stdout, "POSITION")
	if got := column(rows, "AMOUNT"); strings.Join(got, ",") != "100.00 USD,0.50 USD,92.00 EUR" {
		t.Errorf("transfers get fx1: amounts %v, want its three postings", got)
	}

	// An account id with ':' takes the comma form; the second leg overdraws
	// users:1:wallet, so neither leg applies.
	u.refused(t, "BELOW_MIN_BALANCE", "transfer", "--id", "fx2", "--posting", "alice,users:1:wallet,5.00,USD",
		"--posting", "users:1:wallet,fees,6.00,USD")
	if b := u.balanceOf(t, fx.position, "users:1:wallet"); b[2] != "0.00" {
		t.Errorf("users:1:wallet after the refused fx2: %v, want 0.00", b)
	}
	u.created(t, "transfer", "--id", "fx3", "--posting", "alice,users:1:wallet,5.00,USD")

	u.misused(t, "FROM:TO:AMOUNT:ASSET", "transfer", "--id", "x", "--posting", "alice:bob:1.00")
	u.misused(t, "write FROM,TO,AMOUNT,ASSET", "transfer", "--id", "x", "--posting", "users:1:wallet:bob:1.00:USD")
	u.misused(t, "not both", "transfer", "--id", "x", "--posting", "a:b:1:USD", "--from", "a", "--to", "b", "--amount", "1", "--asset", "USD")
}

// TestTransferFile: a whole CreateTransfersRequest from JSON and from YAML:
// several multi-leg transfers, and an atomic batch that applies all or none.
func TestTransferFile(t *testing.T) {
	t.Parallel()
	u := ledger(t, "treasury", "users:1", "users:2", "fees")
	u.must(t, "account", "open", "--asset", "USD", "--max", "10.00", "capped")
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		testenv.NoError(t, os.WriteFile(path, []byte(text), 0o600))
		return path
	}

	yamlFile := write("payouts.yaml", `
transfers:
  - id: payout-1
    reference: run-7
    postings:
      - {debit_account: treasury, credit_account: "users:1", amount: "5.00", asset: USD}
      - {debit_account: treasury, credit_account: fees, amount: "0.10", asset: USD}
  - id: payout-2
    metadata: {run: "7"}
    postings:
      - {debitAccount: treasury, creditAccount: "users:2", amount: "7.00", asset: USD}
`)
	got := items(t, u.must(t, "transfer", "--file", yamlFile).stdout)
	if len(got) != 2 || got[0].id != "payout-1" || got[0].code != "CREATED" || got[1].id != "payout-2" || got[1].code != "CREATED" {
		t.Fatalf("transfer --file payouts.yaml: %v, want payout-1 and payout-2 CREATED", got)
	}
	if b := u.balanceOf(t, got[1].position, "treasury"); b[2] != "-12.10" {
		t.Errorf("treasury after the payouts: %v, want -12.10", b)
	}

	// Atomic: the second item exceeds capped's maximum, so the first does
	// not apply either.
	jsonFile := write("batch.json", `{"atomic": true, "transfers": [
		{"id": "a1", "postings": [{"debit_account": "treasury", "credit_account": "capped", "amount": "6.00", "asset": "USD"}]},
		{"id": "a2", "postings": [{"debit_account": "treasury", "credit_account": "capped", "amount": "6.00", "asset": "USD"}]}]}`)
	r := u.run(t, "-o", "json", "transfer", "--file", jsonFile)
	var w writeJSON
	decodeJSON(t, r.stdout, &w)
	if r.code != 1 || len(w.Results) != 2 || w.Results[0].Code != "RESULT_CODE_LINKED_ITEM_FAILED" || w.Results[1].Code != "RESULT_CODE_ABOVE_MAX_BALANCE" {
		t.Errorf("transfer --file batch.json (atomic): %s\nwant exit 1, a1 LINKED_ITEM_FAILED, a2 ABOVE_MAX_BALANCE", r)
	}
	if b := u.balanceOf(t, got[1].position, "capped"); b[2] != "0.00" {
		t.Errorf("capped after the refused atomic batch: %v, want 0.00", b)
	}

	u.misused(t, "unknown field", "transfer", "--file", write("typo.json", `{"transfers": [{"id": "x", "postngs": []}]}`))
	u.misused(t, "holds no transfers", "transfer", "--file", write("empty.yaml", "atomic: true\n"))
	u.misused(t, "not with --id", "transfer", "--file", yamlFile, "--id", "x")
	u.misused(t, "--ledger says", "transfer", "--file", write("other.json", `{"ledger": "elsewhere", "transfers": [{"id": "x"}]}`))
	u.misused(t, "no such file", "transfer", "--file", filepath.Join(dir, "absent.json"))
}
