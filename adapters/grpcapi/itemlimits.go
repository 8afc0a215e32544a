package grpcapi

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
)

// A decoded message costs far more than its wire bytes: an empty Transfer
// is 2 bytes on the wire and some 150 in memory, so a CreateTransfers of
// 8 MiB of them grew the heap by 584 MiB before its 8,192 items were
// counted. The elements of every repeated field and map of a request are
// therefore counted on the wire, before it is decoded (overfullField),
// all of a field's in the request together: a request's own lists against
// their bounds (RepeatedMax), which their handlers check as a whole
// (InvalidArgument naming the field), and the lists of its lists' elements
// against their bound times the bounds of the lists they are in (a
// CreateTransfers holds at most 8,192 × 64 postings). An element over its
// own bound (a transfer of 65 postings) is its item's fault, for the
// domain to answer in that item's result: only a request beyond what
// legitimate items could hold is refused whole. What it may then hold
// decoded is bounded as a legitimate batch of its size is.

// RepeatedMaxDefault bounds the elements of a request's repeated field or
// map that repeatedMax does not list: the largest bound any request
// documents (ItemsPerRequestMax).
const RepeatedMaxDefault = commands.ItemsPerRequestMax

// repeatedMax is the bound of each repeated field and map of the requests,
// by the field's full name: the one the proto documents and the handler or
// the domain checks (a map's entries are counted on the wire, duplicate
// keys included).
var repeatedMax = map[protoreflect.FullName]int{
	"ledger.v1.OpenAccountsRequest.accounts":          commands.ItemsPerRequestMax,
	"ledger.v1.Account.metadata":                      domain.MetadataKeysMax,
	"ledger.v1.CreateTransfersRequest.transfers":      commands.ItemsPerRequestMax,
	"ledger.v1.Transfer.postings":                     domain.PostingsPerTransfer,
	"ledger.v1.Transfer.metadata":                     domain.MetadataKeysMax,
	"ledger.v1.PostPendingTransfersRequest.posts":     commands.ItemsPerRequestMax,
	"ledger.v1.PostPending.amounts":                   domain.PostingsPerTransfer,
	"ledger.v1.PostPending.metadata":                  domain.MetadataKeysMax,
	"ledger.v1.VoidPendingTransfersRequest.voids":     commands.ItemsPerRequestMax,
	"ledger.v1.ReverseTransfersRequest.reversals":     commands.ItemsPerRequestMax,
	"ledger.v1.Reversal.amounts":                      domain.PostingsPerTransfer,
	"ledger.v1.Reversal.metadata":                     domain.MetadataKeysMax,
	"ledger.v1.SetAccountBoundsRequest.bounds":        commands.ItemsPerRequestMax,
	"ledger.v1.SetAccountMetadataRequest.accounts":    commands.ItemsPerRequestMax,
	"ledger.v1.AccountMetadata.metadata":              domain.MetadataKeysMax,
	"ledger.v1.CloseAccountsRequest.account_ids":      commands.ItemsPerRequestMax,
	"ledger.v1.DefineCategoriesRequest.categories":    domain.CategoriesPerRequestMax,
	"ledger.v1.Category.patterns":                     domain.CategoryPatternsMax,
	"ledger.v1.GetBalancesRequest.accounts":           queries.AccountsPerRequestMax,
	"ledger.v1.GetTransfersRequest.ids":               queries.TransferIDsPerRequestMax,
	"ledger.v1.ListAccountsRequest.metadata":          queries.AccountsMetadataPairsMax,
	"ledger.v1.ImportEventsRequest.events":            ImportEventsPerMessageMax,
	"ledger.v1.CreateApiKeyRequest.ledgers":           apikeys.LedgersPerKeyMax,
	"ledger.v1.DefineRulesRequest.rules":              domain.RulesPerRequestMax,
	"ledger.v1.Rule.account_metadata":                 domain.RuleMetadataPairsMax,
	"ledger.v1.FreezeAccountsRequest.account_ids":     domain.FreezesPerRequestMax,
	"ledger.v1.UnfreezeAccountsRequest.account_ids":   domain.FreezesPerRequestMax,
	"ledger.v1.ImportStatementRequest.lines":          commands.ItemsPerRequestMax,
	"ledger.v1.SetMatchingRulesRequest.rules":         domain.MatchingRulesMax,
	"ledger.v1.MatchManuallyRequest.lines":            domain.MatchItemsMax,
	"ledger.v1.MatchManuallyRequest.movements":        domain.MatchItemsMax,
	"ledger.v1.CreateSubscriptionRequest.event_types": webhooks.EventTypesMax,
}

