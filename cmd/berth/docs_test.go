package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestEveryFlagIsDocumented keeps docs/configuration.md in step with the code.
func TestEveryFlagIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	serve := newServeCommand()
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(string(doc), "`--"+f.Name+"`") {
			t.Errorf("flag --%s is not in docs/configuration.md", f.Name)
		}
	})
}
