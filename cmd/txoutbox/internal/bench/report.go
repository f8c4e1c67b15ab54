package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Report is the outcome of Run: what was measured, on what, with what.
type Report struct {
	Started  string   `json:"started"`
	Elapsed  string   `json:"elapsed"`
	Machine  Machine  `json:"machine"`
	Postgres Postgres `json:"postgres"`
	Command  Settings `json:"settings"`
	Results  []Result `json:"results"`
	// Notes explain results: what limited a rate, what a baseline is.
	Notes []string `json:"notes,omitempty"`
}

// Settings are the Config values the run used.
type Settings struct {
	Scenarios       []string `json:"scenarios"`
	Runs            int      `json:"runs"`
	Events          int      `json:"events"`
	WatermillEvents int      `json:"watermill_events"`
	Backlog         int      `json:"backlog"`
	DurationMs      int64    `json:"duration_ms"`
	Subscribers     int      `json:"subscribers"`
	CatchUp         int      `json:"catch_up"`
	OwnCluster      bool     `json:"own_cluster"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs    int    `json:"cpus"`
	CPU     string `json:"cpu,omitempty"`
	OS      string `json:"os"`
	Go      string `json:"go"`
	LoadAvg string `json:"loadavg_at_start,omitempty"`
}

// Postgres describes the server measured.
type Postgres struct {
	Version           string `json:"version"`
	Fsync             string `json:"fsync"`
	SynchronousCommit string `json:"synchronous_commit"`
	SharedBuffers     string `json:"shared_buffers"`
}

// Result is one measurement taken Runs times.
type Result struct {
	Scenario string    `json:"scenario"`
	Key      string    `json:"key"`
	Name     string    `json:"name"`
	Unit     string    `json:"unit"`
	Values   []float64 `json:"values"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	// Ratios compare this measurement with its baselines, run by run.
	Ratios []Ratio `json:"ratios,omitempty"`
	Goal   string  `json:"goal,omitempty"`
	// Met is whether the median meets Goal; absent without a goal.
	Met *bool `json:"met,omitempty"`
}

// Ratio is a measurement divided by a baseline taken in the same runs.
type Ratio struct {
	To     string  `json:"to"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *Report) writeTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d CPUs (%s), %s, %s; PostgreSQL %s, fsync=%s, synchronous_commit=%s, shared_buffers=%s; %d runs each, took %s\n\n",
		r.Machine.CPUs, cmp.Or(r.Machine.CPU, "unknown CPU"), r.Machine.OS, r.Machine.Go,
		r.Postgres.Version, r.Postgres.Fsync, r.Postgres.SynchronousCommit, r.Postgres.SharedBuffers,
		r.Command.Runs, r.Elapsed)
	b.WriteString("| scenario | measurement | median | min–max | vs baseline (median ratio) | goal |\n")
	b.WriteString("|---|---|--:|--:|---|---|\n")
	for _, res := range r.Results {
		ratios := make([]string, len(res.Ratios))
		for i, q := range res.Ratios {
			ratios[i] = fmt.Sprintf("%.2f× %s", q.Median, q.To)
		}
		goal := res.Goal
		if res.Met != nil {
			goal += map[bool]string{true: " ✓", false: " ✗"}[*res.Met]
		}
		fmt.Fprintf(&b, "| %s | %s | %s %s | %s–%s | %s | %s |\n", res.Scenario, res.Name,
			formatValue(res.Median), res.Unit, formatValue(res.Min), formatValue(res.Max),
			strings.Join(ratios, "; "), goal)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatValue prints rates as whole numbers with thousands separators and
// small values (milliseconds, ratios) with two decimals.
func formatValue(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	if math.Abs(v) < 100 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// recorder collects one scenario's measurements run by run.
type recorder struct {
	scenario string
	metrics  []*metric
	notes    []string
}

type metric struct {
	key, name, unit string
	short           string // how ratios to this metric name it
	values          []float64
	baselines       []string // keys of metrics this one is divided by
	goal            goal
}

// goal is a target for a metric's median, or for its median ratio to its
// first baseline.
type goal struct {
	text string
	met  func(median, ratio float64) bool
}

func atLeast(v float64, text string) goal {
	return goal{text: text, met: func(m, _ float64) bool { return m >= v }}
}

func atMost(v float64, text string) goal {
	return goal{text: text, met: func(m, _ float64) bool { return m <= v }}
}

func ratioAtLeast(r float64, text string) goal {
	return goal{text: text, met: func(_, q float64) bool { return q >= r }}
}

func newRecorder(scenario string) *recorder { return &recorder{scenario: scenario} }

// define declares a metric; baselines are keys of metrics defined earlier
// or later in the same scenario. short names the metric in the ratios of
// others to it.
func (r *recorder) define(key, name, short, unit string, g goal, baselines ...string) {
	r.metrics = append(r.metrics, &metric{key: key, name: name, short: short, unit: unit, goal: g, baselines: baselines})
}

func (r *recorder) find(key string) *metric {
	for _, m := range r.metrics {
		if m.key == key {
			return m
		}
	}
	return nil
}

// add records one run's value of a defined metric.
func (r *recorder) add(key string, v float64) {
	m := r.find(key)
	if m == nil {
		panic("bench: metric " + key + " not defined") // a programming error in a scenario
	}
	m.values = append(m.values, v)
}

// note adds an explanation to the report.
func (r *recorder) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *recorder) results() []Result {
	var out []Result
	for _, m := range r.metrics {
		if len(m.values) == 0 {
			continue
		}
		res := Result{Scenario: r.scenario, Key: m.key, Name: m.name, Unit: m.unit, Values: m.values}
		res.Median, res.Min, res.Max = summarize(m.values)
		for _, bk := range m.baselines {
			b := r.find(bk)
			if b == nil || len(b.values) == 0 {
				continue
			}
			// A run whose baseline measured nothing has no ratio.
			var q []float64
			for i, v := range m.values {
				if base := b.values[min(i, len(b.values)-1)]; base > 0 {
					q = append(q, v/base)
				}
			}
			if len(q) == 0 {
				continue
			}
			var ratio Ratio
			ratio.To = cmp.Or(b.short, b.name)
			ratio.Median, ratio.Min, ratio.Max = summarize(q)
			res.Ratios = append(res.Ratios, ratio)
		}
		if m.goal.met != nil {
			res.Goal = m.goal.text
			ratio := math.NaN()
			if len(res.Ratios) > 0 {
				ratio = res.Ratios[0].Median
			}
			met := m.goal.met(res.Median, ratio)
			res.Met = &met
		}
		out = append(out, res)
	}
	return out
}

// summarize returns the median, minimum and maximum of vs.
func summarize(vs []float64) (median, lo, hi float64) {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		median = s[n/2]
	} else {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[0], s[n-1]
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}
