package ctl_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/internal/testenv"
)

// settleTimeout bounds the wait for a projection to reach a position.
const settleTimeout = 20 * time.Second

// ledger starts ledgerd, defines USD with scale 2 in a fresh ledger and opens
// the accounts in it, credit-normal and without bounds.
func ledger(t *testing.T, accounts ...string) user {
	t.Helper()
	u := user{ledger: testenv.Name(t)}
	u.addr, u.key = start(t)
	u.must(t, "asset", "define", "USD", "2")
	if len(accounts) > 0 {
		u.must(t, append([]string{"account", "open", "--asset", "USD"}, accounts...)...)
	}
	return u
}

// created runs a command on one item and fails the test unless it was CREATED
// at a position.
func (u user) created(t *testing.T, args ...string) item {
	t.Helper()
	got := one(t, u.must(t, args...).stdout)
	if got.code != "CREATED" || got.position == 0 {
		t.Fatalf("ledgerctl %s: %q, want CREATED at a position", strings.Join(args, " "), got.line)
	}
	return got
}

// send runs a transfer from one account to another of USD.
func (u user) send(t *testing.T, id, from, to, amount string, more ...string) item {
	t.Helper()
	return u.created(t, append([]string{"transfer", "--id", id, "--from", from, "--to", to, "--amount", amount,
		"--asset", "USD"}, more...)...)
}

// refused runs a command on one item and fails the test unless the item got
// code, the command exited 1 and stderr says it was refused.
func (u user) refused(t *testing.T, code string, args ...string) item {
	t.Helper()
	r := u.run(t, args...)
	got := one(t, r.stdout)
	if r.code != 1 || got.code != code || !strings.Contains(r.stderr, "refused") {
		t.Errorf("ledgerctl %s: %s\nwant exit 1, %s, and stderr saying it was refused", strings.Join(args, " "), r, code)
	}
	return got
}

// misused runs a command and fails the test unless it is a usage error: exit
// 2, the usage and says on stderr, nothing on stdout.
func (u user) misused(t *testing.T, says string, args ...string) {
	t.Helper()
	r := u.run(t, args...)
	if r.code != 2 || !strings.Contains(r.stderr, "Usage:") || !strings.Contains(r.stderr, says) || r.stdout != "" {
		t.Errorf("ledgerctl %s: %s\nwant exit 2, usage on stderr saying %q, nothing on stdout", strings.Join(args, " "), r, says)
	}
}

// settled runs a query until it exits 0 with an answer as of pos or later:
// for the queries that take no --min-position.
func (u user) settled(t *testing.T, pos uint64, args ...string) result {
	t.Helper()
	var r result
	testenv.Eventually(t, settleTimeout, func() error {
		r = u.run(t, args...)
		if r.code != 0 {
			return fmt.Errorf("ledgerctl %s: %s", strings.Join(args, " "), r)
		}
		if got, ok := asOf(r.stdout); !ok || got < pos {
			return fmt.Errorf("ledgerctl %s: as of %d, want %d or later:\n%s", strings.Join(args, " "), got, pos, r.stdout)
		}
		return nil
	})
	return r
}

// at formats a position for --min-position, --as-of and friends.
func at(pos uint64) string { return strconv.FormatUint(pos, 10) }

// asOf is the position in the output's last "as of position N".
func asOf(out string) (uint64, bool) {
	const marker = "as of position "
	i := strings.LastIndex(out, marker)
	if i < 0 {
		return 0, false
	}
	digits := out[i+len(marker):]
	if end := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
		digits = digits[:end]
	}
	pos, err := strconv.ParseUint(digits, 10, 64)
	return pos, err == nil
}

// headerCell is one header name: a run of words with single spaces.
var headerCell = regexp.MustCompile(`\S+(?: \S+)*`)

// row is a table row by header name.
type row map[string]string

// table parses a right-aligned table: its header is the first line that
// starts with first, its rows the lines after it up to the next line that is
// not a row ("as of position", "closing balance"). A cell ends where its
// header name ends, so cells may be empty or hold spaces.
func table(t *testing.T, out, first string) []row {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	h := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), first) })
	if h < 0 {
		t.Fatalf("output %q: no header starting with %q", out, first)
	}
	header := lines[h]
	spans := headerCell.FindAllStringIndex(header, -1)
	var rows []row
	for _, line := range lines[h+1:] {
		if strings.HasPrefix(line, "as of position") || strings.HasPrefix(line, "closing balance") {
			break
		}
		if len(line) != len(header) {
			t.Fatalf("table row %q is not as wide as its header %q", line, header)
		}
		r, start := row{}, 0
		for _, sp := range spans {
			r[header[sp[0]:sp[1]]] = strings.TrimSpace(line[start:sp[1]])
			start = sp[1]
		}
		rows = append(rows, r)
	}
	return rows
}

// byKey indexes rows by a column, failing on a repeated key.
func byKey(t *testing.T, rows []row, column string) map[string]row {
	t.Helper()
	m := map[string]row{}
	for _, r := range rows {
		if _, dup := m[r[column]]; dup {
			t.Fatalf("rows %v: %s %q twice", rows, column, r[column])
		}
		m[r[column]] = r
	}
	return m
}

// check compares the named cells of a row with want.
func check(t *testing.T, what string, r row, want row) {
	t.Helper()
	if r == nil {
		t.Errorf("%s: no row, want %v", what, want)
		return
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s: %s %q, want %q (row %v)", what, k, r[k], v, r)
		}
	}
}

