package daemon_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/metadata"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestUnauthenticatedHeaderBlockBounded: a client without any key opens a
// gRPC connection and sends one header block that never ends (HEADERS
// without END_HEADERS, then CONTINUATION frames) whose one literal header
// value is 15 MiB. No call exists yet, so neither the key check nor any
// interceptor has run: the server must refuse the header list from the
// value's length prefix (grpcHeaderListMax) and close the connection, not
// buffer it (grpc-go's default bound is 16 MiB a connection). The signal is
// the server's own: it closes the connection before the block is sent.
func TestUnauthenticatedHeaderBlockBounded(t *testing.T) {
	t.Parallel()
	h := start(t)
	const valueLen = 15 << 20
	c, err := net.Dial("tcp", h.m.GRPCAddr())
	testenv.NoError(t, err)
	defer c.Close()
	closed := make(chan error, 1)
	go func() {
		// The server's frames, until it closes the connection.
		fr := http2.NewFramer(io.Discard, c)
		for {
			if _, err := fr.ReadFrame(); err != nil {
				closed <- err
				return
			}
		}
	}()
	_, err = io.WriteString(c, http2.ClientPreface)
	testenv.NoError(t, err)
	fr := http2.NewFramer(c, nil)
	testenv.NoError(t, fr.WriteSettings())
	// A literal header field without indexing, with a new name, and a value
	// of valueLen (a 7-bit prefix integer, no Huffman coding).
	var blk bytes.Buffer
	blk.WriteByte(0x00)
	blk.WriteByte(5)
	blk.WriteString("x-pad")
	n := uint64(valueLen) - 127
	blk.WriteByte(127)
	for n >= 128 {
		blk.WriteByte(byte(n%128) | 0x80)
		n /= 128
	}
	blk.WriteByte(byte(n))
	testenv.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk.Bytes()}))
	chunk := bytes.Repeat([]byte("a"), 16384)
	sent := 0
	// Writes fail once the server has closed the connection (after the
	// socket buffers fill, or on its reset).
	for ; sent < valueLen-1; sent += len(chunk) {
		if err := fr.WriteContinuation(1, false, chunk); err != nil {
			break
		}
	}
	select {
	case err := <-closed:
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			t.Logf("connection ended: %v", err)
		}
		t.Logf("the server closed the connection; the client had written %d KiB of the header value", sent>>10)
	case <-time.After(10 * time.Second):
		t.Errorf("the server still reads a header block of %d MiB (written: %d MiB) from a connection without a key: "+
			"it buffers header lists beyond grpcHeaderListMax", valueLen>>20, sent>>20)
	}
}

// TestHeaderBoundsLeaveRoomForMetadata: what a legitimate call carries
// besides its key (W3C baggage has 8 KiB at most: 16 KiB here) fits in
// the gRPC header bound; a REST request's headers over theirs (32 KiB)
// are refused with 431 before anything else, not forwarded to fail.
func TestHeaderBoundsLeaveRoomForMetadata(t *testing.T) {
	t.Parallel()
	h := start(t)
	mctx := metadata.AppendToOutgoingContext(ctx(t), "baggage", strings.Repeat("b", 16<<10))
	_, err := h.query.GetProjectionStatus(mctx, &ledgerv1.GetProjectionStatusRequest{})
	testenv.NoError(t, err)

	req, err := http.NewRequestWithContext(ctx(t), "GET", "http://"+h.m.HTTPAddr()+"/v1/ledgers", nil)
	testenv.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.key)
	req.Header.Set("Grpc-Metadata-Pad", strings.Repeat("p", 40<<10))
	resp, err := http.DefaultClient.Do(req)
	testenv.NoError(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("REST request with 40 KiB of headers: %d, want 431", resp.StatusCode)
	}
}
