package grpcapi

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ledgerd/ledger/adapters/webhooks"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
)

// Webhooks keeps subscriptions and their delivery log (webhooks.Store).
type Webhooks interface {
	Create(ctx context.Context, n webhooks.NewSubscription) (webhooks.Subscription, []byte, error)
	List(ctx context.Context, ledger string) ([]webhooks.Subscription, error)
	Delete(ctx context.Context, ledger, id string) error
	Deliveries(ctx context.Context, ledger, id string, status webhooks.Status, before uint64, limit int) ([]webhooks.Delivery, uint64, error)
	ReplayDead(ctx context.Context, ledger, id string) (uint64, error)
	ReplayFrom(ctx context.Context, ledger, id string, from uint64) (uint64, error)
}

// WebhookServer serves ledger.v1.WebhookService.
type WebhookServer struct {
	ledgerv1.UnimplementedWebhookServiceServer
	hooks Webhooks
}

// NewWebhookServer serves the subscriptions of hooks.
func NewWebhookServer(hooks Webhooks) *WebhookServer { return &WebhookServer{hooks: hooks} }

var (
	subscriptionIDPattern = regexp.MustCompile(`^wh_[0-9a-f]{16}$`)
	// eventTypePattern is an event type's name: "TransferCommitted",
	// "AccountFrozen".
	eventTypePattern = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,63}$`)
)

// CreateSubscription subscribes a URL to a ledger's events.
//
// Errors: InvalidArgument naming the field (from_position past the one
// after the ledger's head included); FailedPrecondition when the ledger
// has webhooks.SubscriptionsPerLedgerMax subscriptions.
func (s *WebhookServer) CreateSubscription(ctx context.Context, req *ledgerv1.CreateSubscriptionRequest) (*ledgerv1.CreateSubscriptionResponse, error) {
	if err := checkLedger(req.GetLedger()); err != nil {
		return nil, err
	}
	if err := checkWebhookURL(req.GetUrl()); err != nil {
		return nil, err
	}
	types := req.GetEventTypes()
	if len(types) > webhooks.EventTypesMax {
		return nil, invalidArgument("event_types", fmt.Sprintf("%d types: at most %d", len(types), webhooks.EventTypesMax))
	}
	for i, t := range types {
		if !eventTypePattern.MatchString(t) {
			return nil, invalidArgument(fmt.Sprintf("event_types[%d]", i), fmt.Sprintf("%q is not an event type name ([A-Z][A-Za-z0-9]*)", truncated(t)))
		}
	}
	if p := req.GetAccountPattern(); p != "" {
		if err := domain.CheckAccountPattern(p); err != nil {
			return nil, invalidArgument("account_pattern", err.Error())
		}
	}
	sub, secret, err := s.hooks.Create(ctx, webhooks.NewSubscription{Ledger: req.GetLedger(), URL: req.GetUrl(),
		EventTypes: types, AccountPattern: req.GetAccountPattern(), FromPosition: req.GetFromPosition()})
	if err != nil {
		return nil, webhookStatusOf(err)
	}
	return &ledgerv1.CreateSubscriptionResponse{Subscription: subscriptionOf(sub), Secret: hex.EncodeToString(secret)}, nil
}

// ListSubscriptions lists a ledger's subscriptions.
//
// Errors: InvalidArgument on ledger.
func (s *WebhookServer) ListSubscriptions(ctx context.Context, req *ledgerv1.ListSubscriptionsRequest) (*ledgerv1.ListSubscriptionsResponse, error) {
	if err := checkLedger(req.GetLedger()); err != nil {
		return nil, err
	}
	subs, err := s.hooks.List(ctx, req.GetLedger())
	if err != nil {
		return nil, webhookStatusOf(err)
	}
	out := &ledgerv1.ListSubscriptionsResponse{Subscriptions: make([]*ledgerv1.Subscription, len(subs))}
	for i, sub := range subs {
		out.Subscriptions[i] = subscriptionOf(sub)
	}
	return out, nil
}

// DeleteSubscription removes a subscription.
//
// Errors: InvalidArgument on ledger or id; NotFound.
func (s *WebhookServer) DeleteSubscription(ctx context.Context, req *ledgerv1.DeleteSubscriptionRequest) (*ledgerv1.DeleteSubscriptionResponse, error) {
	if err := checkSubscription(req.GetLedger(), "id", req.GetId()); err != nil {
		return nil, err
	}
	if err := s.hooks.Delete(ctx, req.GetLedger(), req.GetId()); err != nil {
		return nil, webhookStatusOf(err)
	}
	return &ledgerv1.DeleteSubscriptionResponse{}, nil
}

// ListDeliveries lists a page of a subscription's deliveries, newest first.
//
// Errors: InvalidArgument on ledger, subscription_id, status, cursor or
// limit; NotFound.
func (s *WebhookServer) ListDeliveries(ctx context.Context, req *ledgerv1.ListDeliveriesRequest) (*ledgerv1.ListDeliveriesResponse, error) {
	if err := checkSubscription(req.GetLedger(), "subscription_id", req.GetSubscriptionId()); err != nil {
		return nil, err
	}
	st, ok := deliveryStatuses[req.GetStatus()]
	if !ok {
		return nil, invalidArgument("status", fmt.Sprintf("%d is not a delivery status", req.GetStatus()))
	}
	var before uint64
	if c := req.GetCursor(); c != "" {
		n, err := strconv.ParseUint(c, 10, 63)
		if err != nil || n == 0 {
			return nil, invalidArgument("cursor", fmt.Sprintf("%q is not a cursor of this list", truncated(c)))
		}
		before = n
	}
	limit := int(req.GetLimit())
	switch {
	case limit > webhooks.DeliveriesPageMax:
		return nil, invalidArgument("limit", fmt.Sprintf("%d is over %d", limit, webhooks.DeliveriesPageMax))
	case limit == 0:
		limit = webhooks.DeliveriesPageDefault
	}
	ds, next, err := s.hooks.Deliveries(ctx, req.GetLedger(), req.GetSubscriptionId(), st, before, limit)
	if err != nil {
		return nil, webhookStatusOf(err)
	}
	out := &ledgerv1.ListDeliveriesResponse{Deliveries: make([]*ledgerv1.Delivery, len(ds))}
	if next > 0 {
		out.NextCursor = strconv.FormatUint(next, 10)
	}
	for i := range ds {
		out.Deliveries[i] = deliveryOf(&ds[i])
	}
	return out, nil
}

// ReplayDeliveries delivers again the dead letters, or everything from a
// position on.
//
// Errors: InvalidArgument on ledger, subscription_id, dead_letters (neither
// or both asked) or from_position (not delivered yet, or past the one after
// the ledger's head); NotFound.
func (s *WebhookServer) ReplayDeliveries(ctx context.Context, req *ledgerv1.ReplayDeliveriesRequest) (*ledgerv1.ReplayDeliveriesResponse, error) {
	if err := checkSubscription(req.GetLedger(), "subscription_id", req.GetSubscriptionId()); err != nil {
		return nil, err
	}
	from := req.GetFromPosition()
	if req.GetDeadLetters() == (from > 0) {
		return nil, invalidArgument("dead_letters", "ask for the dead letters or give a from_position, one of the two")
	}
	var n uint64
	var err error
	if req.GetDeadLetters() {
		n, err = s.hooks.ReplayDead(ctx, req.GetLedger(), req.GetSubscriptionId())
	} else {
		n, err = s.hooks.ReplayFrom(ctx, req.GetLedger(), req.GetSubscriptionId(), from)
	}
	if err != nil {
		return nil, webhookStatusOf(err)
	}
	return &ledgerv1.ReplayDeliveriesResponse{Queued: n}, nil
}

func checkLedger(ledger string) error {
	if !domain.ValidLedgerName(ledger) {
		return invalidArgument("ledger", fmt.Sprintf("%q is not a ledger name", truncated(ledger)))
	}
	return nil
}

func checkSubscription(ledger, field, id string) error {
	if err := checkLedger(ledger); err != nil {
		return err
	}
	if !subscriptionIDPattern.MatchString(id) {
		return invalidArgument(field, fmt.Sprintf("%q is not a subscription id (wh_ and 16 hex digits)", truncated(id)))
	}
	return nil
}

// checkWebhookURL accepts an absolute http or https URL with a host, of at
// most webhooks.URLBytesMax bytes, without user info (a password in a URL
// would be listed to readers).
func checkWebhookURL(u string) error {
	if len(u) == 0 || len(u) > webhooks.URLBytesMax {
		return invalidArgument("url", fmt.Sprintf("must have 1..%d bytes", webhooks.URLBytesMax))
	}
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return invalidArgument("url", "not a URL: "+err.Error())
	case p.Scheme != "http" && p.Scheme != "https":
		return invalidArgument("url", fmt.Sprintf("scheme %q: want http or https", truncated(p.Scheme)))
	case p.Host == "":
		return invalidArgument("url", "no host")
	case p.User != nil:
		return invalidArgument("url", "user info is not allowed (it would be listed): authenticate with the signature")
	case p.Fragment != "":
		return invalidArgument("url", "a fragment is not allowed")
	}
	return nil
}

// truncated bounds a value quoted back in an error.
func truncated(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

var deliveryStatuses = map[ledgerv1.DeliveryStatus]webhooks.Status{
	ledgerv1.DeliveryStatus_DELIVERY_STATUS_UNSPECIFIED: "",
	ledgerv1.DeliveryStatus_DELIVERY_STATUS_PENDING:     webhooks.StatusPending,
	ledgerv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED:   webhooks.StatusDelivered,
	ledgerv1.DeliveryStatus_DELIVERY_STATUS_DEAD:        webhooks.StatusDead,
}

var deliveryStatusWire = map[webhooks.Status]ledgerv1.DeliveryStatus{
	webhooks.StatusPending:   ledgerv1.DeliveryStatus_DELIVERY_STATUS_PENDING,
	webhooks.StatusDelivered: ledgerv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED,
	webhooks.StatusDead:      ledgerv1.DeliveryStatus_DELIVERY_STATUS_DEAD,
}

// webhookStatusOf translates the webhook store's errors.
func webhookStatusOf(err error) error {
	switch {
	case errors.Is(err, webhooks.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, webhooks.ErrTooMany):
		return status.Error(codes.FailedPrecondition, fmt.Sprintf("%s: at most %d a ledger: delete one first",
			err.Error(), webhooks.SubscriptionsPerLedgerMax))
	case errors.Is(err, webhooks.ErrAfterCursor), errors.Is(err, webhooks.ErrPastHead):
		return invalidArgument("from_position", err.Error())
	}
	return statusOf(err)
}

func subscriptionOf(s webhooks.Subscription) *ledgerv1.Subscription {
	state := "active"
	if s.Fault != "" {
		state = "stopped: " + s.Fault
	}
	return &ledgerv1.Subscription{Id: s.ID, Ledger: s.Ledger, Url: s.URL, EventTypes: s.EventTypes,
		AccountPattern: s.AccountPattern, CreatedAt: timestamppb.New(s.CreatedAt), DeliveredPosition: s.DeliveredPosition,
		DeadLetters: s.DeadLetters, Circuit: s.Circuit, State: state}
}

func deliveryOf(d *webhooks.Delivery) *ledgerv1.Delivery {
	ts := func(t time.Time) *timestamppb.Timestamp {
		if t.IsZero() {
			return nil
		}
		return timestamppb.New(t)
	}
	return &ledgerv1.Delivery{Id: d.ID(), SubscriptionId: d.SubscriptionID, Position: d.Position, EventType: d.EventType,
		Status: deliveryStatusWire[d.Status], Attempts: uint32(d.Attempts), ResponseCode: uint32(d.ResponseCode),
		LatencyMs: uint32(d.LatencyMS), Error: d.Error, FirstAttemptAt: ts(d.FirstAttemptAt),
		LastAttemptAt: ts(d.LastAttemptAt), NextAttemptAt: ts(d.NextAttemptAt)}
}
