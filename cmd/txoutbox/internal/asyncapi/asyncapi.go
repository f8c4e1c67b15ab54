// Package asyncapi writes an AsyncAPI 3.0 document of a topic catalog as
// the relay's HTTP sink sends it: a channel and a send operation per topic,
// and a message whose payload is the wire format's envelope around the
// topic's JSON Schema and whose headers are the ones the sink sets.
package asyncapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/topics"
)

// Version is the AsyncAPI version of the documents Document writes.
const Version = "3.0.0"

// Document returns the AsyncAPI document of reg's topics in wire format
// format (wire.FormatBriteEvents or wire.FormatCloudEvents), as JSON values
// ready to encode. title names the API in info.title.
func Document(reg *topics.Registry, format wire.Format, title string) (map[string]any, error) {
	var msg func(t *topics.Topic, data map[string]any) map[string]any
	var contentType string
	switch format {
	case wire.FormatBriteEvents:
		msg, contentType = briteMessage, "application/json"
	case wire.FormatCloudEvents:
		msg, contentType = cloudMessage, wire.ContentTypeCloudEvent
	default:
		return nil, fmt.Errorf("unknown wire format %q: want %s or %s", format, wire.FormatBriteEvents, wire.FormatCloudEvents)
	}
	channels := map[string]any{}
	operations := map[string]any{}
	schemas := map[string]any{}
	messages := map[string]any{}
	for _, t := range reg.Topics() {
		schemas[t.Name] = rebase(t.Schema, "#/components/schemas/"+t.Name)
		ref := map[string]any{"$ref": "#/components/schemas/" + t.Name}
		m := msg(t, ref)
		m["name"] = t.Entity + t.Action
		m["title"] = t.Name
		if t.Description != "" {
			m["summary"] = t.Description
		}
		m["contentType"] = contentType
		messages[t.Name] = m
		channel := map[string]any{
			"address":  t.Name,
			"title":    t.Name,
			"messages": map[string]any{t.Entity + t.Action: map[string]any{"$ref": "#/components/messages/" + t.Name}},
		}
		if t.Description != "" {
			channel["description"] = t.Description
		}
		channels[t.Name] = channel
		operations["send."+t.Name] = map[string]any{
			"action":   "send",
			"channel":  map[string]any{"$ref": "#/channels/" + t.Name},
			"messages": []any{map[string]any{"$ref": "#/channels/" + t.Name + "/messages/" + t.Entity + t.Action}},
			"summary":  "The relay delivers a " + t.Name + " event",
			"bindings": map[string]any{"http": map[string]any{"method": "POST"}},
		}
	}
	return map[string]any{
		"asyncapi": Version,
		"info": map[string]any{
			"title":       title,
			"version":     "1",
			"description": describe(format, reg.DefaultCategory()),
		},
		"defaultContentType": contentType,
		"channels":           channels,
		"operations":         operations,
		"components":         map[string]any{"schemas": schemas, "messages": messages},
	}, nil
}

func describe(format wire.Format, category string) string {
	if format == wire.FormatCloudEvents {
		return "Events of " + category + " as txoutbox's relay posts them: CloudEvents 1.0 in the JSON event format, " +
			"batched as " + wire.ContentTypeCloudEventBatch + " (a JSON array of these messages) to the events API's URL."
	}
	return "Events of " + category + " as txoutbox's relay posts them in the bc-events wire format: one event to POST " +
		wire.BritePathSingle + ", or up to " + fmt.Sprint(wire.BriteBulkMax) + " as a JSON array of these messages to POST " +
		wire.BritePathBulk + "; the body holds nothing but these fields and the rest rides in headers."
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }

func constant(v, desc string) map[string]any {
	return map[string]any{"type": "string", "const": v, "description": desc}
}

var actorTypes = []any{"user", "service", "third-party"}

