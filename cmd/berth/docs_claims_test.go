package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
)

// These tests keep what README.md and docs/*.md claim about the repository
// true where that can be checked mechanically: the tests, make targets,
// files, commands, flags and variables they name exist, and the Makefile's
// list of tests run on current Docker matches what docs/cri-coverage.md says
// runs there. Each failure names the document, the line and what is
// missing. Claims in prose (what a feature does) are for review.

// repoRoot is the repository, seen from this package's directory.
const repoRoot = "../.."

// TestMakefileCurrentEngineTestsExist: every name in E2E_CURRENT_TESTS is a
// test of the e2e suite (a misspelt name would silently select nothing).
func TestMakefileCurrentEngineTestsExist(t *testing.T) {
	current := makefileCurrentTests(t)
	e2e := testFuncs(t, "test/e2e")
	seen := map[string]bool{}
	for _, n := range current {
		if seen[n.name] {
			t.Errorf("Makefile:%d: E2E_CURRENT_TESTS names %s twice", n.line, n.name)
		}
		seen[n.name] = true
		if !e2e["Test"+n.name] {
			t.Errorf("Makefile:%d: E2E_CURRENT_TESTS names %s, but test/e2e has no func Test%s", n.line, n.name, n.name)
		}
	}
}

// TestMakeFuzzRunsEveryFuzzTarget: README says `make fuzz` runs every fuzz
// target; the Makefile names them one by one as <package>:<target>.
func TestMakeFuzzRunsEveryFuzzTarget(t *testing.T) {
	mk := strings.Join(readDoc(t, "Makefile").lines, "\n")
	decl := regexp.MustCompile(`(?m)^func (Fuzz[A-Za-z0-9_]*)\(`)
	walkRepo(t, "internal", func(path string, data []byte) {
		if !strings.HasSuffix(path, "_test.go") {
			return
		}
		pkg := strings.TrimPrefix(filepath.ToSlash(filepath.Dir(path)), "internal/")
		for _, m := range decl.FindAllSubmatch(data, -1) {
			if name := pkg + ":" + string(m[1]); !strings.Contains(mk, name) {
				t.Errorf("%s has %s, but the Makefile's fuzz target does not run it (add %s to its list)", path, m[1], name)
			}
		}
	})
}

// TestCRICoverageMatchesCurrentEngineTests: docs/cri-coverage.md marks the
// e2e tests that run on Docker 20.10 only with *(20.10)*; every other e2e
// test it names runs on current Docker too, so it must be in
// E2E_CURRENT_TESTS, and a marked one must not be.
func TestCRICoverageMatchesCurrentEngineTests(t *testing.T) {
	current := map[string]bool{}
	for _, n := range makefileCurrentTests(t) {
		current["Test"+n.name] = true
	}
	e2e := testFuncs(t, "test/e2e")
	cite := regexp.MustCompile("`(Test[A-Za-z0-9_]+)`( \\*\\(20\\.10\\)\\*)?")
	doc := readDoc(t, "docs/cri-coverage.md")
	for i, line := range doc.lines {
		cells := tableCells(line)
		if len(cells) < 2 {
			continue
		}
		for _, m := range cite.FindAllStringSubmatch(cells[len(cells)-1], -1) {
			name, only2010 := m[1], m[2] != ""
			if !e2e[name] {
				continue // a unit test, or a missing one (TestDocsCiteTestsThatExist)
			}
			switch {
			case only2010 && current[name]:
				t.Errorf("docs/cri-coverage.md:%d: %s is marked *(20.10)* (Docker 20.10 only), but the Makefile's E2E_CURRENT_TESTS runs it on current Docker too", i+1, name)
			case !only2010 && !current[name]:
				t.Errorf("docs/cri-coverage.md:%d: %s is not marked *(20.10)*, so the page says it runs on current Docker too, but it is not in the Makefile's E2E_CURRENT_TESTS", i+1, name)
			}
		}
	}
}

