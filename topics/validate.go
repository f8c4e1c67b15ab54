package topics

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/txoutbox/txoutbox/topics/internal/jsonrule"
)

// Validate checks raw JSON event data against the topic: it must be a JSON
// object with at least one property (the events API's envelope rule) and
// match the topic's schema. It returns the ordering key, the value at
// t.Key: a JSON string as is, an integer as its decimal text. When the key
// is the default "/id" and the schema does not require it, data without a
// string or integer id has the key "".
//
// Invalid data yields a [*ValidationError] naming the topic and the JSON
// pointer of the failing value.
//
// Validate is on every Publish's path, so data is first checked against a
// plan compiled from the schema at load, without decoding it into maps; only
// data that plan cannot pass takes the JSON Schema validator, which decides
// and explains. Valid data of a typical schema costs well under a
// microsecond and one allocation, the key.
func (t *Topic) Validate(raw []byte) (key string, err error) {
	if t.schema == nil {
		return "", t.invalid("", "topic "+t.Name+" was not loaded by this package", nil)
	}
	if t.fast != nil {
		if key, ok := t.fast.Validate(raw, t.Key, t.keyChecked); ok {
			return key, nil
		}
	}
	return t.validateGeneral(raw)
}

// validateGeneral is Validate's general path: it decides on any data and
// explains what is invalid.
func (t *Topic) validateGeneral(raw []byte) (key string, err error) {
	if !utf8.Valid(raw) {
		return "", t.invalid("", "invalid JSON: not valid UTF-8", nil)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return "", t.invalid("", "invalid JSON: "+err.Error(), nil)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", t.invalid("", "data must be a JSON object, got "+jsonKind(v), nil)
	}
	if len(obj) == 0 {
		return "", t.invalid("", "data must have at least one property", nil)
	}
	if rpath, problem := badNumber(v); problem != "" {
		slices.Reverse(rpath)
		return "", t.invalid(pointer(rpath), "number "+problem, nil)
	}
	if err := t.schema.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return "", t.invalid("", err.Error(), nil)
		}
		return "", t.schemaError(ve)
	}
	key, ok = keyAt(v, t.Key)
	if !ok && t.keyChecked {
		// The schema guarantees the key; reaching here means the schema
		// check and the key check disagree, which is a bug in this package.
		return "", t.invalid(t.Key, "no string or integer key at "+t.Key, nil)
	}
	return key, nil
}

func (t *Topic) invalid(path, msg string, causes []string) *ValidationError {
	if causes == nil {
		causes = []string{causePath(path) + ": " + msg}
	}
	return &ValidationError{
		Topic: t.Name, Category: t.Category, Entity: t.Entity, Action: t.Action,
		Path: path, Msg: msg, Causes: causes,
	}
}

type failure struct{ path, msg string }

// schemaError flattens the validator's tree of errors into its leaves, the
// failures a person can act on, sorted by location.
func (t *Topic) schemaError(ve *jsonschema.ValidationError) *ValidationError {
	var fs []failure
	for _, l := range leaves(ve) {
		fs = append(fs, failure{pointer(l.InstanceLocation), l.ErrorKind.LocalizedString(printer)})
	}
	slices.SortStableFunc(fs, func(a, b failure) int { return strings.Compare(a.path, b.path) })
	fs = slices.Compact(fs)
	causes := make([]string, len(fs))
	for i, f := range fs {
		causes[i] = causePath(f.path) + ": " + f.msg
	}
	return t.invalid(fs[0].path, fs[0].msg, causes)
}

func causePath(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

// pointer encodes tokens as a JSON pointer (RFC 6901).
func pointer(tokens []string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteByte('/')
		if strings.ContainsAny(tok, "~/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
		}
		b.WriteString(tok)
	}
	return b.String()
}

// splitPointer decodes a JSON pointer into its reference tokens. The empty
// pointer (the whole document) has none.
func splitPointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, errors.New("a JSON pointer starts with /")
	}
	toks := strings.Split(p[1:], "/")
	for i, tok := range toks {
		if strings.Contains(tok, "~") {
			for j := 0; j < len(tok); j++ {
				if tok[j] == '~' && (j+1 == len(tok) || (tok[j+1] != '0' && tok[j+1] != '1')) {
					return nil, errors.New("~ must be followed by 0 or 1 in a JSON pointer")
				}
			}
			toks[i] = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		}
	}
	return toks, nil
}

// keyAt returns the value at the pointer as a key: a string as is, an
// integer as its decimal text.
func keyAt(v any, ptr string) (string, bool) {
	for len(ptr) > 0 {
		obj, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		var tok string
		tok, ptr = jsonrule.NextToken(ptr)
		if v, ok = obj[tok]; !ok {
			return "", false
		}
	}
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return jsonrule.IntegerText(v)
	}
	return "", false
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

// badNumber finds a number no consumer could hold (see
// jsonrule.NumberProblem) and returns its path, innermost token first.
// Checking first also spares the validator's exact arithmetic a number like
// 1e1000000, which costs it tens of milliseconds. It allocates only when it
// finds one.
func badNumber(v any) (rpath []string, problem string) {
	switch v := v.(type) {
	case json.Number:
		return nil, jsonrule.NumberProblem(string(v))
	case map[string]any:
		for k, e := range v {
			if rp, problem := badNumber(e); problem != "" {
				return append(rp, k), problem
			}
		}
	case []any:
		for i, e := range v {
			if rp, problem := badNumber(e); problem != "" {
				return append(rp, strconv.Itoa(i)), problem
			}
		}
	}
	return nil, ""
}
