package gen_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/cmd/txoutbox/internal/gen"
	"github.com/txoutbox/txoutbox/topics"
)

func TestMarkdownGolden(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"../../../../topic_definitions.yaml", "testdata/shapes.yaml"} {
		reg, err := topics.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		md := gen.Markdown(reg, f)
		if again := gen.Markdown(reg, f); !bytes.Equal(md, again) {
			t.Fatalf("%s: a second run gave different output", f)
		}
		name := strings.TrimSuffix(f[strings.LastIndex(f, "/")+1:], ".yaml")
		compareOrUpdate(t, "testdata/"+name+".md.golden", md)
	}
}