// TestDocsCiteTestsThatExist: every TestX, BenchmarkX and FuzzX the docs
// name is a function in some _test.go file of the repository.
func TestDocsCiteTestsThatExist(t *testing.T) {
	all := testFuncs(t, ".")
	name := regexp.MustCompile(`\b(?:Test|Benchmark|Fuzz)[A-Z0-9][A-Za-z0-9_]*`)
	for _, doc := range readDocs(t) {
		for i, line := range doc.lines {
			for _, n := range name.FindAllString(line, -1) {
				if !all[n] {
					t.Errorf("%s:%d: names %s, but no _test.go file in the repository has func %s", doc.path, i+1, n, n)
				}
			}
		}
	}
}

// TestDocsCiteMakeTargetsThatExist: every `make <target>` in the docs'
// code is a target of the Makefile, and every VAR=value given to make is
// a variable something in the repository reads.
func TestDocsCiteMakeTargetsThatExist(t *testing.T) {
	targets := makefileTargets(t)
	known := knownVariables(t)
	for _, doc := range readDocs(t) {
		for _, c := range doc.code() {
			for _, call := range commandCalls(c.text, "make") {
				for _, arg := range call {
					switch {
					case strings.HasPrefix(arg, "-"):
					case strings.Contains(arg, "="):
						if v, _, _ := strings.Cut(arg, "="); !known[v] {
							t.Errorf("%s:%d: `make … %s`: nothing in the repository but its docs names %s", doc.path, c.line, arg, v)
						}
					case !targets[arg]:
						t.Errorf("%s:%d: `make %s`: the Makefile has no target %s", doc.path, c.line, arg, arg)
					}
				}
			}
		}
	}
}

// TestDocsTestPatternsSelectTests: a `go test -run/-bench/-fuzz PATTERN
// ./pkg/` in the docs, and `make e2e E2E_RUN=…`, `make e2e-current
// E2E_CURRENT_RUN=…`, `make torture TORTURE_RUN=…`, select at least one
// function for every alternative of the pattern: a renamed test would
// otherwise leave a command that quietly runs nothing.
func TestDocsTestPatternsSelectTests(t *testing.T) {
	funcs := map[string][]string{} // package directory → its Test, Benchmark and Fuzz functions
	of := func(dir string) []string {
		if _, ok := funcs[dir]; !ok {
			for f := range testFuncs(t, dir) {
				funcs[dir] = append(funcs[dir], f)
			}
		}
		return funcs[dir]
	}
	check := func(doc docFile, line int, what, dir, prefix, pattern string) {
		if pattern == "" || pattern == "^$" || strings.ContainsAny(pattern, "<>") {
			return
		}
		alts := []string{pattern}
		if !strings.ContainsAny(pattern, "()") {
			alts = strings.Split(pattern, "|")
		}
		for _, alt := range alts {
			re, err := regexp.Compile(strings.SplitN(alt, "/", 2)[0])
			if err != nil {
				t.Errorf("%s:%d: `%s`: %q is not a regular expression: %v", doc.path, line, what, alt, err)
				continue
			}
			if !slices.ContainsFunc(of(dir), func(f string) bool { return strings.HasPrefix(f, prefix) && re.MatchString(f) }) {
				t.Errorf("%s:%d: `%s`: %q selects no %s function in %s", doc.path, line, what, alt, prefix, dir)
			}
		}
	}
	makeRuns := map[string]string{"E2E_RUN": "test/e2e", "E2E_CURRENT_RUN": "test/e2e", "TORTURE_RUN": "test/torture"}
	for _, doc := range readDocs(t) {
		for _, c := range doc.code() {
			for _, call := range commandCalls(c.text, "go") {
				if len(call) == 0 || call[0] != "test" {
					continue
				}
				var dirs []string
				flags := map[string]string{}
				for i := 1; i < len(call); i++ {
					a := call[i]
					switch {
					case a == "-args":
						i = len(call)
					case strings.HasPrefix(a, "./"):
						dirs = append(dirs, strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(a, "./"), "/..."), "/"))
					case strings.HasPrefix(a, "-") && i+1 < len(call) && !strings.Contains(a, "="):
						flags[strings.TrimLeft(a, "-")] = call[i+1]
						i++
					case strings.HasPrefix(a, "-"):
						k, v, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
						flags[k] = v
					}
				}
				what := "go test " + strings.Join(call[1:], " ")
				for _, dir := range dirs {
					if flags["bench"] == "" && flags["fuzz"] == "" {
						check(doc, c.line, what, dir, "Test", flags["run"])
					}
					check(doc, c.line, what, dir, "Benchmark", flags["bench"])
					check(doc, c.line, what, dir, "Fuzz", flags["fuzz"])
				}
			}
			for _, call := range commandCalls(c.text, "make") {
				for _, arg := range call {
					k, v, ok := strings.Cut(arg, "=")
					if dir := makeRuns[k]; ok && dir != "" {
						check(doc, c.line, "make "+strings.Join(call, " "), dir, "Test", v)
					}
				}
			}
		}
	}
}

