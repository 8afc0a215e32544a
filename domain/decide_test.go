package domain_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ledgerd/ledger/domain"
)

// worldIDs are the accounts newWorld opens.
var worldIDs = []string{
	"world", "alice", "bob", "carol", "expense", "receivable",
	"btc:world", "btc:alice", "jpy:world", "jpy:a",
}

// newWorld returns a ledger with USD (2), BTC (8) and JPY (0) and these accounts:
// world, carol: USD credit-normal, unbounded; alice: USD credit-normal, min 0;
// bob: USD credit-normal, max 100; expense: USD debit-normal, max 50;
// receivable: USD debit-normal, min 0; btc:world, jpy:world, jpy:a unbounded;
// btc:alice min 0. All balances are zero.
func newWorld(t testing.TB) *domain.State {
	t.Helper()
	s := domain.NewState()
	for _, c := range []domain.Command{
		asset("USD", 2), asset("BTC", 8), asset("JPY", 0),
		account("world", "USD", domain.SideCredit, "", ""),
		account("alice", "USD", domain.SideCredit, "0", ""),
		account("bob", "USD", domain.SideCredit, "", "100"),
		account("carol", "USD", domain.SideCredit, "", ""),
		account("expense", "USD", domain.SideDebit, "", "50"),
		account("receivable", "USD", domain.SideDebit, "0", ""),
		account("btc:world", "BTC", domain.SideCredit, "", ""),
		account("btc:alice", "BTC", domain.SideCredit, "0", ""),
		account("jpy:world", "JPY", domain.SideCredit, "", ""),
		account("jpy:a", "JPY", domain.SideCredit, "", ""),
	} {
		apply(t, s, c)
	}
	return s
}

type decideCase struct {
	name    string
	prepare []domain.Command // applied in order before cmd
	cmd     domain.Command
	err     error  // wanted sentinel; nil for success
	field   string // wanted FieldOf(err)
	// balances, when cmd succeeds: account id to Balance().Format after applying it.
	balances map[string]string
}

// runDecide runs each case on a fresh world, checking the outcome and that
// Decide left the state as it found it.
func runDecide(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newWorld(t)
			for _, c := range tc.prepare {
				apply(t, s, c)
			}
			ids := append(slices.Clone(worldIDs), tc.cmd.CommandID())
			before, pos := snapshot(s, ids), s.Position()
			e, err := decide(s, tc.cmd)
			if diff := cmp.Diff(before, snapshot(s, ids), unitsEqual); diff != "" {
				t.Errorf("Decide mutated accounts (-before +after):\n%s", diff)
			}
			if s.Position() != pos {
				t.Errorf("Decide moved position to %d from %d", s.Position(), pos)
			}
			checkErr(t, err, tc.err, tc.field)
			if err != nil {
				if e != nil {
					t.Errorf("got event %+v with error %v", e, err)
				}
				return
			}
			s.Evolve(pos+1, e)
			for id, want := range tc.balances {
				a, _ := s.Account(id)
				if got := a.Balance().Format(a.Scale); got != want {
					t.Errorf("balance of %s = %s, want %s", id, got, want)
				}
			}
		})
	}
}

func TestDecideAsset(t *testing.T) {
	runDecide(t, []decideCase{
		{name: "define", cmd: asset("EUR", 2)},
		{name: "scale 0", cmd: asset("KRW", 0)},
		{name: "scale at max", cmd: asset("ETH", domain.ScaleMax)},
		{name: "scale over max", cmd: asset("ETH", domain.ScaleMax+1), err: domain.ErrInvalidField, field: "scale"},
		{name: "code at max length", cmd: asset("A"+strings.Repeat("B", domain.AssetCodeLenMax-1), 2)},
		{name: "code over max length", cmd: asset("A"+strings.Repeat("B", domain.AssetCodeLenMax), 2), err: domain.ErrInvalidField, field: "code"},
		{name: "code with digits and underscore", cmd: asset("X_1", 2)},
		{name: "lowercase code", cmd: asset("eur", 2), err: domain.ErrInvalidField, field: "code"},
		{name: "empty code", cmd: asset("", 2), err: domain.ErrInvalidField, field: "code"},
		{name: "code starting with digit", cmd: asset("1EUR", 2), err: domain.ErrInvalidField, field: "code"},
		{name: "code with dash", cmd: asset("EU-R", 2), err: domain.ErrInvalidField, field: "code"},
		{name: "different scale", cmd: asset("USD", 3), err: domain.ErrExistsWithDifferentFields, field: "scale"},
	})
}

