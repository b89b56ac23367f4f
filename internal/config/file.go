package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// DefaultFile is the configuration file `berth serve` reads when it exists
// and --config does not name another.
const DefaultFile = "/etc/berth/config.toml"

// ConfigFlag is the flag naming the configuration file. It is not itself a
// key of the file.
const ConfigFlag = "config"

// BindConfigFlag registers --config on fs, writing the path into path.
func BindConfigFlag(fs *pflag.FlagSet, path *string) {
	fs.StringVar(path, ConfigFlag, DefaultFile,
		"Configuration file (TOML, or YAML if it ends in .yaml/.yml) whose keys are these flags' names; flags given on the command line override it. A missing default file is ignored.")
}

// ApplyFile reads the configuration file named by fs's --config flag and
// sets every flag of fs that the file names and the command line did not:
// flags override the file. The file's keys are the flags' names, so every
// flag (and every flag added later) can be set from it. A missing file is an
// error only when --config was given explicitly.
func ApplyFile(flags *pflag.FlagSet) error {
	flag := flags.Lookup(ConfigFlag)
	if flag == nil {
		return fmt.Errorf("no --%s flag", ConfigFlag)
	}
	path := flag.Value.String()
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !flag.Changed {
			return nil
		}
		return fmt.Errorf("--config: %w", err)
	}
	values, err := ParseFile(path, data)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	return applyValues(flags, path, values)
}

// ParseFile decodes a configuration file into key → value; the format is
// YAML for .yaml/.yml files and TOML otherwise.
func ParseFile(path string, data []byte) (map[string]any, error) {
	values := map[string]any{}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		if err := yaml.Unmarshal(data, &values); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		if err := toml.Unmarshal(data, &values); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return values, nil
}

func applyValues(fs *pflag.FlagSet, path string, values map[string]any) error {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == ConfigFlag {
			errs = append(errs, fmt.Errorf("%s: unknown key %q (keys are the names of berth serve's flags)", path, key))
			continue
		}
		if f.Changed {
			continue // the command line wins
		}
		// NOTE: fs.Set marks the flag changed, so applying a second file
		// would not override this one.
		s, err := flagString(values[key])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %v", path, key, err))
			continue
		}
		if err := fs.Set(key, s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %v", path, key, err))
			continue
		}
	}
	return errors.Join(errs...)
}

// flagString renders a file value the way the flag parses it: lists as
// comma-separated values, everything else as text.
func flagString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case int:
		return strconv.Itoa(v), nil
	case float64:
		if v != float64(int64(v)) {
			return "", fmt.Errorf("%v is not a whole number", v)
		}
		return strconv.FormatInt(int64(v), 10), nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, err := flagString(e)
			if err != nil {
				return "", err
			}
			if strings.Contains(s, ",") {
				return "", fmt.Errorf("list element %q contains a comma", s)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case nil:
		return "", nil
	default:
		return "", fmt.Errorf("value of type %T is not a string, number, boolean or list", v)
	}
}

// WriteDefaultFile writes a TOML configuration file to w with every flag of
// fs (but --config) commented out at its default, each under its help text:
// uncommenting a line changes that one setting.
func WriteDefaultFile(w io.Writer, fs *pflag.FlagSet) error {
	var b bytes.Buffer
	b.WriteString("# Berth configuration: " + DefaultFile + "\n")
	b.WriteString("#\n")
	b.WriteString("# Each key is the name of a `berth serve` flag and takes the same values;\n")
	b.WriteString("# a flag given on the command line overrides the file. Every setting below\n")
	b.WriteString("# is commented out at its default: uncomment a line to change it.\n")
	b.WriteString("# Lists may be written as TOML arrays or as comma-separated strings.\n")
	// In the order the flags are declared, which groups related settings.
	sorted := fs.SortFlags
	fs.SortFlags = false
	defer func() { fs.SortFlags = sorted }()
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == ConfigFlag || f.Hidden {
			return
		}
		b.WriteString("\n")
		for _, line := range wrap(f.Usage, 76) {
			b.WriteString("# " + line + "\n")
		}
		b.WriteString("# " + f.Name + " = " + tomlValue(f) + "\n")
	})
	_, err := w.Write(b.Bytes())
	return err
}

func tomlValue(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "bool", "int", "int32", "int64", "uint", "uint16", "uint32", "uint64", "float64":
		return f.DefValue
	case "stringSlice", "stringArray":
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			items := sv.GetSlice()
			quoted := make([]string, len(items))
			for i, s := range items {
				quoted[i] = strconv.Quote(s)
			}
			return "[" + strings.Join(quoted, ", ") + "]"
		}
	}
	return strconv.Quote(f.DefValue)
}

func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