// TestDocsCiteVariablesThatAreRead: the build and test variables the docs
// name (BERTH_*, E2E_*, TORTURE_*, …) are named somewhere outside the
// docs: the Makefile, a script, the Go code, a unit file.
func TestDocsCiteVariablesThatAreRead(t *testing.T) {
	known := knownVariables(t)
	name := regexp.MustCompile(`\b(?:(?:BERTH|E2E|TORTURE|KUBELET|NFPM|DEB)_[A-Z0-9_]+|FUZZTIME|RUN_ARGS)\b`)
	for _, doc := range readDocs(t) {
		for _, c := range doc.code() {
			for _, v := range name.FindAllString(c.text, -1) {
				if !known[v] {
					t.Errorf("%s:%d: names %s, but nothing in the repository but its docs (Makefile, scripts, Go code, unit files) does", doc.path, c.line, v)
				}
			}
		}
	}
}

// TestDocsCitePathsThatExist: every repository path in the docs' code
// (`internal/cri/recover.go`, `hack/setup.sh`, `test/e2e/`) and every
// relative link (with its #anchor) leads somewhere.
func TestDocsCitePathsThatExist(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, doc := range readDocs(t) {
		for _, c := range doc.code() {
			for _, tok := range strings.Fields(c.text) {
				p, ok := repoPath(tok)
				if ok && !pathExists(p) {
					t.Errorf("%s:%d: names %s, which is not in the repository", doc.path, c.line, p)
				}
			}
		}
		for i, line := range doc.lines {
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, anchor, _ := strings.Cut(target, "#")
				path := doc.path
				if file != "" {
					path = filepath.ToSlash(filepath.Join(filepath.Dir(doc.path), file))
					if !pathExists(path) {
						t.Errorf("%s:%d: links to %s, which is not in the repository", doc.path, i+1, path)
						continue
					}
				}
				if anchor != "" && strings.HasSuffix(path, ".md") && !slices.Contains(readDoc(t, path).anchors(), anchor) {
					t.Errorf("%s:%d: links to %s#%s, but %s has no heading with that anchor", doc.path, i+1, path, anchor, path)
				}
			}
		}
	}
}