func TestDecideAssetEventAndExists(t *testing.T) {
	s := domain.NewState()
	apply(t, s, asset("AAA", 0))
	e, err := decide(s, asset("USD", 2))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(domain.Event(domain.AssetDefined{Code: "USD", Scale: 2}), e); diff != "" {
		t.Fatalf("event (-want +got):\n%s", diff)
	}
	s.Evolve(2, e)
	apply(t, s, asset("EUR", 2))
	_, err = decide(s, asset("USD", 2))
	checkExists(t, err, 2)
	if got, _ := s.Asset("USD"); got != (domain.Asset{Code: "USD", Scale: 2, Position: 2}) {
		t.Errorf("Asset(USD) = %+v", got)
	}
}

func TestDecideAccount(t *testing.T) {
	withMeta := func(c *domain.OpenAccount, m map[string]string) *domain.OpenAccount {
		c.Metadata = m
		return c
	}
	keys := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[fmt.Sprintf("k%02d", i)] = "v"
		}
		return m
	}
	runDecide(t, []decideCase{
		{name: "open", cmd: account("dave", "USD", domain.SideCredit, "", "")},
		{name: "open debit-normal with bounds", cmd: account("dave", "USD", domain.SideDebit, "-10.5", "1000")},
		{name: "min equals max", cmd: account("dave", "USD", domain.SideCredit, "5", "5")},
		{name: "negative min (overdraft)", cmd: account("dave", "USD", domain.SideCredit, "-50.00", "")},
		{name: "id at max length", cmd: account(strings.Repeat("a", domain.IDLenMax), "USD", domain.SideCredit, "", "")},
		{name: "id with all allowed punctuation", cmd: account("users:42:wallet_x.y@z-w", "USD", domain.SideCredit, "", "")},
		{name: "metadata at max keys", cmd: withMeta(account("dave", "USD", domain.SideCredit, "", ""), keys(domain.MetadataKeysMax))},

		{name: "unknown asset", cmd: account("dave", "EUR", domain.SideCredit, "", ""), err: domain.ErrAssetNotFound, field: "asset"},
		{name: "min above max", cmd: account("dave", "USD", domain.SideCredit, "10", "9.99"), err: domain.ErrInvalidField, field: "max_balance"},
		{name: "min with too many decimals", cmd: account("dave", "USD", domain.SideCredit, "0.001", ""), err: domain.ErrInvalidAmount, field: "min_balance"},
		{name: "max with too many decimals", cmd: account("dave", "JPY", domain.SideCredit, "", "1.5"), err: domain.ErrInvalidAmount, field: "max_balance"},
		{name: "max over 38 digits at scale", cmd: account("dave", "USD", domain.SideCredit, "", strings.Repeat("9", 37)), err: domain.ErrInvalidAmount, field: "max_balance"},
		{name: "min not a decimal", cmd: account("dave", "USD", domain.SideCredit, "1e3", ""), err: domain.ErrInvalidAmount, field: "min_balance"},
		{name: "max of 39 digits", cmd: account("dave", "USD", domain.SideCredit, "", strings.Repeat("9", 39)), err: domain.ErrInvalidAmount, field: "max_balance"},
		{name: "id over max length", cmd: account(strings.Repeat("a", domain.IDLenMax+1), "USD", domain.SideCredit, "", ""), err: domain.ErrInvalidField, field: "id"},
		{name: "id with space", cmd: account("da ve", "USD", domain.SideCredit, "", ""), err: domain.ErrInvalidField, field: "id"},
		{name: "empty id", cmd: account("", "USD", domain.SideCredit, "", ""), err: domain.ErrInvalidField, field: "id"},
		{name: "bad asset code", cmd: account("dave", "usd", domain.SideCredit, "", ""), err: domain.ErrInvalidField, field: "asset"},
		{name: "no normal balance", cmd: account("dave", "USD", 0, "", ""), err: domain.ErrInvalidField, field: "normal_balance"},
		{name: "unknown normal balance", cmd: account("dave", "USD", 3, "", ""), err: domain.ErrInvalidField, field: "normal_balance"},
		{name: "metadata over max keys", cmd: withMeta(account("dave", "USD", domain.SideCredit, "", ""), keys(domain.MetadataKeysMax+1)), err: domain.ErrInvalidField, field: "metadata"},
		{name: "metadata empty key", cmd: withMeta(account("dave", "USD", domain.SideCredit, "", ""), map[string]string{"": "v"}), err: domain.ErrInvalidField, field: "metadata"},

		// Retries of an existing id.
		{name: "different asset", cmd: account("alice", "BTC", domain.SideCredit, "0", ""), err: domain.ErrExistsWithDifferentFields, field: "asset"},
		{name: "different normal balance", cmd: account("alice", "USD", domain.SideDebit, "0", ""), err: domain.ErrExistsWithDifferentFields, field: "normal_balance"},
		{name: "different min", cmd: account("alice", "USD", domain.SideCredit, "-1", ""), err: domain.ErrExistsWithDifferentFields, field: "min_balance"},
		{name: "min dropped", cmd: account("alice", "USD", domain.SideCredit, "", ""), err: domain.ErrExistsWithDifferentFields, field: "min_balance"},
		{name: "different max", cmd: account("bob", "USD", domain.SideCredit, "", "100.01"), err: domain.ErrExistsWithDifferentFields, field: "max_balance"},
		{name: "different metadata", cmd: withMeta(account("alice", "USD", domain.SideCredit, "0", ""), map[string]string{"a": "b"}), err: domain.ErrExistsWithDifferentFields, field: "metadata"},
		{name: "identical retry", cmd: account("alice", "USD", domain.SideCredit, "0", ""), err: domain.ErrExists},
		{name: "retry with bound written differently", cmd: account("alice", "USD", domain.SideCredit, "0.00", ""), err: domain.ErrExists},
		{name: "retry with empty metadata map", cmd: withMeta(account("alice", "USD", domain.SideCredit, "0", ""), map[string]string{}), err: domain.ErrExists},
	})
}

