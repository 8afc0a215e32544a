package eventstore

import (
	"context"
	"testing"
	"time"
)

// TestStatementTimeout: an append's statement_timeout is
// AppendStatementTimeoutMax, or the caller's deadline when sooner, and never
// 0 (which PostgreSQL reads as no timeout at all).
func TestStatementTimeout(t *testing.T) {
	if got := statementTimeout(context.Background()); got != AppendStatementTimeoutMax {
		t.Errorf("no deadline: %s, want %s", got, AppendStatementTimeoutMax)
	}
	later, cancel := context.WithTimeout(context.Background(), AppendStatementTimeoutMax+time.Minute)
	defer cancel()
	if got := statementTimeout(later); got != AppendStatementTimeoutMax {
		t.Errorf("deadline after the bound: %s, want %s", got, AppendStatementTimeoutMax)
	}
	sooner, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if got := statementTimeout(sooner); got > 2*time.Second || got <= 0 {
		t.Errorf("deadline in 2s: %s, want at most 2s", got)
	}
	past, cancel3 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel3()
	if got := statementTimeout(past); got != time.Millisecond {
		t.Errorf("deadline passed: %s, want 1ms", got)
	}
	if got := millis(1500 * time.Millisecond); got != "1500ms" {
		t.Errorf("millis(1.5s) = %q, want 1500ms", got)
	}
}