// TestKubeletDocChecksExist: docs/kubelet.md's table of the kubelet
// suite's checks names exactly the checks the suite (test/kubelet) runs.
func TestKubeletDocChecksExist(t *testing.T) {
	var code strings.Builder
	walkRepo(t, "test/kubelet", func(path string, data []byte) {
		if strings.HasSuffix(path, ".go") {
			code.Write(data)
		}
	})
	doc := readDoc(t, "docs/kubelet.md")
	listed := map[string]bool{}
	inTable := false
	for i, line := range doc.lines {
		cells := tableCells(line)
		switch {
		case len(cells) == 0:
			inTable = false
		case strings.TrimSpace(cells[0]) == "Check":
			inTable = true
		case inTable:
			for _, m := range codeSpan.FindAllStringSubmatch(cells[0], -1) {
				listed[m[1]] = true
				if !strings.Contains(code.String(), `"`+m[1]+`"`) {
					t.Errorf("docs/kubelet.md:%d: lists the check %s, but test/kubelet has no check of that name", i+1, m[1])
				}
			}
		}
	}
	decl := regexp.MustCompile(`\{name: "([a-z0-9-]+)"`)
	for _, m := range decl.FindAllStringSubmatch(code.String(), -1) {
		if !listed[m[1]] {
			t.Errorf("test/kubelet runs the check %s, but docs/kubelet.md's table of checks does not list it", m[1])
		}
	}
	if len(listed) == 0 {
		t.Error("docs/kubelet.md: no table of checks (a header row | Check | How |) found")
	}
}