func TestDecideAccountEventAndExists(t *testing.T) {
	s := newWorld(t)
	open := &domain.OpenAccount{ID: "dave", Asset: "BTC", Normal: domain.SideDebit,
		MinBalance: bound("-0.5"), MaxBalance: bound("21"), Metadata: map[string]string{"owner": "dave"}}
	e, err := decide(s, open)
	if err != nil {
		t.Fatal(err)
	}
	want := domain.AccountOpened{ID: "dave", Asset: "BTC", Normal: domain.SideDebit,
		MinBalance: &domain.Amount{Units: domain.UnitsFromInt64(-50_000_000), Scale: 8},
		MaxBalance: &domain.Amount{Units: domain.UnitsFromInt64(2_100_000_000), Scale: 8},
		Metadata:   map[string]string{"owner": "dave"}}
	if diff := cmp.Diff(domain.Event(want), e, unitsEqual); diff != "" {
		t.Fatalf("event (-want +got):\n%s", diff)
	}
	pos := s.Position() + 1
	s.Evolve(pos, e)
	apply(t, s, account("erin", "BTC", domain.SideDebit, "", ""))

	retry := &domain.OpenAccount{ID: "dave", Asset: "BTC", Normal: domain.SideDebit,
		MinBalance: bound("-0.50000000"), MaxBalance: bound("21.0"), Metadata: map[string]string{"owner": "dave"}}
	_, err = decide(s, retry)
	checkExists(t, err, pos)

	a, ok := s.Account("dave")
	if !ok {
		t.Fatal("account dave not found")
	}
	if a.Position != pos || a.Scale != 8 || a.Min().Format(8) != "-0.50000000" || a.Max().Format(8) != "21.00000000" {
		t.Errorf("account = %+v", a)
	}
}

