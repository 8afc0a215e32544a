package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event is a fact in a ledger's log. Its JSON form is the public contract: field
// names and order are fixed (struct order, map keys sorted), which also makes the
// bytes canonical for the hash chain. A change of shape bumps SchemaVersion.
type Event interface {
	// EventType names the event in the log, e.g. "TransferCommitted".
	EventType() string
}

// SchemaVersion is the version of every event type's JSON shape written today.
const SchemaVersion = 1

// Event type names, as stored in the log.
const (
	TypeAssetDefined      = "AssetDefined"
	TypeAccountOpened     = "AccountOpened"
	TypeTransferCommitted = "TransferCommitted"
)

// AssetDefined declares an asset and its scale.
type AssetDefined struct {
	Code  string `json:"code"`
	Scale uint8  `json:"scale"`
}

// AccountOpened opens an account. Bounds are absent when unset.
type AccountOpened struct {
	ID         string            `json:"id"`
	Asset      string            `json:"asset"`
	Normal     Side              `json:"normal_balance"`
	MinBalance *Amount           `json:"min_balance,omitempty"`
	MaxBalance *Amount           `json:"max_balance,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

// TransferCommitted moves money along its postings, all of them at once.
type TransferCommitted struct {
	ID          string            `json:"id"`
	Postings    []Posting         `json:"postings"`
	Reference   string            `json:"reference,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	EffectiveAt time.Time         `json:"effective_at"`
}

// Posting is one leg of a transfer: Amount moves from Debit to Credit.
type Posting struct {
	Debit  string `json:"debit"`
	Credit string `json:"credit"`
	Asset  string `json:"asset"`
	Amount Amount `json:"amount"`
}

func (AssetDefined) EventType() string      { return TypeAssetDefined }
func (AccountOpened) EventType() string     { return TypeAccountOpened }
func (TransferCommitted) EventType() string { return TypeTransferCommitted }

// MarshalEvent returns the canonical JSON of e through encoding/json: the
// reference that AppendEvent, the fast path, is tested against.
//
// Errors: only for a malformed event, which is a bug upstream.
func MarshalEvent(e Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", e.EventType(), err)
	}
	return b, nil
}

// ErrUnknownEvent is returned for an event type or version this build cannot read.
var ErrUnknownEvent = fmt.Errorf("unknown event type or version")

// UnmarshalEvent decodes an event from the log.
//
// Errors: ErrUnknownEvent, or the JSON error of a malformed payload.
func UnmarshalEvent(typ string, version int, data []byte) (Event, error) {
	if version != SchemaVersion {
		return nil, fmt.Errorf("%s v%d: %w", typ, version, ErrUnknownEvent)
	}
	var (
		e   Event
		err error
	)
	switch typ {
	case TypeAssetDefined:
		var v AssetDefined
		err = json.Unmarshal(data, &v)
		e = v
	case TypeAccountOpened:
		var v AccountOpened
		err = json.Unmarshal(data, &v)
		if err == nil && v.Normal != SideCredit && v.Normal != SideDebit {
			err = fmt.Errorf("normal_balance missing: %w", ErrInvalidField)
		}
		e = v
	case TypeTransferCommitted:
		var v TransferCommitted
		err = json.Unmarshal(data, &v)
		e = v
	default:
		return nil, fmt.Errorf("%s v%d: %w", typ, version, ErrUnknownEvent)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	return e, nil
}
