package queries

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
)

// Alerts: the alerts projection's rows, in position order, by pages; by
// rule or by account, each behind its index (migration 0017).

// Limits of alert queries.
const (
	// AlertsLimitMax bounds a page of ListAlerts; AlertsLimitDefault is its
	// default.
	AlertsLimitMax     = 1000
	AlertsLimitDefault = 100
)

var (
	// ErrAlertsLimit means a page size over AlertsLimitMax.
	ErrAlertsLimit error = domain.NewInvalid("limit", "limit over 1000", "at most 1000 alerts")
	// ErrBadAlertsCursor means a cursor ListAlerts did not write.
	ErrBadAlertsCursor error = domain.NewInvalid("cursor", "malformed cursor", "not a cursor from ListAlerts")
	// ErrBadAlertFilter means a rule id or account that is no id.
	ErrBadAlertFilter error = domain.NewError(domain.KindInvalid, "not an id", "")
)

// AlertFilter narrows ListAlerts: to a rule, an account, or both.
type AlertFilter struct {
	RuleID, Account string
}

// AlertsPage is ListAlerts' answer.
type AlertsPage struct {
	Alerts []domain.Alert
	// Raised holds, for each of Alerts, the position of its AlertRaised
	// event (0: not raised yet).
	Raised     []uint64
	NextCursor string
	Position   uint64
}

// ListAlerts returns up to limit (0: AlertsLimitDefault) alerts in position
// order after cursor, once the alerts projection has reached minPosition.
//
// Errors: ErrAlertsLimit; ErrBadAlertsCursor; ErrBadAlertFilter (as a field
// error); domain.ErrUnknownLedger; ErrMinPositionBeyondHead; ErrNotReached;
// database errors.
func (s *Service) ListAlerts(ctx context.Context, ledger string, f AlertFilter, cursor string, limit int, minPosition uint64) (AlertsPage, error) {
	s = s.route()
	switch {
	case limit < 0 || limit > AlertsLimitMax:
		return AlertsPage{}, fmt.Errorf("limit %d: %w", limit, ErrAlertsLimit)
	case limit == 0:
		limit = AlertsLimitDefault
	}
	if f.RuleID != "" && !domain.ValidID(f.RuleID) {
		return AlertsPage{}, &domain.FieldError{Field: "rule_id", Err: ErrBadAlertFilter}
	}
	if f.Account != "" && !domain.ValidID(f.Account) {
		return AlertsPage{}, &domain.FieldError{Field: "account", Err: ErrBadAlertFilter}
	}
	afterPos, afterID, err := decodeAlertsCursor(cursor)
	if err != nil {
		return AlertsPage{}, err
	}
	s, err = s.waitFor(ctx, ledger, "alerts", minPosition)
	if err != nil {
		return AlertsPage{}, err
	}
	var out AlertsPage
	err = pgx.BeginTxFunc(ctx, s.pool, movementSnapshot, func(tx pgx.Tx) error {
		if out.Position, err = checkpointOf(ctx, tx, ledger, "alerts"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+alertColumns+`, coalesce(raised, 0) FROM alerts
			WHERE ledger = $1 AND ($2 = '' OR rule_id = $2) AND ($3 = '' OR account = $3) AND (position, id) > ($4, $5)
			ORDER BY position, id LIMIT $6`, ledger, f.RuleID, f.Account, int64(afterPos), afterID, limit+1)
		if err != nil {
			return err
		}
		out.Alerts, err = scanAlerts(rows, &out.Raised)
		return err
	})
	if err != nil {
		return AlertsPage{}, fmt.Errorf("alerts of %s: %w", ledger, err)
	}
	if len(out.Alerts) > limit {
		out.Alerts, out.Raised = out.Alerts[:limit], out.Raised[:limit]
		last := out.Alerts[limit-1]
		out.NextCursor = encodeAlertsCursor(last.Position, last.ID)
	}
	if out.Position == 0 && len(out.Alerts) == 0 {
		if err := s.mustExistLedger(ctx, ledger); err != nil {
			return AlertsPage{}, err
		}
	}
	return out, nil
}

const alertsCursorVersion = 1

