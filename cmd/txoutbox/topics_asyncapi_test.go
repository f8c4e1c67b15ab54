package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

func TestTopicsAsyncAPI(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := dispatch(t.Context(), []string{"topics", "asyncapi", "--format", "cloudevents", "--output", "json", "../../topic_definitions.yaml"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		AsyncAPI string         `json:"asyncapi"`
		Info     map[string]any `json:"info"`
		Channels map[string]any `json:"channels"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%.300s", err, out.String())
	}
	if doc.AsyncAPI != "3.0.0" || doc.Info["title"] != "billing events" || doc.Channels["billing.InvoiceCreated"] == nil {
		t.Errorf("document: asyncapi %q, info %v, %d channels", doc.AsyncAPI, doc.Info, len(doc.Channels))
	}
	out.Reset()
	if err := dispatch(t.Context(), []string{"topics", "asyncapi", "../../topic_definitions.yaml"}, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "asyncapi: 3.0.0\n") {
		t.Errorf("YAML: %v\n%.200s", err, out.String())
	}
	for _, args := range [][]string{{"--output", "toml"}, {"--format", "avro"}} {
		err := dispatch(t.Context(), append([]string{"topics", "asyncapi", "../../topic_definitions.yaml"}, args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("topics asyncapi %v: %v, want an error naming %s", args, err, args[0])
		}
	}
}