// balanceOf returns an account's row of the balance table once the balances
// projection has reached pos.
func (u user) balanceOf(t *testing.T, pos uint64, account string) []string {
	t.Helper()
	rows, _ := balances(t, u.must(t, "balance", "--min-position", at(pos), account).stdout)
	if rows[account] == nil {
		t.Fatalf("balance %s: rows %v, want its row", account, rows)
	}
	return rows[account]
}

// TestAccountBounds: a bound applies from now on; an account outside it can
// still move back toward it; an omitted bound is removed.
func TestAccountBounds(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	u.send(t, "t1", "alice", "bob", "10.00")

	// alice is overdrawn; a min of 0 is set anyway.
	if got := u.created(t, "account", "bounds", "--min", "0", "alice"); got.id != "alice" {
		t.Errorf("account bounds --min 0 alice: %q, want CREATED alice", got.line)
	}
	u.refused(t, "BELOW_MIN_BALANCE", "transfer", "--id", "t2", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD")
	u.send(t, "t3", "bob", "alice", "4.00") // toward the bound

	u.created(t, "account", "bounds", "alice") // no --min: the bound is removed
	created := u.send(t, "t2", "alice", "bob", "1.00")
	if b := u.balanceOf(t, created.position, "alice"); b[2] != "-7.00" {
		t.Errorf("balance alice: %v, want -7.00 after 10.00 out, 4.00 in and 1.00 out", b)
	}

	u.created(t, "account", "bounds", "--max", "7.00", "bob") // bob holds 7.00: at the bound
	u.refused(t, "ABOVE_MAX_BALANCE", "transfer", "--id", "t4", "--from", "alice", "--to", "bob", "--amount", "0.01", "--asset", "USD")
	u.send(t, "t5", "bob", "alice", "0.01")

	opened := items(t, u.must(t, "account", "bounds", "--min", "-100", "alice", "bob").stdout)
	if len(opened) != 2 || opened[0].id != "alice" || opened[1].id != "bob" || opened[0].code != "CREATED" || opened[1].code != "CREATED" {
		t.Errorf("account bounds alice bob: %v, want CREATED alice, CREATED bob", opened)
	}
	u.send(t, "t4", "alice", "bob", "0.01") // bob's max went with the bounds that omitted it

	u.refused(t, "INVALID_FIELD", "account", "bounds", "--min", "5.00", "--max", "1.00", "bob")
	u.refused(t, "INVALID_AMOUNT", "account", "bounds", "--min", "0.001", "bob") // USD has 2 decimals
	u.refused(t, "ACCOUNT_NOT_FOUND", "account", "bounds", "--min", "0", "nobody")
	u.misused(t, "at least one ID", "account", "bounds", "--min", "0")
}

// TestAccountClose: a closed account takes no transfer; closing it again is
// EXISTS at the close; an account holding pending amounts cannot close.
func TestAccountClose(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "carol", "dave")
	u.send(t, "t1", "alice", "carol", "5.00")

	closed := u.created(t, "account", "close", "carol")
	u.refused(t, "ACCOUNT_CLOSED", "transfer", "--id", "t2", "--from", "alice", "--to", "carol", "--amount", "1.00", "--asset", "USD")
	u.refused(t, "ACCOUNT_CLOSED", "transfer", "--id", "t3", "--from", "carol", "--to", "alice", "--amount", "1.00", "--asset", "USD")
	if again := one(t, u.must(t, "account", "close", "carol").stdout); again.code != "EXISTS" || again.position != closed.position {
		t.Errorf("account close carol again: %q, want EXISTS at position %d", again.line, closed.position)
	}
	u.refused(t, "ACCOUNT_CLOSED", "account", "bounds", "--min", "0", "carol")
	if b := u.balanceOf(t, closed.position, "carol"); b[2] != "5.00" {
		t.Errorf("balance of closed carol: %v, want 5.00 still", b)
	}

	u.send(t, "h1", "alice", "dave", "2.00", "--pending")
	u.refused(t, "ACCOUNT_HAS_PENDING", "account", "close", "dave")
	r := u.run(t, "account", "close", "carol", "dave")
	got := items(t, r.stdout)
	if r.code != 1 || len(got) != 2 || got[0].code != "EXISTS" || got[1].code != "ACCOUNT_HAS_PENDING" || !strings.Contains(r.stderr, "1 of 2 items") {
		t.Errorf("account close carol dave: %s\nwant exit 1, EXISTS carol, ACCOUNT_HAS_PENDING dave, 1 of 2 refused", r)
	}
	u.created(t, "void", "--id", "v1", "--pending-id", "h1")
	u.created(t, "account", "close", "dave")

	u.refused(t, "ACCOUNT_NOT_FOUND", "account", "close", "nobody")
	u.misused(t, "at least one ID", "account", "close")
}

