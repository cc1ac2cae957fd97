package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with the file at path, or writes it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(got), string(want)); diff != "" {
		t.Errorf("%s differs (-got +want); run go test -update if the change is intended:\n%s", path, diff)
	}
}

func inputs(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no inputs in testdata/%s", dir)
	}
	return files
}

// TestEffectiveGolden: valid config in → effective config (after
// validation and canonicalization) out.
func TestEffectiveGolden(t *testing.T) {
	for _, in := range inputs(t, "effective") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			c, err := Resolve(in, nil)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if !c.Source.Read {
				t.Errorf("Source.Read = false for an existing file")
			}
			got, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(in, ".yaml")+".golden", got)
		})
	}
}

// TestInvalidGolden: invalid config in → every problem, one per line, out.
// Every problem must point at the file and a line.
func TestInvalidGolden(t *testing.T) {
	for _, in := range inputs(t, "invalid") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			c, err := Resolve(in, nil)
			if err == nil {
				t.Fatalf("Resolve succeeded, want errors; config: %+v", c)
			}
			if c != nil {
				t.Errorf("Resolve returned a config with its error")
			}
			var lines []string
			for _, p := range Problems(err) {
				lines = append(lines, p.Error())
				var e *Error
				if !errors.As(p, &e) {
					t.Errorf("problem %q is a %T, want *Error", p, p)
					continue
				}
				if e.File != in || e.Line <= 0 {
					t.Errorf("problem %q has File %q Line %d, want %q and a line", p, e.File, e.Line, in)
				}
			}
			golden(t, strings.TrimSuffix(in, ".yaml")+".errors", []byte(strings.Join(lines, "\n")+"\n"))
		})
	}
}
