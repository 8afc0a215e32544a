package daemon_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/httpapi"
	"github.com/ledgerd/ledger/internal/testenv"
)

// stalledAnswer is what the gateway answered a stalled upload: its status
// and body, or the error reading them.
type stalledAnswer struct {
	i    int
	code int
	body string
	err  error
}

// TestRESTBodiesShareOfAKey: a key's REST bodies hold at most its share of
// the gateway's bodies in flight (a quarter of the 256 MiB, 64 MiB). Key A
// starts four uploads of 64 MiB that send their headers and never their
// body: together the whole budget, which left every other key's bodies
// refused. One takes A's share; the three beyond it are refused (429)
// saying it is the key's share, and so is A's next body, while key B's
// body is read and served. Once the upload that held A's share is gone,
// the share is given back: A's next body is served.
func TestRESTBodiesShareOfAKey(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	admin := h.as(t, h.key)
	keyA, idA := admin.newKey(t, nil, "writer")
	keyB, _ := admin.newKey(t, nil, "writer")
	path := "/v1/ledgers/" + ledger + "/transfers"
	transfer := func(id string) string {
		return `{"transfers": [{"id": "` + id + `", "postings": [{"debit_account": "alice", "credit_account": "bob", "amount": "1.00", "asset": "USD"}]}]}`
	}
	post := func(key, body string) (int, string) {
		req, err := http.NewRequestWithContext(ctx(t), "POST", "http://"+h.m.HTTPAddr()+path, strings.NewReader(body))
		testenv.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		testenv.NoError(t, err)
		return resp.StatusCode, string(out)
	}
	refusedForItsShare := func(code int, body string) bool {
		return code == http.StatusTooManyRequests && strings.Contains(body, "api key "+idA+"'s other request bodies hold its share")
	}

	const stalls = httpapi.BodiesInFlightMaxDefault / httpapi.BodyMaxDefault
	conns := make([]net.Conn, stalls)
	answers := make(chan stalledAnswer, stalls)
	for i := range conns {
		c, err := net.Dial("tcp", h.m.HTTPAddr())
		testenv.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		conns[i] = c
		_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: ledger\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
			"Authorization: Bearer %s\r\n\r\n", path, httpapi.BodyMaxDefault, keyA)
		testenv.NoError(t, err)
		go func() {
			a := stalledAnswer{i: i}
			defer func() { answers <- a }()
			if a.err = c.SetReadDeadline(time.Now().Add(time.Minute)); a.err != nil {
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if a.err = err; err != nil {
				return
			}
			defer resp.Body.Close()
			out, err := io.ReadAll(resp.Body)
			a.code, a.body, a.err = resp.StatusCode, string(out), err
		}()
	}
	// The gateway waits 10 s for room in a share before it refuses.
	answered := map[int]bool{}
	timeout := time.After(45 * time.Second)
	for len(answered) < stalls-1 {
		select {
		case a := <-answers:
			if a.err != nil || !refusedForItsShare(a.code, a.body) {
				t.Fatalf("stalled upload %d of key A: %d %q (%v), want 429 for its key's share", a.i, a.code, a.body, a.err)
			}
			answered[a.i] = true
		case <-timeout:
			t.Fatalf("%d of %d stalled uploads of 64 MiB of one key refused, want all but one: the others hold %d MiB",
				len(answered), stalls, (stalls-len(answered))*httpapi.BodyMaxDefault>>20)
		}
	}

	// A's share is held: its next body waits for it, and is refused; B's
	// is served meanwhile.
	nextA := make(chan stalledAnswer, 1)
	go func() {
		code, body := post(keyA, transfer("a1"))
		nextA <- stalledAnswer{code: code, body: body}
	}()
	if code, body := post(keyB, transfer("b1")); code != http.StatusOK {
		t.Errorf("key B's body while key A's uploads stall: %d %s, want 200", code, body)
	}
	if a := <-nextA; !refusedForItsShare(a.code, a.body) {
		t.Errorf("key A's next body while its share is held: %d %s, want 429 for its key's share", a.code, a.body)
	}

	// The upload holding A's share goes: the share comes back with its
	// bytes (the next body waits for it, if it comes first).
	for i, c := range conns {
		if !answered[i] {
			c.Close()
		}
	}
	if code, body := post(keyA, transfer("a2")); code != http.StatusOK {
		t.Errorf("key A's body once its stalled upload is gone: %d %s, want 200", code, body)
	}
}
