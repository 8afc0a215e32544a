package eventstore

import (
	"testing"
	"time"
)

// TestTimeOfMicros: PostgreSQL's timestamps read from their binary form, at
// its epoch, before it, and at the ends of its range (4713 BC, 294276 AD),
// where adding the epoch before converting overflowed.
func TestTimeOfMicros(t *testing.T) {
	for _, tc := range []struct {
		us   int64
		want time.Time
	}{
		{0, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{-1, time.Date(1999, 12, 31, 23, 59, 59, 999_999_000, time.UTC)},
		{1_500_001, time.Date(2000, 1, 1, 0, 0, 1, 500_001_000, time.UTC)},
		{-1_500_001, time.Date(1999, 12, 31, 23, 59, 58, 499_999_000, time.UTC)},
		// PostgreSQL's last and first timestamps (END_TIMESTAMP - 1 and
		// MIN_TIMESTAMP in its datatype/timestamp.h).
		{9_223_371_331_199_999_999, time.Date(294276, 12, 31, 23, 59, 59, 999_999_000, time.UTC)},
		{-211_813_488_000_000_000, time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC)},
	} {
		if got := timeOfMicros(tc.us); !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("timeOfMicros(%d) = %v, want %v", tc.us, got, tc.want)
		}
	}
}
