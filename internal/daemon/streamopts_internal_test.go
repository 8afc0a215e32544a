package daemon

import "testing"

// TestStreamOptionsCarryPlainFrames: the relays and sources get the
// configuration's choice of frames.
func TestStreamOptionsCarryPlainFrames(t *testing.T) {
	for _, plain := range []bool{false, true} {
		m := &Main{Config: Config{StreamPlainFrames: plain}}
		if got := m.streamOptions().PlainFrames; got != plain {
			t.Errorf("StreamPlainFrames %v: stream options' PlainFrames %v", plain, got)
		}
	}
}