// TestArchitectureListsEveryPackage: docs/architecture.md is the map of
// the code, so its package table has every package under internal/.
func TestArchitectureListsEveryPackage(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(repoRoot, "internal"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(readDoc(t, "docs/architecture.md").lines, "\n")
	for _, e := range entries {
		if e.IsDir() && !strings.Contains(doc, "`internal/"+e.Name()+"`") {
			t.Errorf("docs/architecture.md: the package table does not list internal/%s", e.Name())
		}
	}
}

// TestReadmeListsEveryDoc: README.md's Documentation list is how a reader
// finds the pages, so every docs/*.md is linked from it.
func TestReadmeListsEveryDoc(t *testing.T) {
	readme := strings.Join(readDoc(t, "README.md").lines, "\n")
	for _, doc := range readDocs(t) {
		if doc.path == "README.md" {
			continue
		}
		if !strings.Contains(readme, "]("+doc.path+")") && !strings.Contains(readme, "]("+doc.path+"#") {
			t.Errorf("README.md does not link to %s: add it to the Documentation list", doc.path)
		}
	}
}

// TestDocsCiteBerthCommandsAndFlagsThatExist: every `berth <command>
// --flag` in the docs' code is a command of the binary with that flag.
func TestDocsCiteBerthCommandsAndFlagsThatExist(t *testing.T) {
	for _, doc := range readDocs(t) {
		for _, c := range doc.code() {
			for _, call := range commandCalls(c.text, "berth") {
				root := newRootCommand()
				cmd, rest, err := root.Find(call)
				if err != nil || (cmd == root && len(rest) > 0 && !strings.HasPrefix(rest[0], "-")) {
					t.Errorf("%s:%d: `berth %s`: berth has no such command", doc.path, c.line, strings.Join(call, " "))
					continue
				}
				cmd.InitDefaultHelpFlag()
				for _, arg := range call {
					if !strings.HasPrefix(arg, "--") || arg == "--" {
						continue
					}
					flag, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
					if cmd.Flags().Lookup(flag) == nil && cmd.InheritedFlags().Lookup(flag) == nil {
						t.Errorf("%s:%d: `%s --%s`: %s has no flag --%s", doc.path, c.line, cmd.CommandPath(), flag, cmd.CommandPath(), flag)
					}
				}
			}
		}
	}
}

// TestConfigurationDocumentsOnlyRealFlags is TestEveryFlagIsDocumented
// the other way: every row of docs/configuration.md's flag table is a
// flag of berth serve.
func TestConfigurationDocumentsOnlyRealFlags(t *testing.T) {
	serve := newServeCommand()
	row := regexp.MustCompile("^\\| `--([a-z0-9-]+)`")
	doc := readDoc(t, "docs/configuration.md")
	for i, line := range doc.lines {
		if m := row.FindStringSubmatch(line); m != nil && serve.Flags().Lookup(m[1]) == nil {
			t.Errorf("docs/configuration.md:%d: the flag table has --%s, which berth serve does not have", i+1, m[1])
		}
	}
}

// TestDocsConfigFileKeysAreFlags: the configuration file's keys are the
// flags' names, so every key the docs write in TOML (a ```toml block, or
// `key = value` in the text) is a flag of berth serve.
func TestDocsConfigFileKeysAreFlags(t *testing.T) {
	serve := newServeCommand()
	key := regexp.MustCompile(`^\s*([a-z][a-z0-9-]*)\s*=`)
	for _, doc := range readDocs(t) {
		toml := false
		for i, line := range doc.lines {
			if fence, ok := strings.CutPrefix(strings.TrimSpace(line), "```"); ok {
				toml = fence == "toml"
				continue
			}
			var keys []string
			if toml {
				keys = append(keys, line)
			} else {
				for _, m := range codeSpan.FindAllStringSubmatch(line, -1) {
					if strings.Contains(m[1], " = ") {
						keys = append(keys, m[1])
					}
				}
			}
			for _, k := range keys {
				if m := key.FindStringSubmatch(k); m != nil && serve.Flags().Lookup(m[1]) == nil {
					t.Errorf("%s:%d: the configuration key %s is no flag of berth serve, so the configuration file refuses it", doc.path, i+1, m[1])
				}
			}
		}
	}
}

// TestDocumentedFlagDefaults: where a doc's flag table (docs/configuration.md,
// docs/streaming.md) gives a flag's default as a value, or as "(none)" or
// "(off)", it is berth serve's.
func TestDocumentedFlagDefaults(t *testing.T) {
	serve := newServeCommand()
	flagCell := regexp.MustCompile("`--([a-z0-9-]+)`")
	for _, doc := range readDocs(t) {
		for i, line := range doc.lines {
			cells := tableCells(line)
			if len(cells) < 3 || !strings.HasPrefix(strings.TrimSpace(cells[0]), "`--") {
				continue
			}
			def := strings.TrimSpace(cells[1])
			var want string
			switch {
			case def == "(none)" || def == "(off)":
			case strings.HasPrefix(def, "`"):
				want, _, _ = strings.Cut(strings.TrimPrefix(def, "`"), "`")
			default:
				continue // described, not given: "(root's group)"
			}
			for _, m := range flagCell.FindAllStringSubmatch(cells[0], -1) {
				f := serve.Flags().Lookup(m[1])
				if f == nil {
					continue // TestConfigurationDocumentsOnlyRealFlags
				}
				if !sameDefault(f.Value.Type(), f.DefValue, want) {
					t.Errorf("%s:%d: gives --%s's default as %q; berth serve's is %q", doc.path, i+1, m[1], def, f.DefValue)
				}
			}
		}
	}
}

// sameDefault compares a documented default with pflag's, as the flag's
// type reads them ("4h" is "4h0m0s", a list is "[a,b]").
func sameDefault(typ, got, doc string) bool {
	switch typ {
	case "duration":
		a, errA := time.ParseDuration(got)
		b, errB := time.ParseDuration(doc)
		return errA == nil && errB == nil && a == b
	case "stringSlice", "stringArray":
		got = strings.TrimSuffix(strings.TrimPrefix(got, "["), "]")
	}
	return got == doc
}

// The documents and what is in them.

type docFile struct {
	path  string // relative to the repository, with slashes
	lines []string
}

// codeText is code in a document: an inline code span, or a line of a
// fenced block.
type codeText struct {
	line int
	text string
}

func readDocs(t *testing.T) []docFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs := []docFile{readDoc(t, "README.md")}
	for _, p := range paths {
		rel, _ := filepath.Rel(repoRoot, p)
		docs = append(docs, readDoc(t, filepath.ToSlash(rel)))
	}
	return docs
}

func readDoc(t *testing.T, path string) docFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	return docFile{path: path, lines: strings.Split(string(data), "\n")}
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

