package domain

import (
	"encoding/json"
	"fmt"
)

// Amount is money in one asset's minor units, carrying the asset's scale so that
// it prints exactly ("10.00", never "10" or "1e1"). It is the JSON form of every
// amount in the event contract.
type Amount struct {
	Units Units
	Scale uint8
}

func (a Amount) String() string { return a.Units.Format(a.Scale) }

// MarshalJSON writes the amount as a decimal string.
func (a Amount) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 24)
	b = append(b, '"')
	b = append(b, a.String()...)
	return append(b, '"'), nil
}

// UnmarshalJSON reads a decimal string; its fractional digits give the scale.
func (a *Amount) UnmarshalJSON(b []byte) error {
	// A decimal string has no escapes: take it between its quotes, and leave
	// anything else to encoding/json to refuse or decode.
	var s string
	if n := len(b); n >= 2 && b[0] == '"' && b[n-1] == '"' && !bytesContain(b[1:n-1], '\\') {
		s = string(b[1 : n-1])
	} else if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("amount: %w", err)
	}
	d, err := ParseDecimal(s)
	if err != nil {
		return err
	}
	u, err := d.Units(d.frac)
	if err != nil {
		return err
	}
	*a = Amount{Units: u, Scale: d.frac}
	return nil
}

func bytesContain(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}
