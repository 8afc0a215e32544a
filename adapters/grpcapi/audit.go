package grpcapi

import (
	"log/slog"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// AuditServer serves ledger.v1.AuditService: the log itself, for auditors
// (ReadEvents, audit_read.go), every statement line at once for `audit
// verify` (ReadStatementLines, audit_lines.go), and the import of an
// exported log into a new ledger (ImportEvents, audit_import.go).
type AuditServer struct {
	ledgerv1.UnimplementedAuditServiceServer
	store  *eventstore.Store
	reads  *queries.Service
	logger *slog.Logger
	// logImport runs ImportEvents.
	logImport *workflows.LogImport
	// wires holds the buffers of the messages ReadEvents and
	// ReadStatementLines encode themselves.
	wires *bufferPool
	// linesStallMax and streamStallMax replace StatementLinesStallMax and
	// StreamStallMax, importIdleMax ImportMessageWaitMax, when set (tests).
	linesStallMax, streamStallMax, importIdleMax time.Duration
}

// NewAuditServer returns an AuditServer over the event store and the read
// models' queries (reads); writers start a ledger's writer once an import
// has loaded its log. Its gRPC server must have DecodeOptions' codec:
// ReadEvents and ReadStatementLines write their messages' wire themselves,
// and only that codec sends them (protobuf's refuses them: Internal).
func NewAuditServer(store *eventstore.Store, reads *queries.Service, writers Writers, logger *slog.Logger) *AuditServer {
	return &AuditServer{store: store, reads: reads, logger: logger, logImport: workflows.NewLogImport(store, writers, logger),
		wires: &bufferPool{}}
}
