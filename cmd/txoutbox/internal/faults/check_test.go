package faults

import (
	"fmt"
	"strings"
	"testing"
)

// deliveries builds the arrivals of a fault test: each run is one sender
// delivering the events of key-000 from seq first to last, in order.
type deliveries struct {
	arr []arrival
	led *ledger
	pub map[string]int64
}

func newDeliveries() *deliveries {
	return &deliveries{
		led: &ledger{acked: map[string]eventRef{}, inDoubt: map[string]eventRef{}},
		pub: map[string]int64{},
	}
}

func (d *deliveries) send(from string, first, last int64) *deliveries {
	for seq := first; seq <= last; seq++ {
		ref := eventRef{key: "key-000", seq: seq}
		id := fmt.Sprintf("ev-%04d", seq)
		d.led.acked[id] = ref
		d.pub[ref.key] = max(d.pub[ref.key], seq)
		d.arr = append(d.arr, arrival{id: id, key: ref.key, seq: seq, from: from})
	}
	return d
}

// TestCheckChargesEachRedeliveryToTheSenderBefore checks the accounting of
// duplicates after kills: a delivery again is charged to the sender of the
// delivery before it, which went unrecorded, and must be of the batch that
// sender had in flight: its last deliveries.
func TestCheckChargesEachRedeliveryToTheSenderBefore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    *deliveries
		opts checkOptions
		want string // in the problems; "" for none
	}{{
		// killed-00 is killed with 51..100 in flight; killed-01 takes
		// over, delivers them again and is killed before recording them
		// (they were its first batch), so killed-02 delivers them a third
		// time: one batch per kill, two of them with the same events.
		name: "successor killed while delivering its predecessor's batch",
		d: newDeliveries().send("killed-00", 1, 100).
			send("killed-01", 51, 100).
			send("killed-02", 51, 120),
		opts: checkOptions{lastBatch: 50},
	}, {
		name: "only the kills' batches in flight",
		d: newDeliveries().send("killed-00", 1, 100).
			send("killed-01", 71, 130).
			send("killed-02", 101, 140),
		opts: checkOptions{lastBatch: 50},
	}, {
		name: "more than one batch left by a kill",
		d: newDeliveries().send("killed-00", 1, 100).
			send("killed-01", 41, 110),
		opts: checkOptions{lastBatch: 50},
		want: "killed-00 left 60 events to be delivered again, 10 of them before its last 50 deliveries",
	}, {
		name: "an early batch delivered again",
		d: newDeliveries().send("killed-00", 1, 100).
			send("killed-01", 1, 10).
			send("killed-01", 101, 110),
		opts: checkOptions{lastBatch: 50},
		want: "killed-00 left 10 events to be delivered again, 10 of them before its last 50 deliveries",
	}, {
		name: "per sender bound, chain",
		d: newDeliveries().send("a", 1, 100).
			send("b", 51, 100).
			send("c", 51, 100),
		opts: checkOptions{maxRedeliveredPerSender: 50},
	}, {
		name: "per sender bound exceeded",
		d: newDeliveries().send("a", 1, 100).
			send("b", 40, 100),
		opts: checkOptions{maxRedeliveredPerSender: 50},
		want: "61 events delivered by a were delivered again by another sender, more than 50",
	}, {
		name: "same sender",
		d:    newDeliveries().send("a", 1, 10).send("a", 10, 10),
		opts: checkOptions{lastBatch: 50},
		want: `delivered twice by the same sender "a"`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, problems := verify("test", tt.d.pub, tt.d.led, tt.d.arr, tt.opts)
			got := strings.Join(problems, "\n")
			switch {
			case tt.want == "" && got != "":
				t.Errorf("problems:\n%s\nwant none", got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Errorf("problems:\n%s\nwant one saying %q", got, tt.want)
			}
		})
	}
}
