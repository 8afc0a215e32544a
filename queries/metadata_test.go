package queries

import (
	"encoding/json"
	"reflect"
	"testing"
)

// metadataSeeds are metadata columns as jsonb writes them, and shapes
// scanMetadata leaves to encoding/json.
var metadataSeeds = []string{
	`{"order": "o-17", "customer": "c-4"}`, `{}`, `{"k": ""}`, ` { "k" : "v" } `, `{"ключ": "значение", "k": "🙂"}`,
	`null`, `{"k": "v", "k": "w"}`, `{"k": "a\"b"}`, `{"k\u0041": "v"}`, `{"k": 1}`, `{"k": null}`, `{"k": {"a": "b"}}`,
	`{"k": "v",}`, `{"k": "v"`, `{"k": "v"} x`, `{"k" "v"}`, `{"k": "v" "j": "w"}`, `[]`, `"s"`, ``, "{\"k\": \"\xff\"}",
	"{\"k\": \"a\tb\"}",
}

// TestDecodeMetadata: what decodeMetadata reads is what encoding/json
// reads into a map[string]string, errors included, and jsonb's own text
// is read without it.
func TestDecodeMetadata(t *testing.T) {
	for _, in := range metadataSeeds {
		var want map[string]string
		wantErr := json.Unmarshal([]byte(in), &want)
		got, err := decodeMetadata([]byte(in))
		if (err != nil) != (wantErr != nil) || (err == nil && !reflect.DeepEqual(got, want)) ||
			(err == nil && (got == nil) != (want == nil)) {
			t.Errorf("%q: got %#v, %v; encoding/json %#v, %v", in, got, err, want, wantErr)
		}
	}
	for _, in := range metadataSeeds[:5] {
		if _, ok := scanMetadata([]byte(in)); !ok {
			t.Errorf("%q, as jsonb writes it, is not read without encoding/json", in)
		}
	}
}

func FuzzScanMetadata(f *testing.F) {
	for _, s := range metadataSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := scanMetadata([]byte(in))
		if !ok {
			return
		}
		var want map[string]string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatalf("%q: scanned %#v, encoding/json refuses it: %v", in, got, err)
		}
		if !reflect.DeepEqual(got, want) || want == nil {
			t.Fatalf("%q: scanned %#v, encoding/json reads %#v", in, got, want)
		}
	})
}

// BenchmarkDecodeMetadata reads jsonb's text of an object of two short
// strings, and the same through encoding/json.
//
//	go test -run '^$' -bench BenchmarkDecodeMetadata ./queries/
func BenchmarkDecodeMetadata(b *testing.B) {
	in := []byte(metadataSeeds[0])
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeMetadata(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]string
			if err := json.Unmarshal(in, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
