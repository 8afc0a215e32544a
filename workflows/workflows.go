// Package workflows holds the ledger's use cases that span ports: loading an
// exported log (spool, verify, chunked fenced appends, resume), coordinating a
// projection rebuild, importing an account's statement lines. The transports
// (adapters/grpcapi) decode a request, call one of them and translate its
// documented sentinel errors; nothing here knows gRPC.
package workflows

import (
	"fmt"
	"sync"
)

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

// inFlight is a set of keys with work in progress: one at a time per key.
// The zero value is ready.
type inFlight struct {
	mu   sync.Mutex
	keys map[string]bool
}

// claim takes key and returns its release, or false when key is taken.
func (f *inFlight) claim(key string) (release func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys[key] {
		return nil, false
	}
	if f.keys == nil {
		f.keys = map[string]bool{}
	}
	f.keys[key] = true
	return func() { f.mu.Lock(); delete(f.keys, key); f.mu.Unlock() }, true
}
