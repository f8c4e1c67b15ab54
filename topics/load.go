package topics

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/txoutbox/txoutbox/topics/internal/fastpath"
)

// MaxSizeDefault is the largest definitions file [Load] and [Parse] accept
// unless [WithMaxSize] says otherwise: far above any real file, far below
// what could exhaust memory.
const MaxSizeDefault = 4 << 20

// FormatVersion is the only value the optional top-level Version key may
// have. A later format that older releases cannot read will raise it, so an
// old binary refuses a new file instead of misreading it.
const FormatVersion = 1

// DefaultKey is the ordering key of topics whose definition has no Key.
const DefaultKey = "/id"

// aliasExpansionMax bounds how many YAML nodes aliases may expand to, so a
// small file of nested aliases (a "billion laughs") cannot exhaust memory.
const aliasExpansionMax = 10_000

// Option changes how [Load] and [Parse] read definitions.
type Option func(*options)

type options struct {
	maxSize          int64
	formatAssertions bool
}

// WithFormatAssertions makes the JSON Schema "format" keyword an assertion:
// data whose "email" is not an e-mail address fails validation. It is off by
// default, as in bc-events, so existing events keep validating; turn it on
// for new services.
func WithFormatAssertions() Option {
	return func(o *options) { o.formatAssertions = true }
}

// WithMaxSize sets the largest file accepted, in bytes; larger input fails
// with [ErrTooLarge]. n <= 0 means [MaxSizeDefault].
func WithMaxSize(n int64) Option {
	return func(o *options) { o.maxSize = n }
}

func newOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxSize <= 0 {
		o.maxSize = MaxSizeDefault
	}
	return o
}

// Load reads and checks the topic definitions file at path, usually
// topic_definitions.yaml at the root of a service. Problems in the file are
// reported all at once as a [*LoadError].
func Load(path string, opts ...Option) (*Registry, error) {
	o := newOptions(opts)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load topic definitions: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, o.maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("load topic definitions: %w", err) // a *fs.PathError, naming path
	}
	return parse(path, data, o)
}

// Parse checks topic definitions held in memory; filename is only used in
// error messages. Problems are reported all at once as a [*LoadError].
func Parse(filename string, data []byte, opts ...Option) (*Registry, error) {
	return parse(filename, data, newOptions(opts))
}

func parse(filename string, data []byte, o options) (*Registry, error) {
	if int64(len(data)) > o.maxSize {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", filename, ErrTooLarge, o.maxSize)
	}
	p := &parser{file: filename}
	root := p.decode(data)
	var reg *Registry
	if root != nil {
		reg = p.definitions(root, o)
	}
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *DefinitionError) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
		})
		return nil, &LoadError{Errors: p.errs}
	}
	return reg, nil
}

// parser collects every problem in one file.
type parser struct {
	file     string
	errs     []*DefinitionError
	reported map[DefinitionError]bool // what errs holds, to report a problem once
	expanded int                      // nodes reached through aliases so far
	bombed   bool                     // aliasExpansionMax was exceeded and reported
	tooDeep  bool                     // the current schema's depth problem was reported
	// misspelt holds, per mapping, the known keys an unknown key was taken
	// for; their absence is not reported again as "missing".
	misspelt map[*yaml.Node][]string
}

// missing reports a required key absent from the mapping n, unless a
// misspelling of it was reported already.
func (p *parser) missing(n *yaml.Node, key, hint string) {
	if !slices.Contains(p.misspelt[n], key) {
		p.errorf(n, hint, "missing %s", key)
	}
}

// errorAt records a problem. One reached again through an alias, as in an
// anchored schema shared by several topics, is recorded once.
func (p *parser) errorAt(line, col int, hint, format string, args ...any) {
	e := DefinitionError{File: p.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...), Hint: hint}
	if p.reported[e] {
		return
	}
	if p.reported == nil {
		p.reported = map[DefinitionError]bool{}
	}
	p.reported[e] = true
	p.errs = append(p.errs, &e)
}

