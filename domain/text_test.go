package domain_test

import (
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// TestLabelsRefuseNULAndInvalidUTF8: the read models cannot store NUL, and
// invalid UTF-8 would not survive JSON byte for byte.
func TestLabelsRefuseNULAndInvalidUTF8(t *testing.T) {
	for name, tc := range map[string]struct {
		reference string
		metadata  map[string]string
		field     string
	}{
		"NUL in reference":        {reference: "a\x00b", field: "reference"},
		"invalid UTF-8 reference": {reference: "caf\xe9", field: "reference"},
		"NUL in metadata value":   {metadata: map[string]string{"k": "\x00"}, field: "metadata"},
		"NUL in metadata key":     {metadata: map[string]string{"k\x00": "v"}, field: "metadata"},
		"invalid UTF-8 value":     {metadata: map[string]string{"k": "\xff"}, field: "metadata"},
	} {
		t.Run(name, func(t *testing.T) {
			c := transfer("t1", usdOne())
			c.Reference, c.Metadata = tc.reference, tc.metadata
			checkErr(t, c.Validate(), domain.ErrInvalidField, tc.field)
		})
	}
	ok := transfer("t2", usdOne())
	ok.Reference, ok.Metadata = "café ✓\ttab", map[string]string{"ключ": "值"}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid UTF-8 labels refused: %v", err)
	}
}
