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

// Bounds of an event in the log: every reader of the log (an import, the
// stream's frames, the server they pass through) takes the largest event a
// writer decides because it takes these.
const (
	// EventPayloadMax bounds an event's payload, its JSON. The largest a
	// writer decides is a period's close over AssetsMaxDefault assets, a
	// line of trial balance each (codes of 16 bytes, sums of up to 46
	// characters at scale 18): 1.6 MB at most, 1.1 MB with every sum zero.
	// The largest of any other type, an alert or a post of 64 postings with
	// ids of 128 bytes and metadata escaped six-fold, is under 64 KB.
	// audit's TestImportBoundsHoldLargestEvents holds every event type to it.
	EventPayloadMax = 2 << 20
	// EventTypeLenMax bounds an event type's name.
	EventTypeLenMax = 64
)

// Event type names, as stored in the log.
const (
	TypeAssetDefined         = "AssetDefined"
	TypeAccountOpened        = "AccountOpened"
	TypeAccountBoundsChanged = "AccountBoundsChanged"
	TypeAccountMetadataSet   = "AccountMetadataSet"
	TypeAccountClosed        = "AccountClosed"
	TypeTransferCommitted    = "TransferCommitted"
	TypeTransferPending      = "TransferPending"
	TypePendingPosted        = "PendingPosted"
	TypePendingVoided        = "PendingVoided"
	TypePendingExpired       = "PendingExpired"
	TypeTransferReversed     = "TransferReversed"
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

// AccountBoundsChanged sets an account's bounds from now on; absent is none.
// It never rewrites the past: earlier transfers were checked against the
// bounds of their time.
type AccountBoundsChanged struct {
	ID         string  `json:"id"`
	MinBalance *Amount `json:"min_balance,omitempty"`
	MaxBalance *Amount `json:"max_balance,omitempty"`
}

// AccountMetadataSet replaces an account's metadata.
type AccountMetadataSet struct {
	ID       string            `json:"id"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// AccountClosed closes an account: no transfer may touch it again.
type AccountClosed struct {
	ID string `json:"id"`
}

// TransferPending holds its postings' amounts in the pending fields until it
// is posted, voided or expires (at ExpiresAt, when set).
type TransferPending struct {
	ID          string            `json:"id"`
	Postings    []Posting         `json:"postings"`
	Reference   string            `json:"reference,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	EffectiveAt time.Time         `json:"effective_at"`
	// TimeoutSeconds as requested; ExpiresAt is the recorded time plus it.
	TimeoutSeconds uint32     `json:"timeout_seconds,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	// Alert is the alert whose rule's hold action placed the hold (none for
	// a client's): monitoring rules do not count it.
	Alert string `json:"alert,omitempty"`
}

// PendingPosted posts a pending transfer: one posting per original posting,
// with the amount posted (at most what was held, zero allowed) and the amount
// held, all of which leaves the pending fields. Self-contained: a projection
// needs no state to apply it.
type PendingPosted struct {
	ID          string            `json:"id"`
	PendingID   string            `json:"pending_id"`
	Postings    []HeldPosting     `json:"postings"`
	Reference   string            `json:"reference,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	EffectiveAt time.Time         `json:"effective_at"`
}

// HeldPosting is a posting of a pending transfer as posted: Amount posted out
// of Held.
type HeldPosting struct {
	Debit  string `json:"debit"`
	Credit string `json:"credit"`
	Asset  string `json:"asset"`
	Amount Amount `json:"amount"`
	Held   Amount `json:"held"`
}

// Posted is the posted part: Amount along the posting.
func (h HeldPosting) Posted() Posting {
	return Posting{Debit: h.Debit, Credit: h.Credit, Asset: h.Asset, Amount: h.Amount}
}

// Released is what was held: Held along the posting.
func (h HeldPosting) Released() Posting {
	return Posting{Debit: h.Debit, Credit: h.Credit, Asset: h.Asset, Amount: h.Held}
}

// PendingVoided releases a pending transfer in full: Postings are what it held.
type PendingVoided struct {
	ID        string    `json:"id"`
	PendingID string    `json:"pending_id"`
	Postings  []Posting `json:"postings"`
	Reference string    `json:"reference,omitempty"`
}

// PendingExpired releases a pending transfer whose timeout passed: Postings
// are what it held. The writer decides it itself.
type PendingExpired struct {
	PendingID string    `json:"pending_id"`
	Postings  []Posting `json:"postings"`
}

// TransferReversed undoes all or part of a posted transfer (TransferID): its
// Postings move the amounts back, credit to debit.
type TransferReversed struct {
	ID         string `json:"id"`
	TransferID string `json:"transfer_id"`
	// TransferPosition is where the original was committed: replay finds it
	// exactly, whatever the id index holds.
	TransferPosition uint64            `json:"transfer_position"`
	Postings         []Posting         `json:"postings"`
	Reference        string            `json:"reference,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	EffectiveAt      time.Time         `json:"effective_at"`
}

func (AssetDefined) EventType() string         { return TypeAssetDefined }
func (AccountOpened) EventType() string        { return TypeAccountOpened }
func (AccountBoundsChanged) EventType() string { return TypeAccountBoundsChanged }
func (AccountMetadataSet) EventType() string   { return TypeAccountMetadataSet }
func (AccountClosed) EventType() string        { return TypeAccountClosed }
func (TransferCommitted) EventType() string    { return TypeTransferCommitted }
func (TransferPending) EventType() string      { return TypeTransferPending }
func (PendingPosted) EventType() string        { return TypePendingPosted }
func (PendingVoided) EventType() string        { return TypePendingVoided }
func (PendingExpired) EventType() string       { return TypePendingExpired }
func (TransferReversed) EventType() string     { return TypeTransferReversed }

// EventTypes returns the name of every event type of the contract: those
// UnmarshalEvent reads. A test holds it to the package's event structs (each
// type with an EventType method), so that what must cover every event (the
// golden files, the bounds of an import) cannot miss a new one.
func EventTypes() []string {
	return []string{TypeAssetDefined, TypeAccountOpened, TypeAccountBoundsChanged, TypeAccountMetadataSet,
		TypeAccountClosed, TypeTransferCommitted, TypeTransferPending, TypePendingPosted, TypePendingVoided,
		TypePendingExpired, TypeTransferReversed, TypeStatementImported, TypeMatchingRulesSet, TypeMatchedManually,
		TypeUnmatched, TypePeriodClosed, TypeCategoryDefined, TypeAccountFrozen, TypeAccountUnfrozen, TypeRuleDefined,
		TypeAlertRaised}
}

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
		e, err = decodeAs[AssetDefined](data)
	case TypeAccountOpened:
		var v AccountOpened
		v, err = decodeAs[AccountOpened](data)
		if err == nil && v.Normal != SideCredit && v.Normal != SideDebit {
			err = fmt.Errorf("normal_balance missing: %w", ErrInvalidField)
		}
		e = v
	case TypeAccountBoundsChanged:
		e, err = decodeAs[AccountBoundsChanged](data)
	case TypeAccountMetadataSet:
		e, err = decodeAs[AccountMetadataSet](data)
	case TypeAccountClosed:
		e, err = decodeAs[AccountClosed](data)
	case TypeTransferCommitted:
		if t, fast := decodeTransferCommitted(data); fast == nil {
			return t, nil
		}
		e, err = decodeAs[TransferCommitted](data)
	case TypeTransferPending:
		e, err = decodeAs[TransferPending](data)
	case TypePendingPosted:
		e, err = decodeAs[PendingPosted](data)
	case TypePendingVoided:
		e, err = decodeAs[PendingVoided](data)
	case TypePendingExpired:
		e, err = decodeAs[PendingExpired](data)
	case TypeTransferReversed:
		e, err = decodeAs[TransferReversed](data)
	case TypeStatementImported:
		var v StatementImported
		v, err = decodeAs[StatementImported](data)
		if err == nil && v.Direction != SideCredit && v.Direction != SideDebit {
			err = fmt.Errorf("direction missing: %w", ErrInvalidField)
		}
		e = v
	case TypeMatchingRulesSet:
		e, err = decodeAs[MatchingRulesSet](data)
	case TypeMatchedManually:
		e, err = decodeAs[MatchedManually](data)
	case TypeUnmatched:
		e, err = decodeAs[Unmatched](data)
	case TypePeriodClosed:
		var v PeriodClosed
		v, err = decodeAs[PeriodClosed](data)
		if err == nil && v.End.IsZero() {
			err = fmt.Errorf("end missing: %w", ErrInvalidField)
		}
		e = v
	case TypeCategoryDefined:
		e, err = decodeAs[CategoryDefined](data)
	case TypeAccountFrozen:
		e, err = decodeAs[AccountFrozen](data)
	case TypeAccountUnfrozen:
		e, err = decodeAs[AccountUnfrozen](data)
	case TypeRuleDefined:
		var v RuleDefined
		v, err = decodeAs[RuleDefined](data)
		if err == nil {
			err = v.Rule.check()
		}
		e = v
	case TypeAlertRaised:
		e, err = decodeAs[AlertRaised](data)
	default:
		return nil, fmt.Errorf("%s v%d: %w", typ, version, ErrUnknownEvent)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	return e, nil
}

func decodeAs[T any](data []byte) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}
