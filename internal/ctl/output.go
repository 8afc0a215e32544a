package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// JSON output is one compact object a line, so that a paged listing is
// JSON Lines a program reads line by line; YAML output is the same objects,
// converted from that JSON, one document each.

// protoJSON is how a response is written: the proto field names, as the
// REST mapping and the docs spell them.
var protoJSON = protojson.MarshalOptions{UseProtoNames: true}

// printJSON prints a response in the -o format (json or yaml).
func (c *client) printJSON(m proto.Message) error {
	b, err := protoJSON.Marshal(m)
	if err != nil {
		return err
	}
	return c.printDoc(b)
}

// printAny prints v, which encoding/json writes, in the -o format.
func (c *client) printAny(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.printDoc(b)
}

// printDoc prints one JSON document in the -o format. protojson varies its
// spacing on purpose (so nobody depends on it): compacting makes the output
// stable, one line.
func (c *client) printDoc(doc []byte) error {
	var b bytes.Buffer
	if err := json.Compact(&b, doc); err != nil {
		return err
	}
	if c.output == outputYAML {
		y, err := yaml.JSONToYAML(b.Bytes())
		if err != nil {
			return err
		}
		if c.docs > 0 {
			fmt.Fprintln(c.out, "---")
		}
		c.docs++
		_, err = c.out.Write(y)
		return err
	}
	b.WriteByte('\n')
	c.docs++
	_, err := c.out.Write(b.Bytes())
	return err
}

// printResults prints a write's answer, one line per item in the table or
// the response as JSON or YAML, and fails if any item was refused.
func (c *client) printResults(resp proto.Message, results []*ledgerv1.ItemResult) error {
	if !c.human() {
		if err := c.printJSON(resp); err != nil {
			return err
		}
	}
	refused := 0
	for _, r := range results {
		ok := r.GetCode() == ledgerv1.ResultCode_RESULT_CODE_CREATED || r.GetCode() == ledgerv1.ResultCode_RESULT_CODE_EXISTS
		if !ok {
			refused++
		}
		if !c.human() {
			continue
		}
		code := strings.TrimPrefix(r.GetCode().String(), "RESULT_CODE_")
		line := fmt.Sprintf("%-12s %s", code, r.GetId())
		if r.GetPosition() > 0 {
			line += fmt.Sprintf("  position %d", r.GetPosition())
		}
		if !ok && r.GetDetail() != "" {
			line += "  " + r.GetDetail()
		}
		fmt.Fprintln(c.out, line)
	}
	if refused > 0 {
		return fmt.Errorf("%d of %d items: %w", refused, len(results), errRefused)
	}
	return nil
}
