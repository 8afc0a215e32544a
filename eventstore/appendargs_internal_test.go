package eventstore

import "testing"

// TestFirstArrayMakesRoomForAll: the first array of an append is encoded
// after the parameters before it, with room past it for every array of the
// append, so that pgx's buffer is not grown again by the arrays after it.
func TestFirstArrayMakesRoomForAll(t *testing.T) {
	recs := []Record{{Type: "TransferCommitted", CommandID: "t1", Payload: []byte(`{"id":"t1"}`)},
		{Type: "TransferCommitted", CommandID: "t2", Payload: []byte(`{"id":"t2"}`)}}
	cols := appendColumns(recs)
	before := []byte("params before")
	buf, err := firstArrayPlan{}.Encode(firstArray{cols.types, cols.size()}, before)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:len(before)]) != string(before) || string(buf[len(before):]) != string(cols.types) {
		t.Fatalf("encoded %q, want %q then the array", buf, before)
	}
	if want := len(before) + cols.size(); cap(buf) < want {
		t.Fatalf("room for %d bytes, want %d: the parameters before and every array", cap(buf), want)
	}
}
