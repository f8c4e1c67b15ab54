package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/txoutbox/txoutbox/cmd/txoutbox/internal/asyncapi"
	"github.com/txoutbox/txoutbox/cmd/txoutbox/internal/gen"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/topics"
	"github.com/txoutbox/txoutbox/topics/topicsdiff"
)

// topicsFileDefault is the definitions file the tools read when given none.
const topicsFileDefault = "topic_definitions.yaml"

const topicsUsage = `
Work with a topic definitions file (topic_definitions.yaml, the format the
Python bc-events client reads).

  txoutbox topics lint [FILE]   check the file; every problem with file:line:column
  txoutbox topics docs [FILE]   write a Markdown catalogue of the topics to stdout
  txoutbox topics diff OLD NEW  report the changes from OLD to NEW that break the
                                catalog's contract; exit 3 when there are any
  txoutbox topics asyncapi [FILE]
                                write an AsyncAPI 3.0 document of the topics to stdout

FILE defaults to --topics (TXOUTBOX_TOPICS), or topic_definitions.yaml.`

const topicsLintUsage = `
Check a topic definitions file: keys, names, duplicate topics, JSON Schemas,
ordering keys. A valid file prints a one-line summary and exits 0; otherwise
every problem is printed as FILE:LINE:COLUMN: message (hint: ...) and the
command exits 1. A topic without a Description (optional, as in bc-events)
gets a FILE:LINE: hint line, which does not fail the check.

FILE defaults to --topics (TXOUTBOX_TOPICS), or topic_definitions.yaml.`

const topicsLintExamples = `  txoutbox topics lint
  txoutbox topics lint config/topic_definitions.yaml
  TXOUTBOX_TOPICS=config/topic_definitions.yaml txoutbox topics lint`

const topicsDocsUsage = `
Write a Markdown catalogue of the topics to stdout: an index, then per topic
its description, ordering key and a table of its data's fields.

FILE defaults to --topics (TXOUTBOX_TOPICS), or topic_definitions.yaml.`

const topicsDocsExamples = `  txoutbox topics docs > docs/events.md
  txoutbox topics docs config/topic_definitions.yaml`

const topicsAsyncAPIUsage = `
Write an AsyncAPI 3.0 document of the topics to stdout, as the relay's HTTP
sink sends them in the wire format --format names: per topic a channel, a
send operation and a message whose payload is the format's envelope (the
bc-events body, or a CloudEvent) around the topic's JSON Schema, which is
copied to components/schemas, and whose headers are the ones the relay
sets (X-Britecore-Job-Id, Idempotency-Key, X-Txoutbox-*, Traceparent; or
the batch's Content-Type).

FILE defaults to --topics (TXOUTBOX_TOPICS), or topic_definitions.yaml.`

const topicsAsyncAPIExamples = `  txoutbox topics asyncapi > asyncapi.yaml
  txoutbox topics asyncapi --format cloudevents --output json > asyncapi.json`