// TestPendingPostVoid places holds and resolves them in full, in part and
// not at all, and is refused a second resolution.
func TestPendingPostVoid(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	hold := func(id, amount string) item {
		t.Helper()
		return u.send(t, id, "alice", "bob", amount, "--pending", "--timeout", "3600")
	}

	h1 := hold("h1", "10.00")
	b := u.balanceOf(t, h1.position, "alice")
	if b[2] != "0.00" || b[3] != "-10.00" || b[6] != "10.00" {
		t.Errorf("balance alice with h1 held: %v, want balance 0.00, available -10.00, pending debits 10.00", b)
	}
	rows := byKey(t, table(t, u.settled(t, h1.position, "transfers", "get", "h1").stdout, "POSITION"), "ID")
	check(t, "transfers get h1", rows["h1"], row{"KIND": "pending", "STATUS": "pending", "AMOUNT": "10.00 USD", "REMAINING": "10.00"})
	var views struct {
		Transfers []struct {
			ID         string    `json:"id"`
			RecordedAt time.Time `json:"recorded_at"`
			ExpiresAt  time.Time `json:"expires_at"`
		} `json:"transfers"`
	}
	decodeJSON(t, u.must(t, "-o", "json", "transfers", "get", "h1").stdout, &views)
	if len(views.Transfers) != 1 {
		t.Fatalf("transfers get -o json h1: %+v, want h1", views)
	}
	if d := views.Transfers[0].ExpiresAt.Sub(views.Transfers[0].RecordedAt); d < 3599*time.Second || d > 3601*time.Second {
		t.Errorf("h1 expires %v after it was recorded, want 3600s (--timeout 3600)", d)
	}

	post := []string{"post", "--id", "p1", "--pending-id", "h1"}
	p1 := u.created(t, post...)
	if again := one(t, u.must(t, post...).stdout); again.code != "EXISTS" || again.position != p1.position {
		t.Errorf("post p1 again: %q, want EXISTS at position %d", again.line, p1.position)
	}
	if b := u.balanceOf(t, p1.position, "alice"); b[2] != "-10.00" || b[3] != "-10.00" || b[6] != "0.00" {
		t.Errorf("balance alice after p1: %v, want balance and available -10.00, nothing pending", b)
	}
	u.refused(t, "PENDING_ALREADY_RESOLVED", "post", "--id", "p2", "--pending-id", "h1")
	u.refused(t, "PENDING_ALREADY_RESOLVED", "void", "--id", "v1", "--pending-id", "h1")
	u.refused(t, "EXISTS_WITH_DIFFERENT_FIELDS", "post", "--id", "p1", "--pending-id", "h1", "--amount", "1.00")

	// In part: the rest is released.
	hold("h2", "10.00")
	u.refused(t, "AMOUNT_EXCEEDS_PENDING", "post", "--id", "p3", "--pending-id", "h2", "--amount", "10.01")
	u.refused(t, "INVALID_FIELD", "post", "--id", "p3", "--pending-id", "h2", "--amount", "1.00", "--amount", "2.00")
	p3 := u.created(t, "post", "--id", "p3", "--pending-id", "h2", "--amount", "4.00")
	if b := u.balanceOf(t, p3.position, "alice"); b[2] != "-14.00" || b[3] != "-14.00" || b[6] != "0.00" {
		t.Errorf("balance alice after 4.00 of h2 posted: %v, want balance and available -14.00, nothing pending", b)
	}

	// Not at all: a void.
	hold("h3", "5.00")
	v3 := u.created(t, "void", "--id", "v3", "--pending-id", "h3")
	if again := one(t, u.must(t, "void", "--id", "v3", "--pending-id", "h3").stdout); again.code != "EXISTS" || again.position != v3.position {
		t.Errorf("void v3 again: %q, want EXISTS at position %d", again.line, v3.position)
	}
	u.refused(t, "PENDING_ALREADY_RESOLVED", "post", "--id", "p4", "--pending-id", "h3")
	if b := u.balanceOf(t, v3.position, "alice"); b[2] != "-14.00" || b[3] != "-14.00" {
		t.Errorf("balance alice after h3 voided: %v, want -14.00 as before h3", b)
	}

	// With "0": nothing posted, everything released.
	hold("h4", "1.00")
	p4 := u.created(t, "post", "--id", "p4", "--pending-id", "h4", "--amount", "0")

	rows = byKey(t, table(t, u.settled(t, p4.position, "transfers", "get", "h1", "p1", "h2", "p3", "h3", "v3").stdout, "POSITION"), "ID")
	check(t, "h1", rows["h1"], row{"KIND": "pending", "STATUS": "pending_posted", "REMAINING": "0.00", "LINKS": "resolved by p1"})
	check(t, "p1", rows["p1"], row{"POSITION": at(p1.position), "KIND": "post", "STATUS": "posted", "AMOUNT": "10.00 USD", "LINKS": "pending h1"})
	check(t, "h2", rows["h2"], row{"STATUS": "pending_posted", "AMOUNT": "10.00 USD", "REMAINING": "0.00", "LINKS": "resolved by p3"})
	check(t, "p3", rows["p3"], row{"KIND": "post", "AMOUNT": "4.00 USD", "LINKS": "pending h2"})
	check(t, "h3", rows["h3"], row{"STATUS": "voided", "REMAINING": "0.00", "LINKS": "resolved by v3"})
	check(t, "v3", rows["v3"], row{"KIND": "void", "STATUS": "posted", "AMOUNT": "5.00 USD", "LINKS": "pending h3"})

	u.refused(t, "PENDING_NOT_FOUND", "post", "--id", "p5", "--pending-id", "nothing")
	u.refused(t, "PENDING_NOT_FOUND", "void", "--id", "v5", "--pending-id", "t-none")
	u.misused(t, "--pending-id", "post", "--id", "p6")
	u.misused(t, "--pending-id", "void", "--id", "v6")
	u.misused(t, "--pending", "transfer", "--id", "h9", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD", "--timeout", "60")
	// 2^32+60 s would reach ledgerd as 60 s.
	u.misused(t, "--timeout", "transfer", "--id", "h9", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD",
		"--pending", "--timeout", "4294967356")
	u.refused(t, "INVALID_FIELD", "transfer", "--id", "h9", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD",
		"--pending", "--timeout", strconv.Itoa(367*24*3600))
}

// decodeJSON parses the output of -o json: one document.
func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("output is not a JSON document: %v\n%s", err, out)
	}
}