func (p *parser) errorf(n *yaml.Node, hint, format string, args ...any) {
	p.errorAt(n.Line, n.Column, hint, format, args...)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decode parses the single YAML document in data and returns its top-level
// node, or nil after recording why there is none.
func (p *parser) decode(data []byte) (root *yaml.Node) {
	if !utf8.Valid(data) {
		line, col := position(data, invalidUTF8At(data))
		p.errorAt(line, col, "save the file as UTF-8", "file is not valid UTF-8")
		return nil
	}
	defer func() {
		// yaml.v3 has panicked on malformed input before; a definitions file
		// must never take the process down.
		if v := recover(); v != nil {
			p.errorAt(1, 1, "", "cannot parse YAML: %v", v)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorAt(1, 1, "define DefaultCategory and Topics", "file is empty")
			return nil
		}
		p.yamlError(data, err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf(&extra, "keep all topics in one document", "more than one YAML document")
		return nil
	} else if !errors.Is(err, io.EOF) {
		p.yamlError(data, err)
		return nil
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		p.errorAt(1, 1, "define DefaultCategory and Topics", "file is empty")
		return nil
	}
	return doc.Content[0]
}

// yamlError records a YAML syntax error. yaml.v3 reports a line without a
// column, and for a tab in indentation the line where the scalar before it
// began; the tab is found again in data so that the position is its own.
func (p *parser) yamlError(data []byte, err error) {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		p.errorAt(1, 1, "", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	line, _ := strconv.Atoi(m[1])
	col, hint, msg := 1, "", m[2]
	last := line // the line is right; only the column is missing
	if strings.Contains(msg, "tab character") {
		last = bytes.Count(data, []byte("\n")) + 1
	}
	if l, c, ok := indentTab(data, line, last); ok {
		line, col, hint = l, c, "indent with spaces: YAML does not allow tabs in indentation"
	}
	p.errorAt(line, col, hint, "invalid YAML: %s", msg)
}

// indentTab returns the position of the first tab in the indentation of
// lines first to last of data.
func indentTab(data []byte, first, last int) (line, col int, ok bool) {
	for i, l := range bytes.SplitAfter(data, []byte("\n")) {
		line = i + 1
		if line > last {
			break
		}
		if line < first {
			continue
		}
		indent := l[:len(l)-len(bytes.TrimLeft(l, " \t"))]
		if j := bytes.IndexByte(indent, '\t'); j >= 0 {
			return line, j + 1, true
		}
	}
	return 0, 0, false
}

func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(data)
}

// position returns the 1-based line and column (in characters) of offset.
func position(data []byte, offset int) (line, col int) {
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return line, col
}

var (
	categoryRE = regexp.MustCompile(`^[a-z]+$`)
	actionRE   = regexp.MustCompile(`^[A-Z][a-z]+$`)
	entityRE   = regexp.MustCompile(`^([A-Z][a-z]+)+$`)
)

var (
	fileKeys  = []string{"DefaultCategory", "Topics", "Version"}
	topicKeys = []string{"Action", "Entity", "Category", "Description", "Schema", "Key", "Version", "Poison"}
)

// definitions checks the top-level mapping and builds the registry; it
// returns nil when there were problems.
func (p *parser) definitions(root *yaml.Node, o options) *Registry {
	fields, ok := p.fields(root, "the file", fileKeys)
	if !ok {
		return nil
	}
	if v, ok := fields["Version"]; ok {
		if n, ok := p.integer(v, "Version"); ok && n != FormatVersion {
			p.errorf(v.value, fmt.Sprintf("this release reads Version %d; upgrade txoutbox", FormatVersion),
				"unsupported Version %d", n)
		}
	}
	defaultCategory, _ := p.name(root, fields, "DefaultCategory", categoryRE, "lower-case letters only, e.g. billing", true)

	seq := p.required(root, fields, "Topics", "add a Topics list")
	if seq == nil {
		return nil
	}
	if seq.Kind != yaml.SequenceNode {
		if isNull(seq) {
			p.errorf(fields["Topics"].key, "define at least one topic", "Topics is empty")
		} else {
			p.errorf(fields["Topics"].at(), "Topics is a list: one \"- Action: ...\" entry per topic", "Topics must be a list, got %s", kindName(seq))
		}
		return nil
	}
	if len(seq.Content) == 0 {
		p.errorf(fields["Topics"].key, "define at least one topic", "Topics is empty")
		return nil
	}

	c := newSchemaCompiler(o)
	var ts []*Topic
	byName := map[string]*Topic{}
	byNorm := map[string]*Topic{}
	byParts := map[string]*Topic{}
	checked := map[*yaml.Node]*Topic{}
	for _, item := range seq.Content {
		n := p.resolve(item)
		if n == nil {
			continue
		}
		// An alias of an entry checked already repeats its topic; only
		// the repetition is new.
		t, seen := checked[n]
		clean := false
		if !seen {
			t, clean = p.topic(n, defaultCategory, c)
			checked[n] = t
		}
		// A topic with problems of its own still takes part in the
		// duplicate checks, so that one run reports both.
		if t == nil || t.Name == "" {
			continue
		}
		if first, ok := byName[t.Name]; ok {
			p.errorf(item, fmt.Sprintf("first defined at line %d", first.Line), "duplicate topic %s", t.Name)
			continue
		}
		first, ok := byParts[partsKey(t)]
		if !ok {
			first, ok = byNorm[normalize(t.Name)]
		}
		if ok {
			p.errorf(item, "lookups ignore case, '_' and '-', so the two cannot be told apart; rename or remove one",
				"topic %s differs from %s (line %d) only in spelling", t.Name, first.Name, first.Line)
			continue
		}
		byName[t.Name], byNorm[normalize(t.Name)], byParts[partsKey(t)] = t, t, t
		if clean {
			ts = append(ts, t)
		}
	}
	if len(p.errs) > 0 {
		return nil
	}
	return newRegistry(defaultCategory, ts)
}

// topic checks the entry n of Topics, aliases resolved, recording its problems. It returns the
// topic, nil when the entry is not a mapping, and whether it had no
// problems. Name is set whenever the names that make it up are valid, also
// when other parts of the entry are not.
func (p *parser) topic(n *yaml.Node, defaultCategory string, c *schemaCompiler) (*Topic, bool) {
	fields, ok := p.fields(n, "a topic", topicKeys)
	if !ok {
		return nil, false
	}
	before := len(p.errs)
	t := &Topic{File: p.file, Line: n.Line, Key: DefaultKey, Version: 1}
	t.Action, _ = p.name(n, fields, "Action", actionRE, "one capitalised word in the past tense, e.g. Created", true)
	t.Entity, _ = p.name(n, fields, "Entity", entityRE, "capitalised words run together, e.g. Invoice or LineItem", true)
	t.Category, _ = p.name(n, fields, "Category", categoryRE, "lower-case letters only, e.g. billing", false)
	if _, ok := fields["Category"]; !ok {
		t.Category = defaultCategory
	}
	if t.Action != "" && t.Entity != "" && t.Category != "" {
		t.Name = t.Category + "." + t.Entity + t.Action
	}
	t.Description, _ = p.str(n, fields, "Description", false)
	if v, ok := fields["Version"]; ok {
		if t.Version, ok = p.integer(v, "Version"); ok && t.Version < 1 {
			p.errorf(v.value, "schema versions count from 1", "Version must be at least 1, got %d", t.Version)
		}
	}
	if s, ok := p.str(n, fields, "Poison", false); ok && s != poisonBlock && s != poisonSkip {
		v := fields["Poison"].value
		hint := "block holds a key's later events back after a dead letter, skip delivers them"
		if sg := suggest(s, []string{poisonBlock, poisonSkip}); sg != "" {
			hint = fmt.Sprintf("did you mean %q?", sg)
		}
		p.errorf(v, hint, "Poison must be %q or %q, got %q", poisonBlock, poisonSkip, s)
	} else {
		t.Poison = s
	}
	var keyNode *yaml.Node
	if s, ok := p.str(n, fields, "Key", false); ok {
		keyNode = fields["Key"].at()
		t.Key = s
		if _, err := splitPointer(s); err != nil || s == "" {
			if err == nil {
				err = errors.New("the key cannot be the whole event")
			}
			p.errorf(keyNode, "a JSON pointer into the data, e.g. /id or /customer/id", "invalid Key %q: %v", s, err)
			keyNode = nil
		}
	}

	schemaNode := p.required(n, fields, "Schema", "add the JSON Schema of the event's data")
	if schemaNode == nil {
		return t, false
	}
	if schemaNode.Kind != yaml.MappingNode {
		p.errorf(fields["Schema"].at(), "the JSON Schema of the event's data, e.g. {type: object, required: [id], properties: {...}}",
			"Schema must be a mapping, got %s", kindName(schemaNode))
		return t, false
	}
	// The schema is checked even when the names have problems, so that one
	// run reports both.
	p.topicSchema(t, schemaNode, keyNode, c)
	return t, len(p.errs) == before
}

// topicSchema converts, checks and compiles a topic's schema into t.
func (p *parser) topicSchema(t *Topic, schemaNode, keyNode *yaml.Node, c *schemaCompiler) {
	p.tooDeep = false
	doc, ok := p.toJSON(schemaNode, nil, 0)
	if !ok {
		return
	}
	t.Schema = doc.(map[string]any)
	p.lintSchema(schemaNode, t.Schema, nil)
	// A Key written out must be guaranteed by the schema. The default one
	// need not be, so bc-events files without an id keep loading.
	msg, hint := keyProblem(t.Schema, t.Key)
	if keyNode != nil && msg != "" {
		p.errorf(keyNode, hint, "Key %s: %s", t.Key, msg)
	}
	t.keyChecked = msg == ""
	// The compiler keeps parts of what it compiles; it gets its own copy so
	// that t.Schema is only ever read.
	sch, err := c.compile(deepCopy(t.Schema))
	if err != nil {
		p.schemaCompileError(t, schemaNode, err)
		return
	}
	t.schema = sch
	t.fast = fastpath.New(sch)
}

// entry is one key of a mapping with merges resolved.
type entry struct {
	key, value *yaml.Node
	// via is the merge key that brought the entry in, nil for the mapping's
	// own; a merged value is copied, so it is charged like an alias.
	via *yaml.Node
}

// at returns the node a problem with the entry's value is reported at: the
// alias when the value is one, and the key when it is a block mapping or
// list, whose own position is that of its first entry, on a later line.
func (e entry) at() *yaml.Node {
	v := e.value
	switch {
	case v.Kind == yaml.AliasNode:
		return v
	case (v.Kind == yaml.MappingNode || v.Kind == yaml.SequenceNode) && v.Style&yaml.FlowStyle == 0:
		return e.key
	}
	return v
}

// fields returns the keys of the mapping n, checking each against known.
func (p *parser) fields(n *yaml.Node, what string, known []string) (map[string]entry, bool) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "", "%s must be a mapping with keys %s, got %s", what, strings.Join(known, ", "), kindName(n))
		return nil, false
	}
	es, ok := p.entries(n)
	if !ok {
		return nil, false
	}
	fields := make(map[string]entry, len(es))
	for _, e := range es {
		k := e.key.Value
		if !slices.Contains(known, k) {
			hint := "known keys: " + strings.Join(known, ", ")
			if s := suggest(k, known); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
				if p.misspelt == nil {
					p.misspelt = map[*yaml.Node][]string{}
				}
				p.misspelt[n] = append(p.misspelt[n], s)
			}
			p.errorf(e.key, hint, "unknown key %q in %s", k, what)
			continue
		}
		fields[k] = e
	}
	return fields, true
}

