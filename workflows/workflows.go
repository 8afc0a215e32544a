// Package workflows holds the ledger's use cases that span ports: loading an
// exported log (spool, verify, chunked fenced appends, resume), coordinating a
// projection rebuild, importing an account's statement lines. The transports
// (adapters/grpcapi) decode a request, call one of them and translate its
// documented sentinel errors; nothing here knows gRPC.
package workflows

import "fmt"

// refusal is an error of a kind (a sentinel of this package or of a port, for
// errors.Is) whose text is the whole story, as the caller shows it.
type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }

// refuse returns a refusal of kind.
func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}