func TestDecideTransfer(t *testing.T) {
	fund := func(id, to, amount string) domain.Command {
		return transfer(id, posting("world", to, "USD", amount))
	}
	withRef := func(c *domain.CreateTransfer, ref string) *domain.CreateTransfer {
		c.Reference = ref
		return c
	}
	withMeta := func(c *domain.CreateTransfer, m map[string]string) *domain.CreateTransfer {
		c.Metadata = m
		return c
	}
	keys := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[fmt.Sprintf("k%02d", i)] = "v"
		}
		return m
	}
	// metaBytes returns one key whose key and value total n bytes.
	metaBytes := func(n int) map[string]string {
		return map[string]string{"k": strings.Repeat("v", n-1)}
	}
	postings := func(n int) []domain.PostingInput {
		ps := make([]domain.PostingInput, n)
		for i := range ps {
			ps[i] = posting("world", "carol", "USD", "0.01")
		}
		return ps
	}
	nines := strings.Repeat("9", 38)

	runDecide(t, []decideCase{
		{name: "single posting", cmd: transfer("t1", usdOne()), balances: map[string]string{"world": "-1.00", "carol": "1.00"}},
		{name: "fx: two postings in different assets",
			cmd:      transfer("fx", posting("world", "carol", "USD", "10"), posting("btc:world", "btc:alice", "BTC", "0.00012345")),
			balances: map[string]string{"world": "-10.00", "carol": "10.00", "btc:world": "-0.00012345", "btc:alice": "0.00012345"}},
		{name: "jpy at scale 0", cmd: transfer("t1", posting("jpy:world", "jpy:a", "JPY", "500")), balances: map[string]string{"jpy:a": "500"}},
		// A command's effects start with room for four accounts: past them
		// each account's effect still adds up, and the bounds see it.
		{name: "six accounts, one of them twice", cmd: transfer("t1", posting("world", "carol", "USD", "1"),
			posting("world", "bob", "USD", "2"), posting("expense", "world", "USD", "3"), posting("receivable", "world", "USD", "4"),
			posting("world", "alice", "USD", "0.5"), posting("world", "carol", "USD", "5")),
			balances: map[string]string{"world": "-1.50", "carol": "6.00", "bob": "2.00", "expense": "3.00", "receivable": "4.00", "alice": "0.50"}},
		{name: "the fifth account below its min", cmd: transfer("t1", posting("world", "carol", "USD", "1"),
			posting("world", "bob", "USD", "2"), posting("expense", "world", "USD", "3"), posting("alice", "world", "USD", "0.01")),
			err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "the sixth account above its max, moved twice", cmd: transfer("t1", posting("world", "carol", "USD", "1"),
			posting("expense", "world", "USD", "3"), posting("receivable", "world", "USD", "4"), posting("world", "alice", "USD", "1"),
			posting("world", "bob", "USD", "60"), posting("world", "bob", "USD", "40.01")),
			err: domain.ErrAboveMaxBalance, field: "postings"},

		// Unknown things and mismatches.
		{name: "unknown debit account", cmd: transfer("t1", posting("nobody", "carol", "USD", "1")), err: domain.ErrAccountNotFound, field: "postings[0].debit_account"},
		{name: "unknown credit account", cmd: transfer("t1", posting("world", "nobody", "USD", "1")), err: domain.ErrAccountNotFound, field: "postings[0].credit_account"},
		{name: "unknown account in second posting", cmd: transfer("t1", usdOne(), posting("nobody", "carol", "USD", "1")), err: domain.ErrAccountNotFound, field: "postings[1].debit_account"},
		{name: "unknown asset", cmd: transfer("t1", posting("world", "carol", "EUR", "1")), err: domain.ErrAssetNotFound, field: "postings[0].asset"},
		{name: "debit account in another asset", cmd: transfer("t1", posting("btc:world", "carol", "USD", "1")), err: domain.ErrAssetMismatch, field: "postings[0].debit_account"},
		{name: "credit account in another asset", cmd: transfer("t1", posting("world", "btc:alice", "USD", "1")), err: domain.ErrAssetMismatch, field: "postings[0].credit_account"},
		{name: "both accounts in another asset", cmd: transfer("t1", posting("world", "carol", "BTC", "1")), err: domain.ErrAssetMismatch, field: "postings[0].debit_account"},
		{name: "same account", cmd: transfer("t1", posting("carol", "carol", "USD", "1")), err: domain.ErrSameAccount, field: "postings[0].credit_account"},

		// Amounts.
		{name: "zero amount", cmd: transfer("t1", posting("world", "carol", "USD", "0")), err: domain.ErrInvalidAmount, field: "postings[0].amount"},
		{name: "zero with decimals", cmd: transfer("t1", posting("world", "carol", "USD", "0.00")), err: domain.ErrInvalidAmount, field: "postings[0].amount"},
		{name: "negative amount", cmd: transfer("t1", posting("world", "carol", "USD", "-1")), err: domain.ErrInvalidAmount, field: "postings[0].amount"},
		{name: "empty amount", cmd: transfer("t1", posting("world", "carol", "USD", "")), err: domain.ErrInvalidAmount, field: "postings[0].amount"},
		{name: "malformed amount", cmd: transfer("t1", posting("world", "carol", "USD", "1e3")), err: domain.ErrInvalidAmount, field: "postings[0].amount"},
		{name: "too many decimals", cmd: transfer("t1", posting("world", "carol", "USD", "1.001")), err: domain.ErrInvalidAmount, field: "postings[0].amount"},
		{name: "too many decimals in second posting", cmd: transfer("t1", usdOne(), posting("jpy:world", "jpy:a", "JPY", "1.5")), err: domain.ErrInvalidAmount, field: "postings[1].amount"},
		{name: "decimals at scale", cmd: transfer("t1", posting("btc:world", "btc:alice", "BTC", "0.00000001")), balances: map[string]string{"btc:alice": "0.00000001"}},
		{name: "38-digit amount at scale 0", cmd: transfer("t1", posting("jpy:world", "jpy:a", "JPY", nines)), balances: map[string]string{"jpy:a": nines}},
		{name: "38 digits at scale 2", cmd: transfer("t1", posting("world", "carol", "USD", strings.Repeat("9", 36)+".99")), balances: map[string]string{"carol": strings.Repeat("9", 36) + ".99"}},
		{name: "over 38 digits once scaled", cmd: transfer("t1", posting("world", "carol", "USD", strings.Repeat("9", 37))), err: domain.ErrInvalidAmount, field: "postings[0].amount"},
		{name: "39-digit amount", cmd: transfer("t1", posting("jpy:world", "jpy:a", "JPY", "1"+nines)), err: domain.ErrInvalidAmount, field: "postings[0].amount"},
		{name: "balance overflow", prepare: []domain.Command{transfer("t0", posting("jpy:world", "jpy:a", "JPY", nines))},
			cmd: transfer("t1", posting("jpy:world", "jpy:a", "JPY", "1")), err: domain.ErrBalanceOverflow, field: "postings"},
		{name: "balance overflow within one transfer", cmd: transfer("t1", posting("jpy:world", "jpy:a", "JPY", nines), posting("jpy:world", "jpy:a", "JPY", "1")),
			err: domain.ErrBalanceOverflow, field: "postings"},

		// Shape and bounds of the command.
		{name: "no postings", cmd: transfer("t1"), err: domain.ErrInvalidField, field: "postings"},
		{name: "postings at max", cmd: &domain.CreateTransfer{ID: "t1", Postings: postings(domain.PostingsPerTransfer)}, balances: map[string]string{"carol": "0.64"}},
		{name: "postings over max", cmd: &domain.CreateTransfer{ID: "t1", Postings: postings(domain.PostingsPerTransfer + 1)}, err: domain.ErrInvalidField, field: "postings"},
		{name: "id at max length", cmd: transfer(strings.Repeat("x", domain.IDLenMax), usdOne())},
		{name: "id over max length", cmd: transfer(strings.Repeat("x", domain.IDLenMax+1), usdOne()), err: domain.ErrInvalidField, field: "id"},
		{name: "malformed id", cmd: transfer("t 1", usdOne()), err: domain.ErrInvalidField, field: "id"},
		{name: "id with slash", cmd: transfer("t/1", usdOne()), err: domain.ErrInvalidField, field: "id"},
		{name: "empty id", cmd: transfer("", usdOne()), err: domain.ErrInvalidField, field: "id"},
		{name: "malformed debit account id", cmd: transfer("t1", posting("wor ld", "carol", "USD", "1")), err: domain.ErrInvalidField, field: "postings[0].debit_account"},
		{name: "malformed credit account id", cmd: transfer("t1", posting("world", "", "USD", "1")), err: domain.ErrInvalidField, field: "postings[0].credit_account"},
		{name: "malformed asset code", cmd: transfer("t1", posting("world", "carol", "usd", "1")), err: domain.ErrInvalidField, field: "postings[0].asset"},
		{name: "metadata at max keys", cmd: withMeta(transfer("t1", usdOne()), keys(domain.MetadataKeysMax))},
		{name: "metadata over max keys", cmd: withMeta(transfer("t1", usdOne()), keys(domain.MetadataKeysMax+1)), err: domain.ErrInvalidField, field: "metadata"},
		{name: "metadata at max bytes", cmd: withMeta(transfer("t1", usdOne()), metaBytes(domain.MetadataBytesMax))},
		{name: "metadata over max bytes", cmd: withMeta(transfer("t1", usdOne()), metaBytes(domain.MetadataBytesMax+1)), err: domain.ErrInvalidField, field: "metadata"},
		{name: "metadata key over max length", cmd: withMeta(transfer("t1", usdOne()), map[string]string{strings.Repeat("k", domain.MetadataKeyLenMax+1): "v"}), err: domain.ErrInvalidField, field: "metadata"},
		{name: "metadata key at max length", cmd: withMeta(transfer("t1", usdOne()), map[string]string{strings.Repeat("k", domain.MetadataKeyLenMax): "v"})},
		{name: "reference at max", cmd: withRef(transfer("t1", usdOne()), strings.Repeat("r", domain.ReferenceLenMax))},
		{name: "reference over max", cmd: withRef(transfer("t1", usdOne()), strings.Repeat("r", domain.ReferenceLenMax+1)), err: domain.ErrInvalidField, field: "reference"},

		// Bounds.
		{name: "min 0: cannot overdraw", prepare: []domain.Command{fund("f", "alice", "10")},
			cmd: transfer("t1", posting("alice", "carol", "USD", "10.01")), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "min 0: exactly to zero", prepare: []domain.Command{fund("f", "alice", "10")},
			cmd: transfer("t1", posting("alice", "carol", "USD", "10.00")), balances: map[string]string{"alice": "0.00"}},
		{name: "min 0: empty account", cmd: transfer("t1", posting("alice", "carol", "USD", "0.01")), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "min 0 on debit-normal: credit below zero", cmd: transfer("t1", posting("world", "receivable", "USD", "0.01")), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "min 0 on debit-normal: debit grows it", cmd: transfer("t1", posting("receivable", "world", "USD", "5")), balances: map[string]string{"receivable": "5.00"}},
		{name: "max: above", cmd: transfer("t1", posting("world", "bob", "USD", "100.01")), err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "max: exactly at", cmd: transfer("t1", posting("world", "bob", "USD", "100")), balances: map[string]string{"bob": "100.00"}},
		{name: "max: above after earlier inflow", prepare: []domain.Command{fund("f", "bob", "60")},
			cmd: transfer("t1", posting("world", "bob", "USD", "40.01")), err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "max: outflow is not bounded", cmd: transfer("t1", posting("bob", "carol", "USD", "1000")), balances: map[string]string{"bob": "-1000.00"}},
		{name: "max on debit-normal: debit above", cmd: transfer("t1", posting("expense", "world", "USD", "50.01")), err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "max on debit-normal: credit is not bounded", cmd: transfer("t1", posting("world", "expense", "USD", "70")), balances: map[string]string{"expense": "-70.00"}},

		// The same account several times in one transfer: the net effect counts.
		{name: "in then out, net zero", cmd: transfer("t1", posting("world", "alice", "USD", "5"), posting("alice", "carol", "USD", "5")),
			balances: map[string]string{"alice": "0.00", "carol": "5.00"}},
		{name: "out then in, net zero", cmd: transfer("t1", posting("alice", "carol", "USD", "5"), posting("world", "alice", "USD", "5")),
			balances: map[string]string{"alice": "0.00", "carol": "5.00"}},
		{name: "out then in, net negative", cmd: transfer("t1", posting("alice", "carol", "USD", "5.01"), posting("world", "alice", "USD", "5")),
			err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "debited twice: each fits, sum does not", prepare: []domain.Command{fund("f", "alice", "5")},
			cmd: transfer("t1", posting("alice", "carol", "USD", "3"), posting("alice", "world", "USD", "3")), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "debited twice: sum fits exactly", prepare: []domain.Command{fund("f", "alice", "6")},
			cmd: transfer("t1", posting("alice", "carol", "USD", "3"), posting("alice", "world", "USD", "3")), balances: map[string]string{"alice": "0.00", "carol": "3.00", "world": "-3.00"}},
		{name: "credited twice over max", cmd: transfer("t1", posting("world", "bob", "USD", "50"), posting("carol", "bob", "USD", "50.01")), err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "credited twice, then debited back under max", cmd: transfer("t1", posting("world", "bob", "USD", "80"), posting("carol", "bob", "USD", "80"), posting("bob", "world", "USD", "60")),
			balances: map[string]string{"bob": "100.00"}},
		{name: "one bad posting refuses all", cmd: transfer("t1", usdOne(), posting("alice", "carol", "USD", "1")), err: domain.ErrBelowMinBalance, field: "postings"},
	})
}