// decodePages parses the output of -o json for a paged query: one document
// per page.
func decodePages[T any](t *testing.T, out string) []T {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	var pages []T
	for {
		var p T
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pages
		}
		if err != nil {
			t.Fatalf("output is not a stream of JSON documents: %v\n%s", err, out)
		}
		pages = append(pages, p)
	}
}

// TestReverse undoes a transfer in part, then the rest, and a post of a hold;
// reversals never exceed the original.
func TestReverse(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	u.send(t, "t1", "alice", "bob", "10.00")

	reverse := []string{"reverse", "--id", "r1", "--transfer-id", "t1", "--amount", "3.00"}
	r1 := u.created(t, reverse...)
	if again := one(t, u.must(t, reverse...).stdout); again.code != "EXISTS" || again.position != r1.position {
		t.Errorf("reverse r1 again: %q, want EXISTS at position %d", again.line, r1.position)
	}
	if b := u.balanceOf(t, r1.position, "alice"); b[2] != "-7.00" {
		t.Errorf("balance alice after 3.00 of 10.00 reversed: %v, want -7.00", b)
	}
	rows := byKey(t, table(t, u.settled(t, r1.position, "transfers", "get", "t1").stdout, "POSITION"), "ID")
	check(t, "t1 reversed in part", rows["t1"], row{"STATUS": "partially_reversed", "REVERSED": "3.00", "LINKS": "reversed by r1"})

	u.refused(t, "AMOUNT_EXCEEDS_REMAINING", "reverse", "--id", "r2", "--transfer-id", "t1", "--amount", "7.01")
	r2 := u.created(t, "reverse", "--id", "r2", "--transfer-id", "t1") // all that is left
	rows2, _ := balances(t, u.must(t, "balance", "--min-position", at(r2.position), "alice", "bob").stdout)
	if rows2["alice"] == nil || rows2["alice"][2] != "0.00" || rows2["bob"] == nil || rows2["bob"][2] != "0.00" {
		t.Errorf("balance after t1 reversed in full: %v, want alice and bob 0.00", rows2)
	}
	u.refused(t, "ALREADY_REVERSED", "reverse", "--id", "r3", "--transfer-id", "t1")
	u.refused(t, "ALREADY_REVERSED", "reverse", "--id", "r3", "--transfer-id", "t1", "--amount", "0.01")
	u.refused(t, "NOT_REVERSIBLE", "reverse", "--id", "r3", "--transfer-id", "r1")
	u.refused(t, "TRANSFER_NOT_FOUND", "reverse", "--id", "r3", "--transfer-id", "nothing")
	u.refused(t, "EXISTS_WITH_DIFFERENT_FIELDS", "reverse", "--id", "r1", "--transfer-id", "t1", "--amount", "2.00")

	// A post can be reversed; the hold it resolved cannot.
	u.send(t, "h1", "alice", "bob", "5.00", "--pending")
	u.created(t, "post", "--id", "p1", "--pending-id", "h1")
	u.refused(t, "NOT_REVERSIBLE", "reverse", "--id", "r4", "--transfer-id", "h1")
	r4 := u.created(t, "reverse", "--id", "r4", "--transfer-id", "p1", "--amount", "5.00")

	rows = byKey(t, table(t, u.settled(t, r4.position, "transfers", "get", "t1", "r1", "r2", "p1", "r4").stdout, "POSITION"), "ID")
	check(t, "t1", rows["t1"], row{"KIND": "transfer", "STATUS": "reversed", "REVERSED": "10.00", "LINKS": "reversed by r1,r2"})
	check(t, "r1", rows["r1"], row{"KIND": "reversal", "STATUS": "posted", "DEBIT": "bob", "CREDIT": "alice",
		"AMOUNT": "3.00 USD", "LINKS": "reverses t1"})
	check(t, "r2", rows["r2"], row{"KIND": "reversal", "AMOUNT": "7.00 USD", "LINKS": "reverses t1"})
	check(t, "p1", rows["p1"], row{"KIND": "post", "STATUS": "reversed", "REVERSED": "5.00", "LINKS": "pending h1; reversed by r4"})
	check(t, "r4", rows["r4"], row{"KIND": "reversal", "LINKS": "reverses p1"})

	u.misused(t, "--transfer-id", "reverse", "--id", "r5")
}

