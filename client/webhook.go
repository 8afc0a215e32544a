package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Webhook headers: the delivery's id (what a receiver dedupes on:
// "<ledger>:<position>:<subscription>") and its signature.
const (
	WebhookDeliveryIDHeader = "Ledger-Delivery-Id"
	WebhookSignatureHeader  = "Ledger-Signature"
)

// Errors of VerifyWebhook.
var (
	// ErrWebhookSignature means the signature header is malformed or no
	// v1 signature in it matches the body under the secret.
	ErrWebhookSignature = errors.New("webhook signature does not verify")
	// ErrWebhookTooOld means the signature's timestamp is further from now
	// than the tolerance: a replayed request, or a clock far off.
	ErrWebhookTooOld = errors.New("webhook signature outside the tolerance")
)

// webhookHeaderMax bounds the signature header parsed.
const webhookHeaderMax = 4096

// VerifyWebhook checks a delivery's Ledger-Signature header
// ("t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>", with
// possibly several v1 entries while a secret rotates) against the raw body
// and the subscription's secret, as CreateSubscription returned it (hex).
// A timestamp more than tolerance away from now is refused (0: not checked);
// five minutes is usual. The comparison is in constant time.
//
// Errors: ErrWebhookSignature; ErrWebhookTooOld.
func VerifyWebhook(secret, header string, body []byte, tolerance time.Duration) error {
	return verifyWebhookAt(secret, header, body, tolerance, time.Now())
}

func verifyWebhookAt(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	key, err := hex.DecodeString(secret)
	if err != nil || len(key) == 0 {
		return fmt.Errorf("the secret is not hex: %w", ErrWebhookSignature)
	}
	if len(header) > webhookHeaderMax {
		return fmt.Errorf("header of %d bytes: %w", len(header), ErrWebhookSignature)
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if sig, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, sig)
			}
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("header %q: want t=<unix>,v1=<hex>: %w", truncate(header), ErrWebhookSignature)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	want := mac.Sum(nil)
	ok := false
	for _, sig := range sigs {
		ok = hmac.Equal(sig, want) || ok
	}
	if !ok {
		return ErrWebhookSignature
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(unix, 0)).Abs(); d > tolerance {
			return fmt.Errorf("signed %s from now, tolerance %s: %w", d.Round(time.Second), tolerance, ErrWebhookTooOld)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