// RepeatedMax is the bound of the elements of fd, a repeated field or map
// of a request (the REST gateway counts a JSON body's with it too).
func RepeatedMax(fd protoreflect.FieldDescriptor) int {
	if n, ok := repeatedMax[fd.FullName()]; ok {
		return n
	}
	return RepeatedMaxDefault
}

// OverfullError is a request with more elements in a repeated field or map
// than RepeatedMax: Field is its path as a client names it
// ("transfers[].postings"), N the elements counted when the bound was
// passed (the count stops there).
type OverfullError struct {
	Field  string
	N, Max int
}

func (e *OverfullError) Error() string { return fmt.Sprintf("%d items, want at most %d", e.N, e.Max) }

// overfullField walks raw, a message of md on the wire, and returns the
// first repeated field or map whose elements in all of raw are more than
// its bound (see above); nil if none is or raw does not parse (the decoder
// says why). Its work is linear in raw, it allocates nothing but its answer
// (the field's path is built on the way out), and its depth is bounded by
// the schema (ledger.v1 has no recursive message).
func overfullField(md protoreflect.MessageDescriptor, raw []byte) *OverfullError {
	var t tally
	return t.walk(md, raw, 1)
}

// tally counts the elements of the repeated fields met in a request, by
// field: a field's elements need not be contiguous on the wire, nor in
// one element of a list.
type tally struct {
	counts [16]struct {
		fd protoreflect.FieldDescriptor
		n  int
	}
	used int
	more map[protoreflect.FieldDescriptor]int // past len(counts) fields
}

// add counts n more elements of fd and returns its count so far.
func (t *tally) add(fd protoreflect.FieldDescriptor, n int) int {
	for i := range t.used {
		if t.counts[i].fd == fd {
			t.counts[i].n += n
			return t.counts[i].n
		}
	}
	if t.used < len(t.counts) {
		t.counts[t.used].fd, t.counts[t.used].n = fd, n
		t.used++
		return n
	}
	if t.more == nil {
		t.more = map[protoreflect.FieldDescriptor]int{}
	}
	t.more[fd] += n
	return t.more[fd]
}

// walk is overfullField of raw, a message of md that lies within lists
// whose bounds multiply to outer.
func (t *tally) walk(md protoreflect.MessageDescriptor, raw []byte, outer int) *OverfullError {
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return nil
		}
		raw = raw[n:]
		fd := md.Fields().ByNumber(num)
		vlen := protowire.ConsumeFieldValue(num, typ, raw)
		if vlen < 0 {
			return nil
		}
		value := raw[:vlen]
		raw = raw[vlen:]
		if fd == nil || fd.Kind() != protoreflect.MessageKind && !fd.IsList() {
			continue
		}
		if !fd.IsList() && !fd.IsMap() {
			if typ != protowire.BytesType {
				continue
			}
			v, _ := protowire.ConsumeBytes(value)
			if e := t.walk(fd.Message(), v, outer); e != nil {
				e.Field = string(fd.Name()) + "." + e.Field
				return e
			}
			continue
		}
		own := RepeatedMax(fd)
		if count, limit := t.add(fd, elemsOf(fd, typ, value)), own*outer; count > limit {
			return &OverfullError{Field: string(fd.Name()), N: count, Max: limit}
		}
		if fd.IsList() && fd.Kind() == protoreflect.MessageKind && typ == protowire.BytesType &&
			!isWellKnown(fd.Message()) {
			v, _ := protowire.ConsumeBytes(value)
			if e := t.walk(fd.Message(), v, outer*own); e != nil {
				e.Field = string(fd.Name()) + "[]." + e.Field
				return e
			}
		}
	}
	return nil
}

// elemsOf is the number of elements of fd that value, one field of the
// wire of type typ, holds: one, or those of a packed scalar list.
func elemsOf(fd protoreflect.FieldDescriptor, typ protowire.Type, value []byte) int {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind, protoreflect.StringKind, protoreflect.BytesKind:
		return 1
	}
	if typ != protowire.BytesType {
		return 1
	}
	v, _ := protowire.ConsumeBytes(value)
	return packedElems(fd.Kind(), v)
}

// packedElems is the number of elements of a packed repeated scalar.
func packedElems(k protoreflect.Kind, v []byte) int {
	switch k {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return len(v) / 4
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return len(v) / 8
	}
	n := 0
	for _, b := range v {
		if b < 0x80 {
			n++
		}
	}
	return n
}

// isWellKnown says whether md is a google.protobuf type: a leaf here.
func isWellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile().Package() == "google.protobuf"
}