// TestEffectiveAt: a transfer's business time, in RFC 3339 with any offset,
// shown in UTC; a malformed one is a usage error, one out of the ledger's
// window a refusal.
func TestEffectiveAt(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	when := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	east := when.In(time.FixedZone("UTC+2", 2*60*60)).Format(time.RFC3339)
	t1 := u.send(t, "t1", "alice", "bob", "1.00", "--effective-at", east)

	lines := table(t, u.must(t, "statement", "--min-position", at(t1.position), "alice").stdout, "POSITION")
	if len(lines) != 1 {
		t.Fatalf("statement alice: %v, want t1's line", lines)
	}
	check(t, "statement line of t1", lines[0], row{"TRANSFER": "t1", "EFFECTIVE": when.Format(time.RFC3339)})
	if lines[0]["RECORDED"] == lines[0]["EFFECTIVE"] {
		t.Errorf("statement line of t1: recorded %s, the effective time: want now", lines[0]["RECORDED"])
	}

	same := []string{"transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD"}
	if again := one(t, u.must(t, append(same, "--effective-at", when.Format(time.RFC3339))...).stdout); again.code != "EXISTS" {
		t.Errorf("t1 again with its effective time in UTC: %q, want EXISTS", again.line)
	}
	u.refused(t, "EXISTS_WITH_DIFFERENT_FIELDS", append(same, "--effective-at", when.Add(time.Second).Format(time.RFC3339))...)

	t2 := []string{"transfer", "--id", "t2", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD", "--effective-at"}
	u.refused(t, "INVALID_FIELD", append(t2, time.Now().Add(-200*24*time.Hour).UTC().Format(time.RFC3339))...)
	u.refused(t, "INVALID_FIELD", append(t2, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))...)
	for _, bad := range []string{"yesterday", "2026-11-01", "2026-11-01T09:00:00", "2026-11-01 09:00:00Z"} {
		u.misused(t, "--effective-at", append(t2, bad)...)
	}
}

// balanceJSON is GetBalancesResponse as -o json prints it.
type balanceJSON struct {
	Balances []struct {
		Account      string `json:"account"`
		Asset        string `json:"asset"`
		Balance      string `json:"balance"`
		Available    string `json:"available"`
		DebitsPosted string `json:"debits_posted"`
	} `json:"balances"`
	Position uint64 `json:"position,string"`
}

// TestBalanceQueries: --strong from the writer, --as-of a past position,
// -o json.
func TestBalanceQueries(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	t1 := u.send(t, "t1", "alice", "bob", "10.00")
	t2 := u.send(t, "t2", "alice", "bob", "5.00")

	// No --min-position: the writer has every acknowledged command.
	rows, pos := balances(t, u.must(t, "balance", "--strong", "alice", "bob").stdout)
	if rows["alice"] == nil || rows["alice"][2] != "-15.00" || rows["bob"] == nil || rows["bob"][2] != "15.00" || pos < t2.position {
		t.Errorf("balance --strong: %v as of %d, want alice -15.00, bob 15.00 as of %d or later", rows, pos, t2.position)
	}

	rows, pos = balances(t, u.must(t, "balance", "--as-of", at(t1.position), "alice", "bob").stdout)
	if pos != t1.position {
		t.Errorf("balance --as-of %d: as of position %d", t1.position, pos)
	}
	if rows["alice"] == nil || rows["alice"][2] != "-10.00" || rows["alice"][8] != at(t1.position) || rows["bob"] == nil || rows["bob"][2] != "10.00" {
		t.Errorf("balance --as-of %d: %v, want alice -10.00 and bob 10.00, last moved at %d", t1.position, rows, t1.position)
	}
	// Position 1 defined USD: alice was not open yet.
	if r := u.run(t, "balance", "--as-of", "1", "alice"); r.code != 1 || !strings.Contains(r.stderr, "no such account: alice") {
		t.Errorf("balance --as-of 1 alice: %s\nwant exit 1: no such account", r)
	}
	u.misused(t, "--as-of", "balance", "--strong", "--as-of", at(t1.position), "alice")

	var got balanceJSON
	decodeJSON(t, u.must(t, "-o", "json", "balance", "--min-position", at(t2.position), "alice", "bob").stdout, &got)
	if got.Position < t2.position || len(got.Balances) != 2 {
		t.Fatalf("balance -o json: %+v, want alice and bob as of %d or later", got, t2.position)
	}
	if b := got.Balances[0]; b.Account != "alice" || b.Asset != "USD" || b.Balance != "-15.00" || b.Available != "-15.00" || b.DebitsPosted != "15.00" {
		t.Errorf("balance -o json: alice %+v, want USD -15.00, 15.00 debited", b)
	}
	if b := got.Balances[1]; b.Account != "bob" || b.Balance != "15.00" {
		t.Errorf("balance -o json: bob %+v, want 15.00", b)
	}

	// An unknown account fails the command in JSON too, after the answer.
	r := u.run(t, "-o", "json", "balance", "--min-position", at(t2.position), "alice", "nobody")
	if r.code != 1 || !strings.Contains(r.stderr, "no such account: nobody") {
		t.Errorf("balance -o json alice nobody: %s\nwant exit 1 naming nobody", r)
	}
	got = balanceJSON{}
	decodeJSON(t, r.stdout, &got)
	if len(got.Balances) != 1 || got.Balances[0].Account != "alice" {
		t.Errorf("balance -o json alice nobody: %+v, want alice's balance", got)
	}
}

// statementTable is a statement as the table prints it.
type statementTable struct {
	opening, closing string
	lines            []row
	position         uint64
	more             bool // "(more: --all)"
}

func parseStatement(t *testing.T, out string) statementTable {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	_, opening, ok := strings.Cut(lines[0], "  opening balance ")
	rest, ok2 := strings.CutPrefix(lines[len(lines)-1], "closing balance ")
	closing, _, ok3 := strings.Cut(rest, ",")
	pos, ok4 := asOf(rest)
	if !ok || !ok2 || !ok3 || !ok4 {
		t.Fatalf("statement %q: want \"ACCOUNT (ASSET)  opening balance X\", a table, \"closing balance Y, as of position N\"", out)
	}
	return statementTable{opening: opening, closing: closing, lines: table(t, out, "POSITION"), position: pos,
		more: strings.HasSuffix(rest, "  (more: --all)")}
}

