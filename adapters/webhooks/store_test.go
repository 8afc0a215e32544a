package webhooks_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/internal/testenv"
)

// A subscription from a position past the one after the head is refused,
// the error naming the head: its cursor would stand past the log's last
// event, where the dispatcher found no event to continue the hash chain
// from and reported the chain broken every few seconds instead of waiting.
// From the head's next position, or before, is taken.
func TestCreateRefusesAFromPastTheHead(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger, empty := testenv.Name(t), testenv.Name(t)
	appendEvents(t, ctx, e.log, ledger, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	for _, c := range []struct {
		name   string
		ledger string
		from   uint64
		cursor uint64 // want; ^0: refused
	}{
		{"from the head", ledger, 0, 3},
		{"from the first", ledger, 1, 0},
		{"from the head's next", ledger, 4, 3},
		{"past it", ledger, 5, ^uint64(0)},
		{"far past it", ledger, 100, ^uint64(0)},
		{"empty ledger, from the first", empty, 1, 0},
		{"empty ledger, past it", empty, 2, ^uint64(0)},
	} {
		sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: c.ledger, URL: "http://127.0.0.1:9/hook", FromPosition: c.from})
		if c.cursor == ^uint64(0) {
			if !errors.Is(err, webhooks.ErrPastHead) {
				t.Errorf("%s: %v, want ErrPastHead", c.name, err)
			} else if head := map[string]string{ledger: "head is at 3", empty: "head is at 0"}[c.ledger]; !strings.Contains(err.Error(), head) {
				t.Errorf("%s: %q does not say %q", c.name, err, head)
			}
			continue
		}
		if err != nil || sub.DeliveredPosition != c.cursor {
			t.Errorf("%s: cursor %d, err %v; want %d", c.name, sub.DeliveredPosition, err, c.cursor)
		}
	}
}

// A replay from past the head's next position is refused as a creation
// from there is. Only a subscription created from past the head before
// creations were checked has a cursor there; a replay from the head's next
// position mends it.
func TestReplayFromRefusesAFromPastTheHead(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger := testenv.Name(t)
	appendEvents(t, ctx, e.log, ledger, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: "http://127.0.0.1:9/hook"})
	testenv.NoError(t, err)
	_, err = e.pool.Exec(ctx, `UPDATE webhook_subscriptions SET delivered_position = 9, delivered_hash = NULL WHERE id = $1`, sub.ID)
	testenv.NoError(t, err)

	if _, err := e.store.ReplayFrom(ctx, ledger, sub.ID, 5); !errors.Is(err, webhooks.ErrPastHead) {
		t.Fatalf("from 5, the head at 3: %v, want ErrPastHead", err)
	}
	n, err := e.store.ReplayFrom(ctx, ledger, sub.ID, 4)
	testenv.NoError(t, err)
	subs, err := e.store.List(ctx, ledger)
	testenv.NoError(t, err)
	if n != 6 || len(subs) != 1 || subs[0].DeliveredPosition != 3 {
		t.Fatalf("from 4: %d positions, subscriptions %+v; want 6, the cursor at 3", n, subs)
	}
}
