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
// therefore counted on the wire, before it is decoded (overfullField), and
// a request with more than its field's bound is refused as its handler or
// the domain would refuse it, InvalidArgument naming the field. What a
// request may then hold decoded is bounded by the product of its bounds
// (8,192 transfers of 64 postings and 32 metadata entries), as for a
// legitimate batch of that size.

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
// ("transfers[3].postings").
type OverfullError struct {
	Field  string
	N, Max int
}

func (e *OverfullError) Error() string { return fmt.Sprintf("%d items, want at most %d", e.N, e.Max) }

// overfullField walks raw, a message of md on the wire, and returns the
// first repeated field or map, its own or its messages', holding more
// elements than RepeatedMax; nil if none does or raw does not parse (the
// decoder says why). Its work is linear in raw and it allocates nothing
// but its answer; its depth is bounded by the schema (ledger.v1 has no
// recursive message).
func overfullField(md protoreflect.MessageDescriptor, raw []byte, prefix string) *OverfullError {
	// counts of the repeated fields met so far, by field number: a field's
	// elements need not be contiguous on the wire.
	var counts [8]struct {
		num protowire.Number
		n   int
	}
	seen := counts[:0]
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
		path := joinPath(prefix, string(fd.Name()))
		if !fd.IsList() && !fd.IsMap() {
			if typ != protowire.BytesType {
				continue
			}
			v, _ := protowire.ConsumeBytes(value)
			if e := overfullField(fd.Message(), v, path); e != nil {
				return e
			}
			continue
		}
		elems := elemsOf(fd, typ, value)
		i := 0
		for i < len(seen) && seen[i].num != num {
			i++
		}
		if i == len(seen) {
			seen = append(seen, struct {
				num protowire.Number
				n   int
			}{num: num})
		}
		index := seen[i].n
		seen[i].n += elems
		if limit := RepeatedMax(fd); seen[i].n > limit {
			return &OverfullError{Field: path, N: seen[i].n + countRest(fd, raw), Max: limit}
		}
		if fd.IsList() && fd.Kind() == protoreflect.MessageKind && typ == protowire.BytesType &&
			!isWellKnown(fd.Message()) {
			v, _ := protowire.ConsumeBytes(value)
			if e := overfullField(fd.Message(), v, fmt.Sprintf("%s[%d]", path, index)); e != nil {
				return e
			}
		}
	}
	return nil
}

// countRest counts the elements of fd in raw, the rest of a message on the
// wire, without looking into them.
func countRest(fd protoreflect.FieldDescriptor, raw []byte) int {
	n := 0
	for len(raw) > 0 {
		num, typ, tn := protowire.ConsumeTag(raw)
		if tn < 0 {
			return n
		}
		raw = raw[tn:]
		vlen := protowire.ConsumeFieldValue(num, typ, raw)
		if vlen < 0 {
			return n
		}
		if num == fd.Number() {
			n += elemsOf(fd, typ, raw[:vlen])
		}
		raw = raw[vlen:]
	}
	return n
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