// entries returns the key/value pairs of a mapping in order, with YAML merge
// keys (<<: *base) applied and duplicate keys reported.
func (p *parser) entries(n *yaml.Node) ([]entry, bool) {
	return p.mergeEntries(n, 0)
}

func (p *parser) mergeEntries(n *yaml.Node, depth int) ([]entry, bool) {
	if depth > 16 {
		p.errorf(n, "", "YAML merge keys nested too deeply")
		return nil, false
	}
	var own, merged []entry
	seen := map[string]*yaml.Node{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := p.resolve(n.Content[i]), n.Content[i+1]
		if k == nil {
			return nil, false
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			es, mok := p.merge(v, depth)
			ok = ok && mok
			// Copies are charged to the alias that brings them in, or to
			// the merge key when its value is written out.
			via := k
			if v.Kind == yaml.AliasNode {
				via = v
			}
			for _, e := range es {
				if !slices.ContainsFunc(merged, func(m entry) bool { return m.key.Value == e.key.Value }) {
					merged = append(merged, entry{e.key, e.value, via})
				}
			}
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			hint := ""
			if k.Kind == yaml.ScalarNode {
				hint = fmt.Sprintf("quote it: %q", k.Value)
			}
			p.errorf(k, hint, "mapping key must be a string, got %s", kindName(k))
			ok = false
			continue
		}
		if !p.unambiguous(k) {
			ok = false
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(k, fmt.Sprintf("first defined at line %d", first.Line), "duplicate key %q", k.Value)
			ok = false
			continue
		}
		seen[k.Value] = k
		own = append(own, entry{k, v, nil})
	}
	for _, e := range merged {
		if _, dup := seen[e.key.Value]; !dup {
			own = append(own, e)
		}
	}
	return own, ok
}

