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
		os.Exit(1)
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
		{name: "topics", summary: "check topic definitions (lint) or write their Markdown catalogue (docs)", run: runTopics},
		{name: "gen", summary: "generate typed Go publishers from topic definitions", run: runGen},
		{name: "status", summary: "count the outbox's events by state and topic; list the relays", run: runStatus},
		{name: "inspect", summary: "list events, e.g. the dead ones, with their last error", run: runInspect},
		{name: "replay", summary: "requeue dead or delivered events", run: runReplay},
		{name: "demo", summary: "run service, outbox, relay and events API on this machine and show what arrives", run: runDemo},
		{name: "bench", summary: "measure the publish path and the relay against baselines", run: runBench},
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
	}
	i := slices.IndexFunc(cmds, func(c command) bool { return c.name == args[0] })
	if i < 0 {
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