func encodeAlertsCursor(pos uint64, id string) string {
	b := binary.AppendUvarint([]byte{alertsCursorVersion}, pos)
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

// decodeAlertsCursor reads a cursor; "" is the start.
//
// Errors: ErrBadAlertsCursor.
func decodeAlertsCursor(cursor string) (uint64, string, error) {
	if cursor == "" {
		return 0, "", nil
	}
	if len(cursor) > base64.RawURLEncoding.EncodedLen(1+binary.MaxVarintLen64+domain.AlertIDLenMax) {
		return 0, "", fmt.Errorf("cursor of %d bytes: %w", len(cursor), ErrBadAlertsCursor)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(b) < 2 || b[0] != alertsCursorVersion {
		return 0, "", fmt.Errorf("cursor %.40q: %w", cursor, ErrBadAlertsCursor)
	}
	pos, n := binary.Uvarint(b[1:])
	if n <= 0 || pos > 1<<63-1 || len(b[1+n:]) == 0 {
		return 0, "", fmt.Errorf("cursor %.40q: %w", cursor, ErrBadAlertsCursor)
	}
	return pos, string(b[1+n:]), nil
}

// FreezesPageMax bounds a page of FreezingAlerts.
const FreezesPageMax = 1000

// FreezingAlerts returns up to limit (1..FreezesPageMax) alerts whose rule
// freezes, after the alert after (by position, then id), in that order: the
// what the alerter's freeze pass reads, behind the partial index alerts_freezing.
//
// Errors: ErrAlertsLimit; database errors.
func (s *Service) FreezingAlerts(ctx context.Context, ledger string, after domain.AlertMark, limit int) ([]domain.Alert, error) {
	s = s.route()
	if limit < 1 || limit > FreezesPageMax {
		return nil, fmt.Errorf("limit %d: %w", limit, ErrAlertsLimit)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+alertColumns+` FROM alerts
		WHERE ledger = $1 AND freezes AND (position, id) > ($2, $3) ORDER BY position, id LIMIT $4`,
		ledger, int64(after.Position), after.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("freezing alerts of %s: %w", ledger, err)
	}
	out, err := scanAlerts(rows, nil)
	if err != nil {
		return nil, fmt.Errorf("freezing alerts of %s: %w", ledger, err)
	}
	return out, nil
}

// alertColumns are what scanAlerts reads, in its order.
const alertColumns = `position, id, rule_id, rule_version, transfer_id, account, counterparties, asset, figures, freezes,
	recorded_at, effective_at, hold_account`

// scanAlerts reads rows of alertColumns, times in UTC; with raised not nil,
// rows of alertColumns and the position of the alert's AlertRaised (0 for
// none), appended to *raised.
func scanAlerts(rows pgx.Rows, raised *[]uint64) ([]domain.Alert, error) {
	var (
		out       []domain.Alert
		a         domain.Alert
		pos, ver  int64
		figures   []byte
		effective *time.Time
		raisedAt  int64
	)
	dest := []any{&pos, &a.ID, &a.RuleID, &ver, &a.TransferID, &a.Account, &a.Counterparties,
		&a.Asset, &figures, &a.Freeze, &a.RecordedAt, &effective, &a.HoldAccount}
	if raised != nil {
		dest = append(dest, &raisedAt)
	}
	_, err := pgx.ForEachRow(rows, dest, func() error {
		a.Position, a.RuleVersion, a.RecordedAt = uint64(pos), uint32(ver), a.RecordedAt.UTC()
		if effective != nil {
			a.EffectiveAt = effective.UTC()
		}
		if err := json.Unmarshal(figures, &a.Figures); err != nil {
			return fmt.Errorf("alert %s: figures: %w", a.ID, err)
		}
		out = append(out, a)
		if raised != nil {
			*raised = append(*raised, uint64(raisedAt))
		}
		a, effective = domain.Alert{}, nil
		return nil
	})
	return out, err
}

// AlertsAfter returns up to limit (1..FreezesPageMax) alerts after the
// mark, in the order they are raised (position, then id in byte order):
// what ledgerd's alerter writes into the log next. It reads the alerts
// projection as it is, without waiting.
//
// Errors: ErrAlertsLimit; database errors.
func (s *Service) AlertsAfter(ctx context.Context, ledger string, after domain.AlertMark, limit int) ([]domain.Alert, error) {
	s = s.route()
	if limit < 1 || limit > FreezesPageMax {
		return nil, fmt.Errorf("limit %d: %w", limit, ErrAlertsLimit)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+alertColumns+` FROM alerts
		WHERE ledger = $1 AND (position, id) > ($2, $3) ORDER BY position, id LIMIT $4`,
		ledger, int64(after.Position), after.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("alerts of %s: %w", ledger, err)
	}
	out, err := scanAlerts(rows, nil)
	if err != nil {
		return nil, fmt.Errorf("alerts of %s: %w", ledger, err)
	}
	return out, nil
}
