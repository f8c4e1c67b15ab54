// Command txoutbox runs the transactional outbox's relay and its tools.
//
//	txoutbox relay --database-url postgres://localhost/app --sink https://events.example.com
//
// Run "txoutbox --help" for the commands and "txoutbox COMMAND --help" for
// the flags of one. Every flag can also be set with an environment variable:
// --database-url is TXOUTBOX_DATABASE_URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A second signal kills the process as if none were caught.
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "txoutbox: "+err.Error())
		code := 1
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
		os.Exit(code)
	}
}

func run(ctx context.Context) error {
	return dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// command is one subcommand. Each lives in its own file, parses its own
// flags with newFlagSet and parseFlags, and is listed in commands.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands returns the subcommands, in the order --help lists them.
func commands() []command {
	return []command{
		{name: "migrate", summary: "create or upgrade the outbox tables, or print their SQL", run: runMigrate},
		{name: "relay", summary: "deliver committed outbox events to a sink", run: runRelay},
		{name: "sink", summary: "run a local events API that shows what the relay delivers", run: runSink},
		{name: "serve", summary: "run the events API: ingest, store, query and stream events", run: runServe},
		{name: "topics", summary: "check topic definitions (lint, diff) or describe them (docs, asyncapi)", run: runTopics},
		{name: "gen", summary: "generate typed Go publishers from topic definitions", run: runGen},
		{name: "status", summary: "count the outbox's events by state and topic; list the relays", run: runStatus},
		{name: "inspect", summary: "list events, e.g. the dead ones, with their last error", run: runInspect},
		{name: "replay", summary: "requeue dead or delivered events", run: runReplay},
		{name: "console", summary: "serve the operator console: a live web page of the outbox, replay and discard", run: runConsole},
		{name: "demo", summary: "run service, outbox, relay and events API on this machine and show what arrives", run: runDemo},
		{name: "bench", summary: "measure the publish path, the relay and the events API against baselines", run: runBench},
		{name: "version", summary: "print the version and the revision this binary was built from", run: runVersion},
	}
}

// dispatch runs the subcommand named by args[0]. Its error is one line,
// and it and everything written to stderr (logs, problems, usage) have the
// secrets they may echo from the arguments or the environment masked (see
// redact). Each command masks what it echoes on stdout, which also carries
// data that must pass unchanged.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatchCommand(ctx, args, stdout, redactWriter{stderr})
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return redactErr(err, givenValues(args)...)
}

func dispatchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 {
		printUsage(stderr, cmds)
		return errors.New("no command given")
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		printUsage(stdout, cmds)
		return nil
	case "-version", "--version":
		return runVersion(ctx, args[1:], stdout, stderr)
	}
	i := slices.IndexFunc(cmds, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.name
		}
		if s := closest(args[0], names); s != "" {
			return fmt.Errorf("unknown command %q; did you mean %s?", args[0], s)
		}
		return fmt.Errorf("unknown command %q (see txoutbox --help)", args[0])
	}
	return cmds[i].run(ctx, args[1:], stdout, stderr)
}

// givenValues returns the values the command was given, on the command line
// (a "--flag=value" as its value) and in TXOUTBOX_ environment variables:
// the secrets among them are masked wherever an error shows them.
func givenValues(args []string) []string {
	var vs []string
	for _, a := range args {
		if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") {
			a = v
		}
		vs = append(vs, a)
	}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "TXOUTBOX_") {
			vs = append(vs, v)
		}
	}
	return vs
}

func printUsage(w io.Writer, cmds []command) {
	fmt.Fprintln(w, "Usage: txoutbox COMMAND [flags]")
	fmt.Fprintln(w, "       txoutbox --version")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "txoutbox COMMAND --help" for a command's flags. Every flag can also be set`)
	fmt.Fprintln(w, "with an environment variable: --database-url is TXOUTBOX_DATABASE_URL.")
}

// newFlagSet returns the flag set of subcommand name. usage is printed
// before the flags by --help, and examples after them.
func newFlagSet(name, usage, examples string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: txoutbox %s [flags]\n\n%s\n\nFlags:\n", name, strings.TrimSpace(usage))
		fs.VisitAll(func(f *flag.Flag) {
			typ, help := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  %s\n", strings.TrimSpace("--"+f.Name+" "+typ))
			fmt.Fprintf(w, "        %s\n", strings.ReplaceAll(help, "\n", "\n        "))
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
				fmt.Fprintf(w, "        (default %s; env %s)\n", f.DefValue, envName(f.Name))
			} else {
				fmt.Fprintf(w, "        (env %s)\n", envName(f.Name))
			}
		})
		fmt.Fprintf(w, "\nExamples:\n%s\n", examples)
	}
	return fs
}

// parseFlags parses args, then sets every flag not given on the command line
// from its environment variable (TXOUTBOX_ and the flag's name in capitals,
// dashes as underscores). --help prints the usage to stdout and returns
// flag.ErrHelp, which dispatch turns into success.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return err
		}
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
			var names []string
			fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
			if s := closest(name, names); s != "" {
				return fmt.Errorf("%s: %w; did you mean --%s?", fs.Name(), err, s)
			}
		}
		return fmt.Errorf("%s: %w (see txoutbox %s --help)", fs.Name(), err, fs.Name())
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (see txoutbox %s --help)", fs.Name(), fs.Arg(0), fs.Name())
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := os.LookupEnv(envName(f.Name))
		if given[f.Name] || !ok || err != nil {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s: invalid value %q for %s: %w", fs.Name(), v, envName(f.Name), serr)
		}
	})
	return err
}

// envName returns the environment variable of flag name.
func envName(name string) string {
	return "TXOUTBOX_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// closest returns the candidate nearest to name, for a "did you mean", or
// "" when none is near enough to be what was meant: within two edits, or a
// third of name's length for longer names.
func closest(name string, candidates []string) string {
	best, bestDist := "", 0
	for _, c := range candidates {
		if d := editDistance(name, c); best == "" || d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" || bestDist >= len(name) || bestDist > max(2, len(name)/3) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// the insertions, deletions, substitutions and swaps of two neighbours that
// turn one into the other.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