// TestDecideTransferRetry covers idempotency: a retried id answers EXISTS with
// the original position, or names the first field that differs.
func TestDecideTransferRetry(t *testing.T) {
	effective := time.Date(2025, 12, 31, 23, 59, 59, 999999000, time.UTC)
	original := func() *domain.CreateTransfer {
		return &domain.CreateTransfer{
			ID: "t1",
			Postings: []domain.PostingInput{
				posting("world", "alice", "USD", "10.50"),
				posting("btc:world", "btc:alice", "BTC", "1"),
			},
			Reference:   "invoice 7",
			Metadata:    map[string]string{"k": "v"},
			EffectiveAt: effective,
		}
	}
	for _, tc := range []struct {
		name   string
		change func(c *domain.CreateTransfer)
		field  string // "" for EXISTS
	}{
		{"identical", func(*domain.CreateTransfer) {}, ""},
		{"amount written differently", func(c *domain.CreateTransfer) { c.Postings[0].Amount = "10.5" }, ""},
		{"omitted effective_at", func(c *domain.CreateTransfer) { c.EffectiveAt = time.Time{} }, ""},
		{"effective_at in another zone", func(c *domain.CreateTransfer) { c.EffectiveAt = effective.In(time.FixedZone("X", 3600)) }, ""},
		{"effective_at with sub-microsecond part", func(c *domain.CreateTransfer) { c.EffectiveAt = effective.Add(999) }, ""},
		{"nil vs empty metadata", func(c *domain.CreateTransfer) { c.Metadata = map[string]string{"k": "v"} }, ""},
		{"different amount", func(c *domain.CreateTransfer) { c.Postings[0].Amount = "10.51" }, "postings[0].amount"},
		{"amount with too many decimals", func(c *domain.CreateTransfer) { c.Postings[0].Amount = "10.501" }, "postings[0].amount"},
		{"different second amount", func(c *domain.CreateTransfer) { c.Postings[1].Amount = "1.00000001" }, "postings[1].amount"},
		{"different debit", func(c *domain.CreateTransfer) { c.Postings[0].Debit = "carol" }, "postings[0].debit_account"},
		{"different credit", func(c *domain.CreateTransfer) { c.Postings[0].Credit = "carol" }, "postings[0].credit_account"},
		{"different asset", func(c *domain.CreateTransfer) { c.Postings[1].Asset = "JPY" }, "postings[1].asset"},
		{"fewer postings", func(c *domain.CreateTransfer) { c.Postings = c.Postings[:1] }, "postings"},
		{"different reference", func(c *domain.CreateTransfer) { c.Reference = "invoice 8" }, "reference"},
		{"different metadata", func(c *domain.CreateTransfer) { c.Metadata = map[string]string{"k": "w"} }, "metadata"},
		{"no metadata", func(c *domain.CreateTransfer) { c.Metadata = nil }, "metadata"},
		{"different effective_at", func(c *domain.CreateTransfer) { c.EffectiveAt = effective.Add(time.Microsecond) }, "effective_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newWorld(t)
			pos := apply(t, s, original())
			// Drain alice, so a fresh transfer like the original could no longer
			// pass its bounds; a retry still answers by id.
			apply(t, s, transfer("drain", posting("alice", "world", "USD", "10.50")))
			apply(t, s, transfer("later", usdOne()))

			retry := original()
			tc.change(retry)
			before := snapshot(s, worldIDs)
			_, err := decide(s, retry)
			if diff := cmp.Diff(before, snapshot(s, worldIDs), unitsEqual); diff != "" {
				t.Errorf("Decide mutated accounts (-before +after):\n%s", diff)
			}
			if tc.field == "" {
				checkExists(t, err, pos)
				return
			}
			checkErr(t, err, domain.ErrExistsWithDifferentFields, tc.field)
		})
	}
}