// code is the document's code: every line of a fenced block, and the
// inline spans of the text around them (a span may run over a line break
// within its paragraph; it is reported at the line it starts on).
func (d docFile) code() []codeText {
	var out []codeText
	fenced := false
	para, start := "", 0
	flush := func() {
		for _, loc := range codeSpan.FindAllStringSubmatchIndex(para, -1) {
			line := start + strings.Count(para[:loc[0]], "\n")
			out = append(out, codeText{line, strings.ReplaceAll(para[loc[2]:loc[3]], "\n", " ")})
		}
		para = ""
	}
	for i, line := range d.lines {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			flush()
			fenced = !fenced
			continue
		}
		switch {
		case fenced:
			out = append(out, codeText{i + 1, line})
		case strings.TrimSpace(line) == "":
			flush()
		default:
			if para == "" {
				start = i + 1
			} else {
				para += "\n"
			}
			para += line
		}
	}
	flush()
	return out
}

// anchors are the #fragments GitHub gives the document's headings.
func (d docFile) anchors() []string {
	var out []string
	count := map[string]int{}
	fenced := false
	for _, line := range d.lines {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		a := slug(strings.TrimLeft(line, "#"))
		if n := count[a]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", a, n))
		} else {
			out = append(out, a)
		}
		count[a]++
	}
	return out
}

// slug is GitHub's anchor for a heading: lower case, spaces to hyphens,
// punctuation other than hyphens and underscores dropped.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// tableCells splits a Markdown table row into its cells; nil if line is
// not a row.
func tableCells(line string) []string {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") {
		return nil
	}
	return strings.Split(strings.Trim(line, "|"), "|")
}

// commandCalls finds the calls of command in a piece of code (a shell
// line or an inline span) and returns each one's arguments, up to the end
// of the command (a pipe, redirection, comment or separator).
func commandCalls(code, command string) [][]string {
	var out [][]string
	code = shellComment.ReplaceAllString(code, "")
	fields := shellWords(code)
	for i, f := range fields {
		if f != command && !strings.HasSuffix(f, "/"+command) && !strings.HasSuffix(f, "="+command) {
			continue
		}
		if i > 0 && !startsCommand(fields[i-1]) {
			continue // an argument, as in "kill berth" or "the berth binary"
		}
		var args []string
		for _, a := range fields[i+1:] {
			if strings.ContainsAny(a[:1], "|;&>#<)") || a == "\\" {
				break
			}
			args = append(args, unquote.Replace(a))
		}
		out = append(out, args)
	}
	return out
}

// unquote drops a shell word's quotes.
var unquote = strings.NewReplacer(`"`, "", "'", "")

// shellWords splits code into words as a shell would for quoting: a space
// inside '…' or "…" does not end a word (NODE_E2E_FOCUS='Container
// Runtime blackbox test' is one argument). The quotes stay in the word.
func shellWords(code string) []string {
	var words []string
	var w strings.Builder
	var quote rune
	for _, r := range code {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote = r
			w.WriteRune(r)
		case unicode.IsSpace(r):
			if w.Len() > 0 {
				words = append(words, w.String())
				w.Reset()
			}
		default:
			w.WriteRune(r)
		}
	}
	if w.Len() > 0 {
		words = append(words, w.String())
	}
	return words
}

var shellComment = regexp.MustCompile(`(^|\s)#.*$`)

// startsCommand reports whether a word before a command name leaves it in
// command position: a shell operator, or an environment assignment.
func startsCommand(prev string) bool {
	switch prev {
	case "|", "||", "&&", ";", "$", "sudo", "exec", "then", "do", "time", "nice":
		return true
	}
	return strings.Contains(prev, "=") && !strings.HasPrefix(prev, "-") || strings.HasSuffix(prev, ";") || strings.HasPrefix(prev, "$(")
}

// The repository.

// repoRoots are where repository paths in the docs start.
var repoRoots = []string{"cmd/", "internal/", "test/", "bench/", "hack/", "docs/", "contrib/", "packaging/", ".ci/"}

