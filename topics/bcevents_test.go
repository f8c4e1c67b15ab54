package topics_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// TestParseBCEvents loads each file in testdata/bcevents, written for the
// Python bc-events client with the keys it treats as optional left out:
// Description, Category and every key txoutbox adds. Each must load as it
// is, with the defaults filled in.
func TestParseBCEvents(t *testing.T) {
	t.Parallel()
	// Per file, each topic as "name key version poison description".
	cases := map[string][]string{
		"minimal.yaml": {
			`claims.ClaimOpened /id 1 "" ""`,
		},
		"no_description.yaml": {
			`documents.DocumentSent /id 1 "" ""`,
			`policies.PolicyCreated /id 1 "" ""`,
		},
		"mixed.yaml": {
			`billing.InvoiceCreated /id 1 "" "An invoice was issued."`,
			`billing.InvoicePaid /id 1 "" ""`,
			`billing.LineItemUpdated /id 1 "" ""`,
			`notifications.ReminderSent /id 1 "" ""`,
		},
	}
	files, err := filepath.Glob("testdata/bcevents/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Fatalf("testdata/bcevents has %d files, the test knows %d", len(files), len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg := load(t, filepath.Join("testdata/bcevents", name))
			var got []string
			for _, tp := range reg.Topics() {
				got = append(got, fmt.Sprintf("%s %s %d %q %q", tp.Name, tp.Key, tp.Version, tp.Poison, tp.Description))
			}
			if !slices.Equal(got, want) {
				t.Errorf("topics:\n got %q\nwant %q", got, want)
			}
		})
	}
}