// usdOne moves 1 USD from world to carol.
func usdOne() domain.PostingInput { return posting("world", "carol", "USD", "1") }

func TestDecideTransferEvent(t *testing.T) {
	s := newWorld(t)
	effective := time.Date(2026, 1, 2, 3, 4, 5, 6789, time.FixedZone("X", -7200))
	c := &domain.CreateTransfer{
		ID: "t1",
		Postings: []domain.PostingInput{
			posting("world", "alice", "USD", "10.5"),
			posting("btc:world", "btc:alice", "BTC", "0.1"),
		},
		Reference:   "ref",
		Metadata:    map[string]string{"k": "v"},
		EffectiveAt: effective,
	}
	e, err := decide(s, c)
	if err != nil {
		t.Fatal(err)
	}
	want := domain.TransferCommitted{
		ID: "t1",
		Postings: []domain.Posting{
			{Debit: "world", Credit: "alice", Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(1050), Scale: 2}},
			{Debit: "btc:world", Credit: "btc:alice", Asset: "BTC", Amount: domain.Amount{Units: domain.UnitsFromInt64(10_000_000), Scale: 8}},
		},
		Reference: "ref",
		Metadata:  map[string]string{"k": "v"},
		// Validate keeps microseconds, in UTC.
		EffectiveAt: time.Date(2026, 1, 2, 5, 4, 5, 6000, time.UTC),
	}
	if diff := cmp.Diff(domain.Event(want), e, unitsEqual); diff != "" {
		t.Fatalf("event (-want +got):\n%s", diff)
	}
	if got := e.(domain.TransferCommitted).EffectiveAt.Location(); got != time.UTC {
		t.Errorf("effective_at location = %v, want UTC", got)
	}

	// Without effective_at, the transfer takes the writer's time.
	e, err = decide(s, transfer("t2", usdOne()))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.(domain.TransferCommitted).EffectiveAt; !got.Equal(now) {
		t.Errorf("default effective_at = %v, want %v", got, now)
	}
}