func runTopics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		w := stdout
		if len(args) == 0 {
			w = stderr
		}
		fmt.Fprintf(w, "Usage: txoutbox topics lint|docs|diff|asyncapi [flags] [FILE]\n%s\n", topicsUsage)
		if len(args) == 0 {
			return errors.New("topics: lint, docs, diff or asyncapi? (see txoutbox topics --help)")
		}
		return nil
	}
	switch args[0] {
	case "lint":
		return runTopicsLint(ctx, args[1:], stdout, stderr)
	case "docs":
		return runTopicsDocs(ctx, args[1:], stdout, stderr)
	case "asyncapi":
		return runTopicsAsyncAPI(ctx, args[1:], stdout, stderr)
	case "diff":
		return runTopicsDiff(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("topics: unknown command %q: lint, docs, diff or asyncapi (see txoutbox topics --help)", args[0])
}

func runTopicsLint(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("topics lint", topicsLintUsage, topicsLintExamples)
	file, err := parseTopicsArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	reg, err := loadTopics("topics lint", file, stdout)
	if err != nil {
		return err
	}
	ts := reg.Topics()
	var cats []string
	for _, t := range ts {
		if !slices.Contains(cats, t.Category) {
			cats = append(cats, t.Category)
		}
	}
	slices.Sort(cats)
	for _, t := range ts {
		if strings.TrimSpace(t.Description) == "" {
			fmt.Fprintln(stdout, redact(fmt.Sprintf("%s:%d: %s has no Description (hint: say in a sentence what happened; txoutbox topics docs shows it)", t.File, t.Line, t.Name)))
		}
	}
	fmt.Fprintln(stdout, redact(fmt.Sprintf("%s: %s in %s (%s), all valid", file, plural(len(ts), "topic", "topics"),
		plural(len(cats), "category", "categories"), strings.Join(cats, ", "))))
	return nil
}

func runTopicsDocs(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("topics docs", topicsDocsUsage, topicsDocsExamples)
	file, err := parseTopicsArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	reg, err := loadTopics("topics docs", file, stderr)
	if err != nil {
		return err
	}
	_, err = stdout.Write(gen.Markdown(reg, file))
	return err
}

const topicsDiffUsage = `
Compare two versions of a topic definitions file, for CI: print every
change from OLD to NEW as FILE:LINE: breaking|info: TOPIC [PATH]: what
changed (NEW's line, or OLD's for something removed), breaking changes
first, then a summary line.

Breaking: a topic removed; its ordering Key changed; a required property
removed; a property newly required; a type narrowed or added; an enum added
or a value removed from one; a const added or changed;
additionalProperties: false added; a bound (minimum, maxLength, minItems,
...) tightened or added; a multipleOf or pattern added or changed; any
other keyword (allOf, oneOf, ...) changed. Everything else (a topic or
optional property added, a type widened, a bound loosened, a Version,
Poison, Description or format changed, ...) is info.

Exit status: 0 when nothing breaks, 3 when a change breaks, 1 on an error
(a file missing or not valid).`

const topicsDiffExamples = `  git show main:topic_definitions.yaml > /tmp/old.yaml
  txoutbox topics diff /tmp/old.yaml topic_definitions.yaml`

// exitBreaking is the exit status of topics diff when a change breaks.
const exitBreaking = 3

// breakingError says topics diff found breaking changes.
type breakingError struct{ n int }

func (e *breakingError) Error() string {
	return fmt.Sprintf("topics diff: %s", plural(e.n, "breaking change", "breaking changes"))
}
func (e *breakingError) ExitCode() int { return exitBreaking }

func runTopicsDiff(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("topics diff", topicsDiffUsage, topicsDiffExamples)
	flags, files, err := splitArgs(fs, args, 2)
	if err != nil {
		return err
	}
	if err := parseFlags(fs, flags, stdout); err != nil {
		return err
	}
	if len(files) != 2 {
		return errors.New("topics diff: want two files, OLD and NEW (see txoutbox topics diff --help)")
	}
	var data [2][]byte
	for i, f := range files {
		if data[i], err = os.ReadFile(f); err != nil {
			return fmt.Errorf("topics diff: %w", err)
		}
	}
	changes, err := topicsdiff.Diff(files[0], data[0], files[1], data[1])
	var lerr *topics.LoadError
	if errors.As(err, &lerr) {
		for _, d := range lerr.Errors {
			fmt.Fprintln(stdout, redact(d.Error()))
		}
		return fmt.Errorf("topics diff: %s in %s", plural(len(lerr.Errors), "problem", "problems"), strings.Join(files, " or "))
	}
	if err != nil {
		return fmt.Errorf("topics diff: %w", err)
	}
	breaking := 0
	for _, c := range changes {
		fmt.Fprintln(stdout, redact(c.String()))
		if c.Breaking {
			breaking++
		}
	}
	fmt.Fprintf(stdout, "%s, %s\n", plural(breaking, "breaking change", "breaking changes"), plural(len(changes)-breaking, "other change", "other changes"))
	if breaking > 0 {
		return &breakingError{breaking}
	}
	return nil
}

func runTopicsAsyncAPI(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("topics asyncapi", topicsAsyncAPIUsage, topicsAsyncAPIExamples)
	format := fs.String("format", string(wire.FormatBriteEvents), "wire `format` the relay sends: briteevents or cloudevents")
	output := fs.String("output", "yaml", "`encoding` of the document: yaml or json")
	title := fs.String("title", "", "the document's info.title (default: \"CATEGORY events\")")
	file, err := parseTopicsArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if *output != "yaml" && *output != "json" {
		return fmt.Errorf("topics asyncapi: --output %q: want yaml or json", *output)
	}
	reg, err := loadTopics("topics asyncapi", file, stderr)
	if err != nil {
		return err
	}
	doc, err := asyncapi.Document(reg, wire.Format(*format), cmp.Or(*title, reg.DefaultCategory()+" events"))
	if err != nil {
		return fmt.Errorf("topics asyncapi: --format: %w", err)
	}
	b, err := asyncapi.Encode(doc, *output == "json")
	if err != nil {
		return fmt.Errorf("topics asyncapi: %w", err)
	}
	_, err = stdout.Write(b)
	return err
}

// parseTopicsArgs registers --topics, parses args, which may hold one FILE
// before or after the flags, and returns the definitions file to read.
func parseTopicsArgs(fs *flag.FlagSet, args []string, stdout io.Writer) (string, error) {
	file := fs.String("topics", topicsFileDefault, "topic definitions `file`; a FILE argument takes precedence")
	flags, rest, err := splitArgs(fs, args, 1)
	if err != nil {
		return "", err
	}
	if err := parseFlags(fs, flags, stdout); err != nil {
		return "", err
	}
	if len(rest) == 1 {
		return rest[0], nil
	}
	return *file, nil
}

// splitArgs separates the flags in args from the other arguments, of which
// there may be at most max, so that a file may come before or after the
// flags. Everything after "--" is an argument.
func splitArgs(fs *flag.FlagSet, args []string, max int) (flags, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			i = len(args)
			continue
		case a == "-" || !strings.HasPrefix(a, "-"):
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // parseFlags reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if len(rest) > max {
		return nil, nil, fmt.Errorf("%s: unexpected argument %q (see txoutbox %s --help)", fs.Name(), rest[max], fs.Name())
	}
	return flags, rest, nil
}

// loadTopics reads a definitions file for cmd, the start of its errors
// ("gen", "relay: --topics"). When the file has problems, they are written
// to problems one per line and the error counts them.
func loadTopics(cmd, file string, problems io.Writer) (*topics.Registry, error) {
	reg, err := topics.Load(file)
	var lerr *topics.LoadError
	var perr *os.PathError
	switch {
	case err == nil:
		return reg, nil
	case errors.As(err, &lerr):
		for _, d := range lerr.Errors {
			fmt.Fprintln(problems, redact(d.Error()))
		}
		return nil, fmt.Errorf("%s: %s in %s", cmd, plural(len(lerr.Errors), "problem", "problems"), file)
	case errors.As(err, &perr):
		if fi, serr := os.Stat(file); serr == nil && fi.IsDir() {
			return nil, fmt.Errorf("%s: cannot read %s: is a directory (want a topic definitions file, e.g. %s)", cmd, file, topicsFileDefault)
		}
		return nil, fmt.Errorf("%s: cannot read %s: %w", cmd, file, perr.Err)
	case errors.Is(err, topics.ErrTooLarge):
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return nil, fmt.Errorf("%s: %w", cmd, err)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
