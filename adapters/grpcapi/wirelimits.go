package grpcapi

// Bounds of the wire that a client must know too: ledgerctl imports these
// (and the page bounds of queries) instead of copying the numbers, so the two
// cannot drift apart.
const (
	// SendMax bounds a response message ledgerd sends (grpc.MaxSendMsgSize):
	// 8,192 results, or a page of 1,000 statement lines with full metadata,
	// fit. A client's receive bound must be at least this.
	SendMax = 64 << 20
	// ImportEventsPerMessageMax bounds the events of one ImportEventsRequest.
	ImportEventsPerMessageMax = 8192
)
