package domain_test

import (
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ledgerd/ledger/domain"
)

// amountPattern is the grammar of docs/api.md ("Amounts"), written
// independently of the parser as the oracle of FuzzParseDecimal.
var amountPattern = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// amountGrammar reports whether s is an amount ParseDecimal must accept: of
// the pattern, not a signed zero, at most 64 bytes and 38 significant digits.
func amountGrammar(s string) bool {
	if len(s) > 64 || !amountPattern.MatchString(s) {
		return false
	}
	digits := strings.TrimLeft(strings.ReplaceAll(strings.TrimPrefix(s, "-"), ".", ""), "0")
	if digits == "" && strings.HasPrefix(s, "-") {
		return false
	}
	return len(digits) <= domain.DigitsMax
}

func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{
		"0", "-0", "10", "10.50", "0.001", "-3", "007", "0.00",
		strings.Repeat("9", 38), strings.Repeat("9", 39), "-" + strings.Repeat("9", 38) + ".0",
		"1e3", "+1", ".5", "5.", "", "1.2.3", "--1", " 1", "-", "١",
		"01.00", "-0.00", "12.500", "00", "0.0\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := domain.ParseDecimal(s)
		inGrammar := amountGrammar(s)
		if err != nil {
			if !errors.Is(err, domain.ErrInvalidAmount) {
				t.Fatalf("ParseDecimal(%q): error %v is not ErrInvalidAmount", s, err)
			}
			if inGrammar {
				t.Fatalf("ParseDecimal(%q) refused an amount of the grammar: %v", s, err)
			}
			return
		}
		if !inGrammar {
			t.Fatalf("ParseDecimal(%q) accepted text outside the grammar", s)
		}
		// One spelling per value and precision: what is accepted prints as written.
		if got := d.String(); got != s {
			t.Fatalf("ParseDecimal(%q).String() = %q, want the text itself", s, got)
		}
		coef, frac := d.Parts()
		if digits := strings.TrimPrefix(coef.String(), "-"); len(digits) > domain.DigitsMax || !coef.InRange() {
			t.Fatalf("ParseDecimal(%q) has coefficient %s: more than %d digits", s, coef, domain.DigitsMax)
		}
		// The value is what the text says: an exact rational oracle.
		want, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("ParseDecimal accepted %q, which big.Rat does not read", s)
		}
		got := new(big.Rat).SetFrac(unitsToBig(coef), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(frac)), nil))
		if got.Cmp(want) != 0 {
			t.Fatalf("ParseDecimal(%q) = %s, want %s", s, got.RatString(), want.RatString())
		}
		// String re-parses to the same value and is a fixed point.
		str := d.String()
		d2, err := domain.ParseDecimal(str)
		if err != nil {
			t.Fatalf("ParseDecimal(%q).String() = %q, which does not parse: %v", s, str, err)
		}
		if d2 != d {
			t.Fatalf("ParseDecimal(%q) = %v, but its String %q parses to %v", s, d, str, d2)
		}
		if again := d2.String(); again != str {
			t.Fatalf("String not stable: %q then %q", str, again)
		}
		if got, want := d.Sign(), want.Sign(); got != want {
			t.Fatalf("Sign of %q = %d, want %d", s, got, want)
		}
	})
}

func FuzzValidateTransfer(f *testing.F) {
	f.Add("t1", "world", "carol", "USD", "10.50", "", "", "", uint8(1))
	f.Add("t1", "world", "world", "USD", "1", "", "", "", uint8(1))
	f.Add("t 1", "world", "carol", "USD", "1", "", "", "", uint8(1))
	f.Add("t1", "world", "carol", "usd", "1", "", "", "", uint8(1))
	f.Add("t1", "world", "carol", "USD", "-1", "", "", "", uint8(1))
	f.Add("t1", "world", "carol", "USD", "1.001", "ref", "k", "v", uint8(2))
	f.Add("t1", "world", "alice", "USD", "1", "ref", "", "v", uint8(64))
	f.Add("t1", "world", "carol", "USD", "1", strings.Repeat("r", 257), "k", "v", uint8(65))
	f.Add("t1", "nobody", "carol", "JPY", "1", "", "k", strings.Repeat("v", 5000), uint8(3))
	f.Fuzz(func(t *testing.T, id, debit, credit, asset, amount, ref, metaKey, metaValue string, n uint8) {
		c := &domain.CreateTransfer{ID: id, Reference: ref}
		if metaKey != "" || metaValue != "" {
			c.Metadata = map[string]string{metaKey: metaValue}
		}
		for i := range int(n) % (domain.PostingsPerTransfer + 4) {
			p := posting(debit, credit, asset, amount)
			if i%2 == 1 { // the other way round, so the same pair can net out
				p.Debit, p.Credit = credit, debit
			}
			c.Postings = append(c.Postings, p)
		}
		err := c.Validate()
		if err != nil {
			var fe *domain.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("Validate: error %v carries no FieldError", err)
			}
			if !errors.Is(err, domain.ErrInvalidField) && !errors.Is(err, domain.ErrInvalidAmount) && !errors.Is(err, domain.ErrSameAccount) {
				t.Fatalf("Validate: error %v is not a validation sentinel", err)
			}
			return
		}
		// Accepted: every documented bound holds.
		switch {
		case !domain.ValidID(c.ID):
			t.Fatalf("Validate accepted id %q", c.ID)
		case len(c.Postings) < 1 || len(c.Postings) > domain.PostingsPerTransfer:
			t.Fatalf("Validate accepted %d postings", len(c.Postings))
		case len(c.Reference) > domain.ReferenceLenMax:
			t.Fatalf("Validate accepted a reference of %d bytes", len(c.Reference))
		case len(c.Metadata) > 0 && (metaKey == "" || len(metaKey) > domain.MetadataKeyLenMax || len(metaKey)+len(metaValue) > domain.MetadataBytesMax):
			t.Fatalf("Validate accepted metadata key %q with %d value bytes", metaKey, len(metaValue))
		}
		for i, p := range c.Postings {
			d, err := domain.ParseDecimal(p.Amount)
			if !domain.ValidID(p.Debit) || !domain.ValidID(p.Credit) || p.Debit == p.Credit ||
				!domain.ValidAssetCode(p.Asset) || err != nil || d.Sign() <= 0 {
				t.Fatalf("Validate accepted posting %d: %+v", i, p)
			}
		}
		// And Decide never panics on a validated command, nor changes the state.
		s := newWorld(t)
		before := snapshot(s, worldIDs)
		if _, err := decide(s, c); err != nil && outcome(err) == "UNKNOWN" {
			t.Fatalf("Decide: error %v is no sentinel", err)
		}
		if diff := cmp.Diff(before, snapshot(s, worldIDs), unitsEqual); diff != "" {
			t.Fatalf("Decide mutated accounts:\n%s", diff)
		}
	})
}