// column is one column of rows, in order.
func column(rows []row, name string) []string {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		if r[name] != "" {
			out = append(out, r[name])
		}
	}
	return out
}

// statementJSON is ListStatementResponse as -o json prints it.
type statementJSON struct {
	Account        string `json:"account"`
	Asset          string `json:"asset"`
	OpeningBalance string `json:"opening_balance"`
	ClosingBalance string `json:"closing_balance"`
	NextCursor     string `json:"next_cursor"`
	Position       uint64 `json:"position,string"`
	Lines          []struct {
		TransferID     string `json:"transfer_id"`
		Amount         string `json:"amount"`
		RunningBalance string `json:"running_balance"`
	} `json:"lines"`
}

// TestStatement: opening balance, lines with running balances, closing
// balance; --from, --pending, pages followed with --all, -o json.
func TestStatement(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	t1 := u.send(t, "t1", "alice", "bob", "10.00", "--reference", "rent")
	t2 := u.send(t, "t2", "bob", "alice", "3.00")
	t3 := u.send(t, "t3", "alice", "bob", "1.50")
	h1 := u.send(t, "h1", "alice", "bob", "2.00", "--pending")
	minPos := at(h1.position)

	s := parseStatement(t, u.must(t, "statement", "--min-position", minPos, "alice").stdout)
	if s.opening != "0.00" || s.closing != "-8.50" || s.position < h1.position || s.more {
		t.Errorf("statement alice: opening %s, closing %s, as of %d, more %v; want 0.00, -8.50, %d or later, no more",
			s.opening, s.closing, s.position, s.more, h1.position)
	}
	if got := column(s.lines, "TRANSFER"); !slices.Equal(got, []string{"t1", "t2", "t3"}) {
		t.Fatalf("statement alice: transfers %v, want t1 t2 t3 (no hold without --pending)", got)
	}
	check(t, "t1", s.lines[0], row{"POSITION": at(t1.position), "KIND": "TransferCommitted", "COUNTER": "bob",
		"DEBIT": "10.00", "CREDIT": "", "BALANCE": "-10.00", "REFERENCE": "rent"})
	check(t, "t2", s.lines[1], row{"POSITION": at(t2.position), "DEBIT": "", "CREDIT": "3.00", "BALANCE": "-7.00"})
	check(t, "t3", s.lines[2], row{"POSITION": at(t3.position), "DEBIT": "1.50", "BALANCE": "-8.50"})

	s = parseStatement(t, u.must(t, "statement", "--min-position", minPos, "--from", at(t2.position), "alice").stdout)
	if got := column(s.lines, "TRANSFER"); s.opening != "-10.00" || s.closing != "-8.50" || !slices.Equal(got, []string{"t2", "t3"}) {
		t.Errorf("statement --from %d: opening %s, closing %s, transfers %v; want -10.00, -8.50, t2 t3", t2.position, s.opening, s.closing, got)
	}

	s = parseStatement(t, u.must(t, "statement", "--min-position", minPos, "--pending", "alice").stdout)
	if got := column(s.lines, "TRANSFER"); !slices.Equal(got, []string{"t1", "t2", "t3", "h1"}) {
		t.Fatalf("statement --pending: transfers %v, want t1 t2 t3 h1", got)
	}
	check(t, "h1", s.lines[3], row{"KIND": "TransferPending", "DEBIT": "2.00 (pending)", "BALANCE": "-8.50"})

	s = parseStatement(t, u.must(t, "statement", "--min-position", minPos, "--limit", "2", "alice").stdout)
	if got := column(s.lines, "TRANSFER"); !slices.Equal(got, []string{"t1", "t2"}) || !s.more || s.closing != "-8.50" {
		t.Errorf("statement --limit 2: transfers %v, more %v, closing %s; want t1 t2, more, -8.50 (of the whole range)", got, s.more, s.closing)
	}
	s = parseStatement(t, u.must(t, "statement", "--min-position", minPos, "--all", "--limit", "2", "--pending", "alice").stdout)
	if got := column(s.lines, "TRANSFER"); !slices.Equal(got, []string{"t1", "t2", "t3", "h1"}) || s.more {
		t.Errorf("statement --all --limit 2 --pending: transfers %v, more %v; want every line once: t1 t2 t3 h1, no more", got, s.more)
	}
	if got := column(s.lines, "BALANCE"); !slices.Equal(got, []string{"-10.00", "-7.00", "-8.50", "-8.50"}) {
		t.Errorf("statement --all --limit 2 --pending: running balances %v, want -10.00 -7.00 -8.50 -8.50", got)
	}

	pages := decodePages[statementJSON](t, u.must(t, "-o", "json", "statement", "--min-position", minPos, "--all", "--limit", "2", "alice").stdout)
	var ids, running []string
	for i, p := range pages {
		if p.Account != "alice" || p.Asset != "USD" || p.OpeningBalance != "0.00" || p.ClosingBalance != "-8.50" || p.Position != pages[0].Position {
			t.Errorf("statement -o json page %d: %+v, want alice USD from 0.00 to -8.50 as of %d", i, p, pages[0].Position)
		}
		if last := i == len(pages)-1; last != (p.NextCursor == "") {
			t.Errorf("statement -o json page %d of %d: next cursor %q", i, len(pages), p.NextCursor)
		}
		for _, l := range p.Lines {
			ids, running = append(ids, l.TransferID), append(running, l.RunningBalance)
		}
	}
	if len(pages) != 2 || !slices.Equal(ids, []string{"t1", "t2", "t3"}) || !slices.Equal(running, []string{"-10.00", "-7.00", "-8.50"}) {
		t.Errorf("statement -o json --all --limit 2: %d pages, transfers %v, running balances %v; want 2 pages, t1 t2 t3, -10.00 -7.00 -8.50",
			len(pages), ids, running)
	}

	if r := u.run(t, "statement", "--min-position", minPos, "nobody"); r.code != 1 || r.stdout != "" {
		t.Errorf("statement nobody: %s\nwant exit 1 and no statement", r)
	}
	u.misused(t, "one ACCOUNT", "statement")
	u.misused(t, "one ACCOUNT", "statement", "alice", "bob")
	u.misused(t, "--limit", "statement", "--limit", "1001", "alice")
	// 2^32+1 would reach ledgerd as 1.
	u.misused(t, "--limit", "statement", "--limit", "4294967297", "alice")
}