// merge returns the entries a merge key's value contributes: one mapping or
// a list of them, earlier ones winning.
func (p *parser) merge(v *yaml.Node, depth int) ([]entry, bool) {
	v = p.resolve(v)
	if v == nil {
		return nil, false
	}
	switch v.Kind {
	case yaml.MappingNode:
		return p.mergeEntries(v, depth+1)
	case yaml.SequenceNode:
		var all []entry
		for _, m := range v.Content {
			m = p.resolve(m)
			if m == nil {
				return nil, false
			}
			if m.Kind != yaml.MappingNode {
				p.errorf(m, "", "a merge key takes a mapping or a list of mappings, got %s", kindName(m))
				return nil, false
			}
			es, ok := p.mergeEntries(m, depth+1)
			if !ok {
				return nil, false
			}
			for _, e := range es {
				if !slices.ContainsFunc(all, func(a entry) bool { return a.key.Value == e.key.Value }) {
					all = append(all, e)
				}
			}
		}
		return all, true
	}
	p.errorf(v, "", "a merge key takes a mapping or a list of mappings, got %s", kindName(v))
	return nil, false
}

// resolve follows aliases, charging them to the expansion budget. It returns
// nil once the budget is spent.
func (p *parser) resolve(n *yaml.Node) *yaml.Node { return p.resolveAt(n, n) }

