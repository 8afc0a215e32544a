// Package storelog reads a ledger's log from the event store (PostgreSQL)
// directly: an audit.Log for whoever can reach the database.
package storelog

import (
	"context"
	"fmt"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
)

// Log reads a ledger's log from the event store directly, in pages of
// eventstore.ReadMax.
type Log struct {
	Store *eventstore.Store
	Name  string
}

func (l *Log) Ledger() string { return l.Name }

// Head is the store's head row.
//
// Errors: the database's.
func (l *Log) Head(ctx context.Context) (uint64, error) {
	head, _, err := l.Store.Head(ctx, l.Name)
	return head, err
}

// Read reads pages of eventstore.ReadMax.
//
// Errors: the database's, or fn's.
func (l *Log) Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error {
	if to != 0 && max(from, 1) > to {
		return fmt.Errorf("read %s from %d to %d: %w", l.Name, from, to, audit.ErrRange)
	}
	from = max(from, 1)
	for to == 0 || from <= to {
		limit := eventstore.ReadMax
		if to != 0 {
			limit = int(min(to-from+1, eventstore.ReadMax))
		}
		recs, err := l.Store.Read(ctx, l.Name, from, limit)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		for i, r := range recs {
			if to != 0 && r.Position > to {
				recs = recs[:i]
				break
			}
		}
		if len(recs) == 0 {
			return nil
		}
		if err := fn(recs); err != nil {
			return err
		}
		from = recs[len(recs)-1].Position + 1
	}
	return nil
}

// PastHead looks for rows past the head row (eventstore.Store.PastHead).
//
// Errors: the database's.
func (l *Log) PastHead(ctx context.Context) (head, first, n uint64, err error) {
	return l.Store.PastHead(ctx, l.Name)
}