// TestTransfersQueries: transfers get and list, by account, status and
// reference, in pages.
func TestTransfersQueries(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob", "carol")
	u.send(t, "t1", "alice", "bob", "1.00", "--reference", "r-a")
	u.send(t, "t2", "bob", "carol", "2.00")
	u.send(t, "h1", "alice", "carol", "3.00", "--pending")
	last := u.send(t, "t3", "carol", "alice", "4.00", "--reference", "r-a").position

	list := func(args ...string) []string {
		t.Helper()
		out := u.settled(t, last, append([]string{"transfers", "list"}, args...)...).stdout
		return column(table(t, out, "POSITION"), "ID")
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"t1", "t2", "h1", "t3"}},
		{[]string{"--account", "alice"}, []string{"t1", "h1", "t3"}},
		{[]string{"--account", "bob"}, []string{"t1", "t2"}},
		{[]string{"--status", "pending"}, []string{"h1"}},
		{[]string{"--status", "posted", "--account", "carol"}, []string{"t2", "t3"}},
		{[]string{"--reference", "r-a"}, []string{"t1", "t3"}},
		{[]string{"--limit", "1"}, []string{"t1"}},
		{[]string{"--limit", "1", "--all"}, []string{"t1", "t2", "h1", "t3"}},
		{[]string{"--account", "alice", "--limit", "2", "--all"}, []string{"t1", "h1", "t3"}},
	} {
		if got := list(c.args...); !slices.Equal(got, c.want) {
			t.Errorf("transfers list %q: %v, want %v", c.args, got, c.want)
		}
	}

	type listJSON struct {
		Transfers []struct {
			ID     string `json:"id"`
			Kind   string `json:"kind"`
			Status string `json:"status"`
		} `json:"transfers"`
	}
	var ids []string
	for _, p := range decodePages[listJSON](t, u.must(t, "-o", "json", "transfers", "list", "--limit", "1", "--all").stdout) {
		for _, v := range p.Transfers {
			ids = append(ids, v.ID)
			if v.ID == "h1" && (v.Kind != "TRANSFER_KIND_PENDING" || v.Status != "TRANSFER_STATUS_PENDING") {
				t.Errorf("transfers list -o json: h1 %+v, want a pending hold", v)
			}
		}
	}
	if !slices.Equal(ids, []string{"t1", "t2", "h1", "t3"}) {
		t.Errorf("transfers list -o json --limit 1 --all: %v, want t1 t2 h1 t3", ids)
	}

	rows := byKey(t, table(t, u.settled(t, last, "transfers", "get", "t3", "h1").stdout, "POSITION"), "ID")
	check(t, "t3", rows["t3"], row{"POSITION": at(last), "KIND": "transfer", "STATUS": "posted", "DEBIT": "carol", "CREDIT": "alice",
		"AMOUNT": "4.00 USD", "REMAINING": "", "REVERSED": "0.00", "LINKS": ""})
	check(t, "h1", rows["h1"], row{"KIND": "pending", "STATUS": "pending", "REMAINING": "3.00", "REVERSED": ""})

	// An unknown id fails the command, like an unknown account in balance.
	r := u.run(t, "transfers", "get", "t1", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "no such transfer: nope") || strings.Contains(r.stderr, "t1") {
		t.Errorf("transfers get t1 nope: %s\nwant exit 1 naming nope, not t1", r)
	}
	if got := column(table(t, r.stdout, "POSITION"), "ID"); !slices.Equal(got, []string{"t1"}) {
		t.Errorf("transfers get t1 nope: %v, want t1 still shown", got)
	}

	u.misused(t, "unknown --status bogus", "transfers", "list", "--status", "bogus")
	u.misused(t, "unknown --status unspecified", "transfers", "list", "--status", "unspecified")
	u.misused(t, "--limit", "transfers", "list", "--limit", "1001")
	u.misused(t, "only flags", "transfers", "list", "alice")
	u.misused(t, "at least one ID", "transfers", "get")
}