// TestDecideTransferDefaultEffectiveAtIsCanonical checks that an omitted
// effective_at is recorded like an explicit one: in UTC, whole microseconds.
func TestDecideTransferDefaultEffectiveAtIsCanonical(t *testing.T) {
	s := newWorld(t)
	c := transfer("t1", usdOne())
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.FixedZone("X", 3600))
	e, err := domain.Decide(s, c, clock)
	if err != nil {
		t.Fatal(err)
	}
	got := e.(domain.TransferCommitted).EffectiveAt
	if want := clock.Truncate(time.Microsecond).UTC(); got != want {
		t.Errorf("effective_at = %v, want %v", got, want)
	}
	// A retry with the effective_at as stored (µs) must answer EXISTS.
	remember(s, s.Position()+1, e.(domain.TransferCommitted))
	s.Evolve(s.Position()+1, e)
	retry := transfer("t1", usdOne())
	retry.EffectiveAt = clock.Truncate(time.Microsecond)
	_, err = decide(s, retry)
	checkExists(t, err, s.Position())
}

// TestDecideTransferOverflowWithinOneTransfer sums postings that each fit but
// whose total on one account exceeds 128 bits: Decide must refuse them, since
// Evolve adds them one by one.
func TestDecideTransferOverflowWithinOneTransfer(t *testing.T) {
	nines := strings.Repeat("9", 38)
	for _, tc := range []struct {
		name    string
		amounts []string
	}{
		{"two of 10^38-1", []string{nines, nines}},
		{"three of 10^38-1", []string{nines, nines, nines}},
		{"four of 10^38-1", []string{nines, nines, nines, nines}},
		{"two of 2^126", []string{"85070591730234615865843651857942052864", "85070591730234615865843651857942052864"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newWorld(t)
			c := &domain.CreateTransfer{ID: "t1"}
			for _, a := range tc.amounts {
				c.Postings = append(c.Postings, posting("jpy:world", "jpy:a", "JPY", a))
			}
			_, err := decide(s, c)
			checkErr(t, err, domain.ErrBalanceOverflow, "postings")
		})
	}
}

