package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/balancer"
)

// stickyOptions are --sticky, --sticky-secret and --sticky-secret-file.
type stickyOptions struct {
	mode       string
	secret     string
	secretFile string
}

func (o *stickyOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.mode, "sticky", balancer.StickyAuto.String(),
		"session affinity: auto (Socket.IO sid for Engine.IO requests, none for the rest)|sid|cookie|ip|none")
	fs.StringVar(&o.secret, "sticky-secret", "",
		"key for the node tokens of --sticky (at least 16 bytes; same on every instance); default: derived from each pool's backend list")
	fs.StringVar(&o.secretFile, "sticky-secret-file", "",
		"read the --sticky-secret from `FILE` (surrounding whitespace ignored)")
}

// config returns the balancer.StickyConfig; errors are *usageError.
func (o *stickyOptions) config() (balancer.StickyConfig, error) {
	var cfg balancer.StickyConfig
	m, err := balancer.ParseStickyMode(o.mode)
	if err != nil {
		return cfg, &usageError{fmt.Sprintf("invalid argument %q for \"--sticky\" flag: want auto, sid, cookie, ip or none", o.mode)}
	}
	cfg.Mode = m
	secret, flag := o.secret, "--sticky-secret"
	if o.secretFile != "" {
		if o.secret != "" {
			return cfg, &usageError{`"--sticky-secret-file" flag: give --sticky-secret or --sticky-secret-file, not both`}
		}
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return cfg, &usageError{fmt.Sprintf("invalid argument %q for \"--sticky-secret-file\" flag: %v", o.secretFile, err)}
		}
		secret, flag = strings.TrimSpace(string(b)), "--sticky-secret-file"
		if secret == "" {
			return cfg, &usageError{fmt.Sprintf("invalid argument %q for \"--sticky-secret-file\" flag: the file is empty", o.secretFile)}
		}
	}
	if secret != "" && len(secret) < balancer.MinStickySecret {
		return cfg, &usageError{fmt.Sprintf("invalid argument for \"%s\" flag: %d bytes, want at least %d", flag, len(secret), balancer.MinStickySecret)}
	}
	cfg.Secret = []byte(secret)
	return cfg, nil
}

// derivedKeyNote is the line logged at start when the node tokens are keyed
// by the key derived from each pool's backend list (no --sticky-secret) and
// the mode issues tokens (auto, sid, cookie): anyone who knows or guesses
// the -b list can compute a node's token and send a request to the node of
// their choice. "" when a secret is set or the mode issues no tokens.
func derivedKeyNote(cfg balancer.StickyConfig) string {
	if len(cfg.Secret) > 0 {
		return ""
	}
	switch cfg.Mode {
	case balancer.StickyAuto, balancer.StickySID, balancer.StickyCookie:
	default:
		return ""
	}
	return fmt.Sprintf("--sticky %s: node tokens are keyed by a key derived from each pool's backend list, so anyone who knows the -b list can compute a node's token and choose the node; set --sticky-secret (the same on every instance) to prevent it", cfg.Mode)
}
