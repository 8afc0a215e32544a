package client_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/client"
)

// TestVerifyWebhook checks VerifyWebhook against the signatures ledgerd
// makes (webhooks.Sign): a good one passes; a changed body, another
// secret, an old timestamp and malformed headers are refused.
func TestVerifyWebhook(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("ab", 32)
	key, _ := hex.DecodeString(secret)
	body := []byte(`{"delivery_id":"l:1:wh_0123456789abcdef","position":1}`)
	now := time.Now()
	good := webhooks.Sign(key, now, body)
	for _, c := range []struct {
		name, secret, header string
		body                 []byte
		tolerance            time.Duration
		want                 error
	}{
		{"good", secret, good, body, 5 * time.Minute, nil},
		{"good without tolerance", secret, webhooks.Sign(key, now.Add(-time.Hour), body), body, 0, nil},
		{"second of two signatures", secret, "t=" + strings.Split(good, ",")[0][2:] + ",v1=00ff," + strings.Split(good, ",")[1], body, time.Minute, nil},
		{"body changed", secret, good, append([]byte(nil), append(body, ' ')...), time.Minute, client.ErrWebhookSignature},
		{"other secret", strings.Repeat("cd", 32), good, body, time.Minute, client.ErrWebhookSignature},
		{"too old", secret, webhooks.Sign(key, now.Add(-10*time.Minute), body), body, 5 * time.Minute, client.ErrWebhookTooOld},
		{"timestamp changed", secret, "t=1" + good[2:], body, 0, client.ErrWebhookSignature},
		{"no v1", secret, "t=12345", body, 0, client.ErrWebhookSignature},
		{"empty", secret, "", body, 0, client.ErrWebhookSignature},
		{"secret not hex", "xyz", good, body, 0, client.ErrWebhookSignature},
	} {
		err := client.VerifyWebhook(c.secret, c.header, c.body, c.tolerance)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// ExampleVerifyWebhook is a receiver's handler: it verifies the signature
// over the raw body before anything else, then dedupes on the delivery id.
func ExampleVerifyWebhook() {
	secret := strings.Repeat("ab", 32) // CreateSubscriptionResponse.secret
	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		if err := client.VerifyWebhook(secret, r.Header.Get(client.WebhookSignatureHeader), body, 5*time.Minute); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Apply it once per delivery id (e.g. a unique key in the
		// receiver's own table), then answer 2xx.
		fmt.Println("verified", r.Header.Get(client.WebhookDeliveryIDHeader))
		w.WriteHeader(http.StatusNoContent)
	}

	// A delivery as ledgerd sends it.
	body := `{"delivery_id":"demo:7:wh_0123456789abcdef","ledger":"demo","position":7,"type":"TransferCommitted","event":{}}`
	key, _ := hex.DecodeString(secret)
	req := httptest.NewRequest(http.MethodPost, "/hooks/ledger", strings.NewReader(body))
	req.Header.Set(client.WebhookDeliveryIDHeader, "demo:7:wh_0123456789abcdef")
	req.Header.Set(client.WebhookSignatureHeader, webhooks.Sign(key, time.Now(), []byte(body)))
	rec := httptest.NewRecorder()
	handler(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// verified demo:7:wh_0123456789abcdef
	// 204
}
