package domain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
)

// TestSnapshotRuleHoldsRefusesWhatNoLogMakes: the rules' hold accounts of
// snapshot format 7 that no log can make are refused: a hold of a version
// after the rule's current one, a rule listed twice, or a current version
// with the hold action whose own hold account is missing or another.
func TestSnapshotRuleHoldsRefusesWhatNoLogMakes(t *testing.T) {
	t.Parallel()
	type hold struct {
		version uint64
		account string
	}
	type entry struct {
		rule  string
		holds []hold
	}
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"a version after the rule's", []entry{{"big", []hold{{5, "world"}}}}},
		{"a rule twice", []entry{{"big", []hold{{1, "world"}}}, {"big", []hold{{2, "alice"}}}}},
		{"the current version's hold account another", []entry{{"big", []hold{{2, "alice"}, {3, "mallory"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := binary.AppendUvarint(nil, uint64(len(tc.entries)))
			for _, e := range tc.entries {
				b = str(b, e.rule)
				b = binary.AppendUvarint(b, uint64(len(e.holds)))
				for _, h := range e.holds {
					b = binary.AppendUvarint(b, h.version)
					b = str(b, h.account)
				}
			}
			s := &State{monitor: newMonitorState()}
			// Rule big at version 3, holding towards world.
			s.monitor.rules["big"] = &RuleVersion{Rule: Rule{ID: "big", Asset: "USD", Actions: []RuleAction{ActionHold}, HoldAccount: "world",
				Threshold: &ThresholdRule{Side: SideCredit}}, Version: 3}
			d := &snapReader{r: bytes.NewReader(b), h: sha256.New(), buf: make([]byte, 64), size: -1}
			d.ruleHolds(s)
			if !errors.Is(d.err, ErrSnapshotCorrupt) {
				t.Fatalf("rule holds %+v of rule big at version 3 (holding towards world) read: %v, holds %+v, want ErrSnapshotCorrupt",
					tc.entries, d.err, s.monitor.holds)
			}
		})
	}
}
