// Command c2sp-note checks a qvault checkpoint with an independent
// implementation of C2SP signed notes: Go's golang.org/x/mod/sumdb/note.
//
// Usage: c2sp-note VERIFIER-KEY NOTE-FILE
//
// It verifies the note with the verifier key (note.NewVerifier + note.Open),
// then parses the text as a C2SP tlog checkpoint (origin, decimal tree size,
// base64 32-byte root hash, optional extension lines) and checks that the
// origin is the verifier key's name. On success it prints the verified text to
// stdout, a one-line summary to stderr, and exits 0; on any failure it prints
// the error to stderr and exits 1 (2 for usage errors).
//
// Built offline from Debian's packages (golang-go, golang-golang-x-mod-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off go build -o c2sp-note .
package main

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type checkpoint struct {
	origin string
	size   uint64
	root   []byte
}

// parseCheckpoint parses a checkpoint body per https://c2sp.org/tlog-checkpoint.
func parseCheckpoint(text string) (*checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("checkpoint text does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return nil, fmt.Errorf("checkpoint has %d lines, want at least 3", len(lines))
	}
	origin, sizeStr, rootStr := lines[0], lines[1], lines[2]
	if origin == "" {
		return nil, errors.New("checkpoint origin is empty")
	}
	if sizeStr == "" || (len(sizeStr) > 1 && sizeStr[0] == '0') {
		return nil, fmt.Errorf("checkpoint size %q is not a canonical decimal number", sizeStr)
	}
	for _, c := range sizeStr {
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("checkpoint size %q is not a decimal number", sizeStr)
		}
	}
	size, err := strconv.ParseUint(sizeStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("checkpoint size: %v", err)
	}
	root, err := base64.StdEncoding.DecodeString(rootStr)
	if err != nil {
		return nil, fmt.Errorf("checkpoint root hash: %v", err)
	}
	if len(root) != 32 {
		return nil, fmt.Errorf("checkpoint root hash is %d bytes, want 32", len(root))
	}
	for i, ext := range lines[3:] {
		if ext == "" {
			return nil, fmt.Errorf("checkpoint extension line %d is empty", i+1)
		}
	}
	return &checkpoint{origin: origin, size: size, root: root}, nil
}

func run(vkey, path string) error {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return fmt.Errorf("verifier key: %v", err)
	}
	msg, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("note: %v", err)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return err
	}
	if cp.origin != v.Name() {
		return fmt.Errorf("checkpoint origin %q is not the verifier name %q", cp.origin, v.Name())
	}
	fmt.Print(n.Text)
	fmt.Fprintf(os.Stderr, "ok: origin=%s size=%d root=%s sigs=%d unverified=%d\n",
		cp.origin, cp.size, hex.EncodeToString(cp.root), len(n.Sigs), len(n.UnverifiedSigs))
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: c2sp-note VERIFIER-KEY NOTE-FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "c2sp-note:", err)
		os.Exit(1)
	}
}
