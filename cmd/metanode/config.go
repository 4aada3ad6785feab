package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// applyConfigFile sets flags from a YAML file whose keys are the flags'
// names (`listen: 127.0.0.1:7001`, `initial-cluster: n1=...`). A flag given
// on the command line wins over the file. A list is joined with commas
// (`join: [a:1, b:2]`). Every bad key is reported, by name, at once.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == "config" || key == "help" || key == "version" {
			errs = append(errs, fmt.Errorf("--config %s: unknown key %q (the keys are metanode's flag names)", path, key))
			continue
		}
		if f.Changed {
			continue // the command line overrides the file
		}
		val, err := scalar(doc[key])
		if err != nil {
			errs = append(errs, fmt.Errorf("--config %s: key %q: %w", path, key, err))
			continue
		}
		if err := fs.Set(key, val); err != nil {
			errs = append(errs, fmt.Errorf("--config %s: key %q: %w", path, key, err))
		}
	}
	return errors.Join(errs...)
}

// scalar turns a YAML value into a flag's text.
func scalar(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case map[string]any:
		return "", errors.New("want a value or a list, got a mapping")
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, err := scalar(e)
			if err != nil || strings.Contains(s, ",") {
				return "", fmt.Errorf("list item %d: want a plain value", i)
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return fmt.Sprint(v), nil
}