// TestTrialBalance: per asset, debits equal credits, posted and pending;
// --as-of a past position.
func TestTrialBalance(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob", "carol")
	u.must(t, "asset", "define", "EUR", "2")
	u.must(t, "account", "open", "--asset", "EUR", "eve", "frank")
	t1 := u.send(t, "t1", "alice", "bob", "10.00")
	u.created(t, "transfer", "--id", "t2", "--from", "eve", "--to", "frank", "--amount", "7.50", "--asset", "EUR")
	u.send(t, "h1", "alice", "bob", "2.00", "--pending")
	closed := u.created(t, "account", "close", "carol")

	rows := byKey(t, table(t, u.settled(t, closed.position, "trial-balance").stdout, "ASSET"), "ASSET")
	check(t, "USD", rows["USD"], row{"DEBITS": "10.00", "CREDITS": "10.00", "PENDING DR": "2.00", "PENDING CR": "2.00",
		"ACCOUNTS": "2", "CLOSED": "1", "BALANCED": "true"})
	check(t, "EUR", rows["EUR"], row{"DEBITS": "7.50", "CREDITS": "7.50", "ACCOUNTS": "2", "CLOSED": "0", "BALANCED": "true"})
	if len(rows) != 2 {
		t.Errorf("trial-balance: %v, want USD and EUR", rows)
	}

	r := u.settled(t, t1.position, "trial-balance", "--as-of", at(t1.position))
	if pos, _ := asOf(r.stdout); pos != t1.position {
		t.Errorf("trial-balance --as-of %d: as of position %d", t1.position, pos)
	}
	rows = byKey(t, table(t, r.stdout, "ASSET"), "ASSET")
	check(t, "USD as of t1", rows["USD"], row{"DEBITS": "10.00", "CREDITS": "10.00", "ACCOUNTS": "3", "CLOSED": "0", "BALANCED": "true"})
	if eur := rows["EUR"]; eur != nil && eur["DEBITS"] == "7.50" {
		t.Errorf("trial-balance --as-of %d: EUR %v includes t2, recorded after", t1.position, eur)
	}

	var got struct {
		Lines []struct {
			Asset         string `json:"asset"`
			DebitsPosted  string `json:"debits_posted"`
			CreditsPosted string `json:"credits_posted"`
		} `json:"lines"`
		Position uint64 `json:"position,string"`
	}
	decodeJSON(t, u.must(t, "-o", "json", "trial-balance").stdout, &got)
	if len(got.Lines) != 2 || got.Position < closed.position {
		t.Fatalf("trial-balance -o json: %+v, want 2 lines as of %d or later", got, closed.position)
	}
	for _, l := range got.Lines {
		if l.DebitsPosted != l.CreditsPosted {
			t.Errorf("trial-balance -o json: %+v, want debits equal to credits", l)
		}
	}
	u.misused(t, "only flags", "trial-balance", "USD")
}

// TestProjectionsStatus lists the three projections of the ledger, caught up.
func TestProjectionsStatus(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	last := at(u.send(t, "t1", "alice", "bob", "1.00").position)

	var rows map[string]row
	testenv.Eventually(t, settleTimeout, func() error {
		r := u.run(t, "projections", "status")
		if r.code != 0 {
			return fmt.Errorf("projections status: %s", r)
		}
		rows = byKey(t, table(t, r.stdout, "LEDGER"), "PROJECTION")
		for _, name := range []string{"balances", "movements", "transfers", "reconciliation"} {
			p := rows[name]
			if p == nil || p["POSITION"] != last || p["HEAD"] != last || p["LAG"] != "0" {
				return fmt.Errorf("projections status: %s is %v, want at the head %s with lag 0", name, p, last)
			}
		}
		return nil
	})
	for name, p := range rows {
		if p["LEDGER"] != u.ledger || p["VERSION"] == "" || p["UPDATED"] == "" {
			t.Errorf("projections status: %s is %v, want ledger %s, a version and when it was updated", name, p, u.ledger)
		}
	}

	var got struct {
		Projections []struct {
			Ledger       string `json:"ledger"`
			Name         string `json:"name"`
			Position     uint64 `json:"position,string"`
			LagPositions uint64 `json:"lag_positions,string"`
		} `json:"projections"`
	}
	decodeJSON(t, u.must(t, "-o", "json", "projections", "status").stdout, &got)
	var names []string
	for _, p := range got.Projections {
		names = append(names, p.Name)
		if p.Ledger != u.ledger || at(p.Position) != last || p.LagPositions != 0 {
			t.Errorf("projections status -o json: %+v, want ledger %s at %s, lag 0", p, u.ledger, last)
		}
	}
	for _, name := range []string{"balances", "movements", "transfers", "reconciliation"} {
		if !slices.Contains(names, name) {
			t.Errorf("projections status -o json: %v, want %s among them", names, name)
		}
	}
	u.misused(t, "only flags", "projections", "status", "balances")
}

// TestOutputFormat: -o is table, json or yaml, before or after the command words;
// anything else is a usage error that sends nothing.
func TestOutputFormat(t *testing.T) {
	t.Parallel()
	u := ledger(t, "alice", "bob")
	transfer := []string{"transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD"}
	for _, args := range [][]string{
		append([]string{"-o", "xml"}, transfer...),
		{"-o", "xml", "balance", "alice"},
		{"balance", "alice", "-o", "xml"},
		{"-o", "xml", "statement", "alice"},
		{"-o", "xml", "transfers", "get", "t1"},
		{"-o", "xml", "transfers", "list"},
		{"-o", "xml", "trial-balance"},
		{"-o", "xml", "projections", "status"},
	} {
		u.misused(t, "-o is table, json or yaml", args...)
	}
	u.send(t, "t1", "alice", "bob", "1.00") // CREATED, not EXISTS: the -o xml one was never sent
}
