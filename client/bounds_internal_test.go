package client

import (
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// TestTransferBoundsAreLedgerds: the client's copy of ledgerd's bounds of
// one transfer (it imports no server package) stays ledgerd's.
func TestTransferBoundsAreLedgerds(t *testing.T) {
	if transferPostingsMax != domain.PostingsPerTransfer || transferMetadataKeysMax != domain.MetadataKeysMax {
		t.Fatalf("client bounds %d postings, %d metadata keys; ledgerd's %d, %d",
			transferPostingsMax, transferMetadataKeysMax, domain.PostingsPerTransfer, domain.MetadataKeysMax)
	}
}
