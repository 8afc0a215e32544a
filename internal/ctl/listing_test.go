package ctl_test

import (
	"slices"
	"strings"
	"testing"
)

// TestListings: assets list, accounts list with each filter and
// --balances, transfers list by asset and amounts; table and JSON.
func TestListings(t *testing.T) {
	t.Parallel()
	u := ledger(t, "users:1:wallet", "users:2:wallet", "users:2:savings", "bob")
	u.must(t, "asset", "define", "EUR", "2")
	u.must(t, "account", "open", "--asset", "EUR", "--metadata", "tier=gold", "--metadata", "region=eu", "users:3:wallet")
	u.must(t, "account", "open", "--asset", "USD", "--metadata", "tier=gold", "users:4:wallet")
	u.send(t, "t1", "bob", "users:1:wallet", "5.00")
	last := u.send(t, "t2", "bob", "users:2:wallet", "50.00").position
	u.must(t, "account", "close", "users:2:savings")
	u.must(t, "account", "freeze", "--reason", "checks", "users:4:wallet")
	pos := at(last + 2)

	rows := byKey(t, table(t, u.must(t, "assets", "list", "--min-position", pos).stdout, "CODE"), "CODE")
	check(t, "USD", rows["USD"], row{"SCALE": "2"})
	check(t, "EUR", rows["EUR"], row{"SCALE": "2"})
	if got := column(table(t, u.must(t, "asset", "list", "--limit", "1", "--all").stdout, "CODE"), "CODE"); !slices.Equal(got, []string{"EUR", "USD"}) {
		t.Errorf("asset list --limit 1 --all: %v, want EUR USD", got)
	}

	list := func(args ...string) []string {
		t.Helper()
		out := u.must(t, append([]string{"accounts", "list", "--min-position", pos}, args...)...).stdout
		return column(table(t, out, "ID"), "ID")
	}
	for _, c := range []struct {
		args, want []string
	}{
		{nil, []string{"bob", "users:1:wallet", "users:2:savings", "users:2:wallet", "users:3:wallet", "users:4:wallet"}},
		{[]string{"--prefix", "users:2"}, []string{"users:2:savings", "users:2:wallet"}},
		{[]string{"--pattern", "users:*:wallet"}, []string{"users:1:wallet", "users:2:wallet", "users:3:wallet", "users:4:wallet"}},
		{[]string{"--asset", "EUR"}, []string{"users:3:wallet"}},
		{[]string{"--status", "closed"}, []string{"users:2:savings"}},
		{[]string{"--frozen"}, []string{"users:4:wallet"}},
		{[]string{"--frozen", "--asset", "EUR"}, nil},
		{[]string{"--frozen", "--prefix", "users:4"}, []string{"users:4:wallet"}},
		{[]string{"--status", "open", "--prefix", "users:2"}, []string{"users:2:wallet"}},
		{[]string{"--metadata", "tier=gold"}, []string{"users:3:wallet", "users:4:wallet"}},
		{[]string{"--metadata", "tier=gold", "--metadata", "region=eu"}, []string{"users:3:wallet"}},
		{[]string{"--limit", "1", "--all", "--pattern", "users:*:wallet", "--asset", "USD"},
			[]string{"users:1:wallet", "users:2:wallet", "users:4:wallet"}},
	} {
		if got := list(c.args...); !slices.Equal(got, c.want) {
			t.Errorf("accounts list %q: %v, want %v", c.args, got, c.want)
		}
	}
	rows = byKey(t, table(t, u.must(t, "account", "list", "--balances", "--prefix", "users:", "--min-position", pos).stdout, "ID"), "ID")
	check(t, "users:2:wallet", rows["users:2:wallet"], row{"ASSET": "USD", "NORMAL": "credit", "STATUS": "open", "BALANCE": "50.00"})
	check(t, "users:2:savings", rows["users:2:savings"], row{"STATUS": "closed", "BALANCE": "0.00"})
	check(t, "users:3:wallet", rows["users:3:wallet"], row{"METADATA": "region=eu,tier=gold"})
	check(t, "users:4:wallet", rows["users:4:wallet"], row{"STATUS": "frozen@" + at(last+2)})

	type accountsJSON struct {
		Accounts []struct {
			ID      string `json:"id"`
			Balance struct {
				Balance string `json:"balance"`
			} `json:"balance"`
			FrozenPosition string `json:"frozen_position"`
		} `json:"accounts"`
	}
	var ids []string
	for _, p := range decodePages[accountsJSON](t, u.must(t, "-o", "json", "accounts", "list", "--balances", "--limit", "2", "--all").stdout) {
		for _, a := range p.Accounts {
			ids = append(ids, a.ID+"="+a.Balance.Balance+a.FrozenPosition)
		}
	}
	if want := []string{"bob=-55.00", "users:1:wallet=5.00", "users:2:savings=0.00", "users:2:wallet=50.00",
		"users:3:wallet=0.00", "users:4:wallet=0.00" + at(last+2)}; !slices.Equal(ids, want) {
		t.Errorf("accounts list -o json --all: %v, want %v", ids, want)
	}

	transfers := func(args ...string) []string {
		t.Helper()
		out := u.settled(t, last, append([]string{"transfers", "list"}, args...)...).stdout
		return column(table(t, out, "POSITION"), "ID")
	}
	if got := transfers("--asset", "USD", "--min-amount", "10"); !slices.Equal(got, []string{"t2"}) {
		t.Errorf("transfers list --asset USD --min-amount 10: %v, want t2", got)
	}
	if got := transfers("--asset", "USD", "--max-amount", "10", "--recorded-from", "2000-01-01T00:00:00Z"); !slices.Equal(got, []string{"t1"}) {
		t.Errorf("transfers list --asset USD --max-amount 10: %v, want t1", got)
	}
	if got := transfers("--effective-to", "2000-01-01T00:00:00Z"); len(got) != 0 {
		t.Errorf("transfers list --effective-to 2000: %v, want none", got)
	}

	u.misused(t, "--status is open or closed", "accounts", "list", "--status", "gone")
	u.misused(t, "want KEY=VALUE", "accounts", "list", "--metadata", "tier")
	u.misused(t, "--limit", "accounts", "list", "--limit", "1001")
	u.misused(t, "--effective-from is an RFC 3339 time", "transfers", "list", "--effective-from", "yesterday")
	r := u.run(t, "accounts", "list", "--pattern", "users:*x")
	if r.code != 1 || !strings.Contains(r.stderr, "pattern") {
		t.Errorf("accounts list --pattern users:*x: %s\nwant exit 1 naming pattern", r)
	}
}