func FuzzUnmarshalEvent(f *testing.F) {
	for _, tc := range goldenEvents {
		b, err := domain.MarshalEvent(tc.event)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tc.event.EventType(), b)
	}
	f.Add(domain.TypeAccountOpened, []byte(`{"id":"a","asset":"USD","normal_balance":"credit","metadata":{}}`))
	f.Add(domain.TypeTransferCommitted, []byte(`{"id":"t","postings":[{"amount":"-0.000"}],"effective_at":"2026-01-02T03:04:05.123456789+14:00"}`))
	f.Add("Nope", []byte(`{}`))
	f.Add(domain.TypeTransferPending, []byte(`{"id":"h","postings":[],"effective_at":"2026-01-02T03:04:05-07:30","timeout_seconds":0,"expires_at":null}`))
	f.Add(domain.TypePendingPosted, []byte(`{"id":"p","pending_id":"h","postings":[{"amount":"2.00","held":"1.0"}],"effective_at":"2026-01-02T03:04:05Z"}`))
	f.Add(domain.TypeTransferReversed, []byte(`{"id":"r","transfer_id":"t","transfer_position":18446744073709551615,"postings":null,"effective_at":"2026-01-02T03:04:05Z"}`))
	f.Add(domain.TypeAccountBoundsChanged, []byte(`{"id":"a","min_balance":null,"max_balance":"-0.000"}`))
	f.Add(domain.TypeAccountMetadataSet, []byte(`{"id":"a","metadata":{}}`))
	f.Add(domain.TypePendingExpired, []byte(`{"pending_id":"h","postings":[{"debit":"a","credit":"b","asset":"JPY","amount":"5"}]}`))
	f.Add(domain.TypeAccountClosed, []byte(`{"id":"a","extra":1}`))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e, err := domain.UnmarshalEvent(typ, domain.SchemaVersion, data)
		if err != nil {
			return
		}
		if e.EventType() != typ {
			t.Fatalf("UnmarshalEvent(%q) returned a %s", typ, e.EventType())
		}
		b, err := domain.MarshalEvent(e)
		if err != nil {
			t.Fatalf("MarshalEvent of decoded %s %+v: %v", typ, e, err)
		}
		e2, err := domain.UnmarshalEvent(typ, domain.SchemaVersion, b)
		if err != nil {
			t.Fatalf("UnmarshalEvent of re-encoded %s: %v", b, err)
		}
		// A decoded {} metadata is written as absent and read back as nil.
		if diff := cmp.Diff(e, e2, unitsEqual, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip of %s differs (-first +second):\n%s", b, diff)
		}
		b2, err := domain.MarshalEvent(e2)
		if err != nil || string(b2) != string(b) {
			t.Fatalf("canonical bytes not stable: %s then %s (%v)", b, b2, err)
		}
		// The writer's fast path writes the same bytes, whatever the type.
		if got := domain.AppendEvent(nil, e); string(got) != string(b) {
			t.Fatalf("AppendEvent of decoded %s\n got %s\nwant %s", typ, got, b)
		}
	})
}

// TestUnmarshalEventRequiresNormalBalance: an event the contract cannot write
// must not be read either.
func TestUnmarshalEventRequiresNormalBalance(t *testing.T) {
	e, err := domain.UnmarshalEvent(domain.TypeAccountOpened, domain.SchemaVersion, []byte(`{"id":"a","asset":"USD"}`))
	if err == nil {
		t.Errorf("UnmarshalEvent = %+v, want an error", e)
	}
}

// TestFuzzCorpusOnDisk keeps the committed seed corpus from disappearing.
func TestFuzzCorpusOnDisk(t *testing.T) {
	for _, name := range []string{"FuzzParseDecimal", "FuzzValidateTransfer", "FuzzUnmarshalEvent"} {
		files, err := os.ReadDir(filepath.Join("testdata", "fuzz", name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(files) < 3 {
			t.Errorf("%s: %d corpus files, want at least 3", name, len(files))
		}
	}
}
