package grpcapi

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/webhooks"
)

// TestWebhookFromPositionErrorsNameTheField: a from_position not delivered
// yet, or past the one after the ledger's head, is an InvalidArgument
// naming from_position, its message the store's (which says the head).
func TestWebhookFromPositionErrorsNameTheField(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("replay wh_1 from 9: from 9, delivered up to 3: %w", webhooks.ErrAfterCursor),
		fmt.Errorf("create a subscription of l: from 100, the head is at 3 (at most 4): %w", webhooks.ErrPastHead),
	} {
		st := status.Convert(webhookStatusOf(err))
		if st.Code() != codes.InvalidArgument || violation(st) != "from_position" || !strings.Contains(st.Message(), err.Error()) {
			t.Errorf("%v: got %v (field %q), want InvalidArgument naming from_position", err, st, violation(st))
		}
	}
}