// resolveAt is resolve, reporting a spent budget at site.
func (p *parser) resolveAt(n, site *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		if !p.charge(site, 1) {
			return nil
		}
		n = n.Alias
	}
	return n
}

// charge spends k nodes of the alias expansion budget.
func (p *parser) charge(at *yaml.Node, k int) bool {
	p.expanded += k
	if p.expanded <= aliasExpansionMax {
		return true
	}
	if !p.bombed {
		p.bombed = true
		hint := "every use of an alias copies its anchor, and copies of copies multiply; " +
			"share schema parts with $defs and $ref inside a schema, or write them out"
		if at.Kind == yaml.AliasNode {
			p.errorf(at, hint, "alias *%s takes YAML aliases past their limit of %d nodes", at.Value, aliasExpansionMax)
		} else {
			p.errorf(at, hint, "this merge key takes YAML aliases past their limit of %d nodes", aliasExpansionMax)
		}
	}
	return false
}

// required returns the value of a required key with aliases resolved, or
// nil after reporting why there is none.
func (p *parser) required(n *yaml.Node, fields map[string]entry, key, hint string) *yaml.Node {
	e, ok := fields[key]
	if !ok {
		p.missing(n, key, hint)
		return nil
	}
	return p.resolve(e.value)
}

// str returns the string value of an optional or required key.
func (p *parser) str(n *yaml.Node, fields map[string]entry, key string, required bool) (string, bool) {
	e, ok := fields[key]
	if !ok {
		if required {
			p.missing(n, key, "")
		}
		return "", false
	}
	v := p.resolve(e.value)
	if v == nil {
		return "", false
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
		hint := ""
		if v.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf("quote it: %q", v.Value)
		}
		p.errorf(e.at(), hint, "%s must be a string, got %s", key, kindName(v))
		return "", false
	}
	return v.Value, true
}

// name returns a string that must match re.
func (p *parser) name(n *yaml.Node, fields map[string]entry, key string, re *regexp.Regexp, hint string, required bool) (string, bool) {
	s, ok := p.str(n, fields, key, required)
	if !ok {
		return "", false
	}
	if !re.MatchString(s) {
		p.errorf(fields[key].at(), hint, "%s %q must match %s", key, s, re)
		return "", false
	}
	return s, true
}

func (p *parser) integer(e entry, key string) (int, bool) {
	v := p.resolve(e.value)
	if v == nil {
		return 0, false
	}
	var i int
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&i) != nil {
		p.errorf(e.at(), "", "%s must be an integer, got %s", key, kindName(v))
		return 0, false
	}
	return i, true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName describes a node for messages, in JSON terms.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!null":
			return "null"
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		}
		return n.ShortTag() + " " + n.Value
	}
	return "nothing"
}