// repoPath reads a word of code as a path in the repository: it starts at
// one of repoRoots (after an optional ./), and loses what follows the
// path (a Go package pattern's /..., a line number, an anchor, a Go
// identifier after the package: internal/app.Run).
func repoPath(tok string) (string, bool) {
	tok = strings.TrimPrefix(strings.Trim(tok, `"'(),.:;`), "./")
	if !slices.ContainsFunc(repoRoots, func(r string) bool { return strings.HasPrefix(tok, r) }) {
		return "", false
	}
	if strings.ContainsAny(tok, "<>*${}…") {
		return "", false // a pattern, not a path
	}
	tok = strings.TrimSuffix(tok, "/...")
	tok, _, _ = strings.Cut(tok, "#")
	if i := strings.LastIndex(tok, ":"); i > 0 {
		tok = tok[:i]
	}
	tok = strings.TrimSuffix(tok, "/")
	if !pathExists(tok) {
		// internal/app.Run: a package and one of its names.
		dir, base := filepath.Split(tok)
		if i := strings.Index(base, "."); i > 0 && unicode.IsUpper(rune(base[i+1])) {
			tok = dir + base[:i]
		}
	}
	return tok, true
}

func pathExists(p string) bool {
	_, err := os.Stat(filepath.Join(repoRoot, p))
	return err == nil
}

// testFuncs are the Test, Benchmark and Fuzz functions of the _test.go
// files under dir (relative to the repository).
func testFuncs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)[A-Za-z0-9_]*)\(`)
	out := map[string]bool{}
	walkRepo(t, dir, func(path string, data []byte) {
		if strings.HasSuffix(path, "_test.go") {
			for _, m := range decl.FindAllSubmatch(data, -1) {
				out[string(m[1])] = true
			}
		}
	})
	return out
}

// walkRepo calls fn with every file under dir but Git's, build output and
// test data.
func walkRepo(t *testing.T, dir string, fn func(path string, data []byte)) {
	t.Helper()
	root := filepath.Join(repoRoot, dir)
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			switch e.Name() {
			case ".git", "bin", "dist", "testdata", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		fn(filepath.ToSlash(rel), data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type makeName struct {
	name string
	line int
}

// makefileCurrentTests are the names in the Makefile's E2E_CURRENT_TESTS.
func makefileCurrentTests(t *testing.T) []makeName {
	t.Helper()
	var out []makeName
	in := false
	for i, line := range readDoc(t, "Makefile").lines {
		if strings.HasPrefix(line, "E2E_CURRENT_TESTS") {
			in = true
			_, line, _ = strings.Cut(line, "=")
		}
		if !in {
			continue
		}
		for _, f := range strings.Fields(strings.TrimSuffix(line, "\\")) {
			out = append(out, makeName{f, i + 1})
		}
		if !strings.HasSuffix(line, "\\") {
			break
		}
	}
	if len(out) == 0 {
		t.Fatal("Makefile: no E2E_CURRENT_TESTS")
	}
	return out
}

// makefileTargets are the Makefile's rule names.
func makefileTargets(t *testing.T) map[string]bool {
	t.Helper()
	rule := regexp.MustCompile(`^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:([^=]|$)`)
	out := map[string]bool{}
	for _, line := range readDoc(t, "Makefile").lines {
		if m := rule.FindStringSubmatch(line); m != nil {
			for _, name := range strings.Fields(m[1]) {
				out[name] = true
			}
		}
	}
	return out
}

// knownVariables are the upper-case names the repository's files other
// than the docs mention (the Makefile, scripts, Go code, unit files and
// packaging): what a variable the docs name must be among to be read by
// something.
func knownVariables(t *testing.T) map[string]bool {
	t.Helper()
	word := regexp.MustCompile(`\b[A-Z][A-Z0-9_]+\b`)
	out := map[string]bool{}
	add := func(data []byte) {
		for _, w := range word.FindAll(data, -1) {
			out[string(w)] = true
		}
	}
	walkRepo(t, ".", func(path string, data []byte) {
		if !strings.HasSuffix(path, ".md") {
			add(data)
		}
	})
	return out
}
