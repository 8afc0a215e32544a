package natsbus_test

import (
	"testing"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/audit/logtest"
	"github.com/ledgerd/ledger/domain"
)

// TestLargestEventsTravelTheStream: every event a writer decides (and,
// since ImportPayloadMax is 2 MiB, every event an import takes) must reach
// the projections: the relay's frame of it must parse back. A period's close
// over many assets is over a megabyte, which frameDecodedMax refuses.
func TestLargestEventsTravelTheStream(t *testing.T) {
	l := logtest.LargestLog(t)
	for _, typ := range domain.EventTypes() {
		pos, ok := l.ByType[typ]
		if !ok {
			continue
		}
		rec := l.Records[pos-1]
		msg := natsbus.NewFrame("ledger.test", l.Records[pos-1:pos])
		if _, err := natsbus.ParseFrame(rec.Ledger, pos, pos, msg.Data); err != nil {
			t.Errorf("%s at %d, payload of %d bytes, frame of %d bytes: %v", typ, pos, len(rec.Payload), len(msg.Data), err)
		}
	}
}