// TestDecideTransferOverflowAcrossTransfers adds two amounts of 2^126 to one
// account in two transfers: the total 2^127 exceeds 38 digits and must be refused.
func TestDecideTransferOverflowAcrossTransfers(t *testing.T) {
	const half = "85070591730234615865843651857942052864" // 2^126, 38 digits
	s := newWorld(t)
	apply(t, s, transfer("t1", posting("jpy:world", "jpy:a", "JPY", half)))
	_, err := decide(s, transfer("t2", posting("jpy:world", "jpy:a", "JPY", half)))
	checkErr(t, err, domain.ErrBalanceOverflow, "postings")
}

// TestDecideUnvalidated checks that Decide refuses a command Validate has not seen.
func TestDecideUnvalidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  domain.Command
	}{
		{"open account", account("dave", "USD", domain.SideCredit, "", "")},
		{"transfer", transfer("t1", usdOne())},
		{"define asset", asset("EUR", 258)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newWorld(t)
			defer func() {
				if recover() == nil {
					t.Errorf("Decide on an unvalidated %T did not panic", tc.cmd)
				}
			}()
			e, err := domain.Decide(s, tc.cmd, now)
			t.Errorf("Decide = %v, %v", e, err)
		})
	}
}

func TestFieldOf(t *testing.T) {
	if got := domain.FieldOf(errors.New("x")); got != "" {
		t.Errorf("FieldOf(plain) = %q", got)
	}
	if got := domain.FieldOf(fmt.Errorf("wrapped: %w", &domain.FieldError{Field: "f", Err: domain.ErrInvalidField})); got != "f" {
		t.Errorf("FieldOf(wrapped) = %q, want f", got)
	}
	if got := domain.FieldOf(nil); got != "" {
		t.Errorf("FieldOf(nil) = %q", got)
	}
}
