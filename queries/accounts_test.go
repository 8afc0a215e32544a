package queries

import (
	"errors"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

func TestAccountsCursorRoundTripAndRefusals(t *testing.T) {
	f := AccountFilter{Prefix: "users:", Metadata: map[string]string{"tier": "gold"}}
	fp := accountsFingerprint("main", f)
	for _, id := range []string{"a", "users:42:wallet", strings.Repeat("z", domain.IDLenMax)} {
		got, err := decodeAccountsCursor(encodeAccountsCursor(id, fp), fp)
		if err != nil || got != id {
			t.Errorf("cursor of %q: %q, %v", id, got, err)
		}
	}
	other := accountsFingerprint("main", AccountFilter{Prefix: "users:", Metadata: map[string]string{"tier": "silver"}})
	for _, c := range []struct{ name, cursor string }{
		{"not base64", "!!!!"},
		{"other listing", encodeAccountsCursor("a", other)},
		{"other ledger", encodeAccountsCursor("a", accountsFingerprint("other", f))},
		{"not an id", encodeAccountsCursor("a b", fp)},
		{"no id", encodeAccountsCursor("", fp)},
		{"too long", encodeAccountsCursor(strings.Repeat("z", domain.IDLenMax+1), fp)},
	} {
		if _, err := decodeAccountsCursor(c.cursor, fp); !errors.Is(err, ErrBadAccountsCursor) {
			t.Errorf("%s: %v, want ErrBadAccountsCursor", c.name, err)
		}
	}
}

// Each filter goes in the scan when the index the scan reads answers it,
// and is tested on the scanned rows otherwise; the scan is bounded.
func TestListAccountsSQL(t *testing.T) {
	for _, c := range []struct {
		name       string
		f          AccountFilter
		inScan     []string
		residual   string
		notPresent []string
	}{
		{"pattern", AccountFilter{Pattern: "users:*:wallet"}, []string{"a.account >= $6", "a.account < $7"}, "a.account ~ $5", nil},
		{"metadata and asset", AccountFilter{Metadata: map[string]string{"k": "v"}, Asset: "USD"},
			[]string{"a.metadata @> $5::jsonb", "a.metadata <> '{}'::jsonb"}, "a.asset = $6", nil},
		{"asset and closed", AccountFilter{Asset: "USD", Status: AccountStatusClosed}, []string{"a.asset = $5"}, "a.closed", nil},
		{"closed", AccountFilter{Status: AccountStatusClosed}, []string{"a.closed\n"}, "", []string{"NOT a.closed"}},
		{"open", AccountFilter{Status: AccountStatusOpen}, nil, "NOT a.closed", nil},
		{"balances", AccountFilter{Balances: true}, nil, "", nil},
	} {
		sql, _, err := listAccountsSQL("main", c.f, "", 11, AccountsScanMax, true)
		if err != nil {
			t.Fatal(err)
		}
		scan := sql[strings.Index(sql, "FROM accounts a WHERE"):strings.Index(sql, "LIMIT $3")]
		for _, want := range c.inScan {
			if !strings.Contains(scan+"\n", strings.TrimSuffix(want, "\n")) {
				t.Errorf("%s: scan lacks %q:\n%s", c.name, want, scan)
			}
		}
		if c.residual != "" && !strings.Contains(sql, c.residual+" AS hit") && !strings.Contains(sql, c.residual+" AND") {
			t.Errorf("%s: residual lacks %q:\n%s", c.name, c.residual, sql)
		}
		if c.residual != "" && strings.Contains(scan, c.residual) {
			t.Errorf("%s: %q in the scan:\n%s", c.name, c.residual, scan)
		}
		for _, no := range c.notPresent {
			if strings.Contains(sql, no) {
				t.Errorf("%s: has %q:\n%s", c.name, no, sql)
			}
		}
		if c.f.Balances != strings.Contains(sql, "FROM movements m WHERE m.ledger_no = h.ledger_no AND m.account_no = h.opened_position") {
			t.Errorf("%s: balances join %t, want %t", c.name, !c.f.Balances, c.f.Balances)
		}
	}
}
