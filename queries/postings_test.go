package queries

import (
	"encoding/json"
	"reflect"
	"testing"
)

// postingsSeeds are postings columns as the transfers projector writes
// them (json, projections 0027), as jsonb wrote them before, and shapes
// scanPostings leaves to encoding/json.
var postingsSeeds = []string{
	postingsAsProjected,
	`[{"asset": "USD", "debit": "acct-1", "amount": "12.34", "credit": "acct-2", "reversed": "0.00"}]`,
	`[{"asset": "EUR", "debit": "a", "amount": "5", "credit": "b", "remaining": "5"}, {"asset": "EUR", "debit": "c", "amount": "1", "credit": "d", "remaining": "0"}]`,
	`[]`, `null`, ` [ { "debit" : "x" } ] `,
	`[{"asset": "U\u0053D", "debit": "a\"b", "amount": "1", "credit": "c"}]`,
	`[{"Asset": "USD"}]`, `[{"asset": 1}]`, `[{"asset": null}]`, `[{"extra": "x", "asset": "USD"}]`,
	`[{"asset": "USD",}]`, `[{"asset": "USD"}`, `[{"asset": "USD"}] x`, `[{"asset": "USD"} {"asset": "EUR"}]`,
}

// postingsAsProjected is a postings column as the transfers projector
// writes it (appendPostingsJSON).
const postingsAsProjected = `[{"debit":"acct-1","credit":"acct-2","asset":"USD","amount":"12.34","reversed":"0.00"},` +
	`{"debit":"a","credit":"b","asset":"USD","amount":"1","remaining":"1"}]`

// TestParsePostings: what scanPostings reads is what encoding/json reads,
// and what it does not is read by encoding/json; the projector's own text
// takes the fast path.
func TestParsePostings(t *testing.T) {
	if _, ok := scanPostings([]byte(postingsAsProjected)); !ok {
		t.Errorf("%s, as the projector writes it, left to encoding/json", postingsAsProjected)
	}
	for _, in := range postingsSeeds {
		var want []TransferPosting
		wantErr := json.Unmarshal([]byte(in), &want)
		got, err := parsePostings([]byte(in))
		if (err != nil) != (wantErr != nil) || (err == nil && !reflect.DeepEqual(got, want)) {
			t.Errorf("%s: got %+v, %v; encoding/json %+v, %v", in, got, err, want, wantErr)
		}
	}
	if _, ok := scanPostings([]byte(postingsSeeds[0])); !ok {
		t.Error("jsonb's own text is not read without encoding/json")
	}
}

func FuzzScanPostings(f *testing.F) {
	for _, s := range postingsSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := scanPostings([]byte(in))
		if !ok {
			return
		}
		var want []TransferPosting
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatalf("%q: scanned %+v, encoding/json refuses it: %v", in, got, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: scanned %+v, encoding/json reads %+v", in, got, want)
		}
	})
}