// briteMessage is the bc-events body, held to EVENT_SCHEMA, and the headers
// wire.BriteHeaders sets.
func briteMessage(t *topics.Topic, data map[string]any) map[string]any {
	return map[string]any{
		"payload": map[string]any{
			"type":                 "object",
			"required":             []any{"category", "entity", "action", "data", "actor"},
			"additionalProperties": false,
			"properties": map[string]any{
				"category": constant(t.Category, "the topic's category"),
				"entity":   constant(t.Entity, "the topic's entity"),
				"action":   constant(t.Action, "the topic's action"),
				"data":     data,
				"actor": map[string]any{
					"type":     "object",
					"required": []any{"id", "type"},
					"properties": map[string]any{
						"id":   map[string]any{"type": "string", "minLength": 5, "description": "who caused the event: a user id, or the publishing service"},
						"type": map[string]any{"type": "string", "enum": actorTypes},
					},
				},
			},
		},
		"headers": map[string]any{
			"type":     "object",
			"required": []any{wire.HeaderJobID, wire.HeaderIdempotencyKey},
			"properties": map[string]any{
				wire.HeaderJobID:          str("the job (correlation) id of every event of the request"),
				wire.HeaderIdempotencyKey: str("the event id (a UUIDv7) of a single post; of a bulk post, a digest of its event ids; the same on every attempt"),
				wire.HeaderEventIDs:       str("bulk posts: the event ids in body order, comma separated, over several header lines"),
				wire.HeaderTraceparent:    str("the W3C trace context the events were published with, when they have one"),
				wire.HeaderTenant:         str("the events' tenant, when they have one"),
				wire.HeaderDedupeKeys:     str("comma separated <event id>=<dedupe key> (query-escaped) of the events that have a dedupe key"),
			},
		},
	}
}

// cloudMessage is one CloudEvent as wire.AppendCloudEvent writes it, and the
// headers of the batch post.
func cloudMessage(t *topics.Topic, data map[string]any) map[string]any {
	return map[string]any{
		"payload": map[string]any{
			"type":     "object",
			"required": []any{"specversion", "id", "source", "type", "datacontenttype", "data"},
			"properties": map[string]any{
				"specversion":     constant(wire.CloudEventsSpecVersion, "CloudEvents version"),
				"id":              str("the event id (a UUIDv7), the same on every attempt"),
				"source":          str("the publishing service (" + wire.CloudEventsDefaultSource + " when it names none)"),
				"type":            constant(t.Name, "the topic"),
				"subject":         str("the ordering key, when the event has one"),
				"time":            map[string]any{"type": "string", "format": "date-time", "description": "when the event was published"},
				"datacontenttype": constant("application/json", "data is JSON"),
				"actorid":         str("who caused the event"),
				"actortype":       map[string]any{"type": "string", "enum": actorTypes},
				"jobid":           str("the job (correlation) id"),
				"partitionkey":    str("the ordering key (the partitioning extension)"),
				"traceparent":     str("W3C trace context (the distributed tracing extension)"),
				"tenant":          str("the event's tenant"),
				"causationid":     str("the event that caused this one"),
				"dedupekey":       str("the publisher's dedupe key"),
				"data":            data,
			},
		},
		"headers": map[string]any{
			"type":     "object",
			"required": []any{"Content-Type", wire.HeaderIdempotencyKey},
			"properties": map[string]any{
				"Content-Type":            constant(wire.ContentTypeCloudEventBatch, "every post is a batch"),
				wire.HeaderIdempotencyKey: str("the event id of a batch of one; else a digest of the batch's event ids; the same on every attempt"),
			},
		},
	}
}

// rebase returns a deep copy of schema with every $ref that points inside
// it ("#...") rebased onto base, where the copy lives in the document, and
// without $schema and $id, which would make it a resource of its own.
func rebase(schema map[string]any, base string) map[string]any {
	out := rebaseValue(schema, base).(map[string]any)
	delete(out, "$schema")
	delete(out, "$id")
	return out
}

func rebaseValue(v any, base string) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" && strings.HasPrefix(s, "#") {
				out[k] = base + strings.TrimPrefix(s, "#")
				continue
			}
			out[k] = rebaseValue(x, base)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = rebaseValue(x, base)
		}
		return out
	case json.Number: // a YAML encoder would quote it
		if i, err := v.Int64(); err == nil {
			return i
		}
		if f, err := v.Float64(); err == nil {
			return f
		}
	}
	return v
}

// Encode writes doc as YAML or, with asJSON, as indented JSON.
func Encode(doc map[string]any, asJSON bool) ([]byte, error) {
	if asJSON {
		b, err := json.MarshalIndent(doc, "", "  ")
		return append(b, '\n'), err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	err := enc.Close()
	return b.Bytes(), err
}
