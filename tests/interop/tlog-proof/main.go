// Command tlog-proof checks a qvault C2SP tlog-proof (c2sp.org/tlog-proof@v1)
// with independent code: Go's golang.org/x/mod/sumdb/note for the checkpoint's
// signature and golang.org/x/mod/sumdb/tlog for the inclusion proof.
//
// Usage: tlog-proof VERIFIER-KEY PROOF-FILE
//
// It parses the proof (header, extra, index, base64 proof hashes, empty line,
// checkpoint), verifies the checkpoint note with the verifier key (other
// signatures, such as witness cosignatures, are left unverified), reads the
// entry's bytes from the extra data (base64 of JSON {"v":1,"entry":"..."}),
// and checks the entry's inclusion at the index in the checkpoint's tree. On
// success it prints "<index> <tree size> <unverified signatures>" and exits 0;
// on failure it prints the error and exits 1 (2 for usage).
//
// Built offline from Debian's packages (golang-go, golang-golang-x-mod-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off go build -o tlog-proof .
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func run(vkey, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(raw)
	const header = "c2sp.org/tlog-proof@v1\n"
	if !strings.HasPrefix(text, header) {
		return errors.New("not a tlog-proof")
	}
	i := strings.Index(text, "\n\n")
	if i < 0 {
		return errors.New("no empty line before the checkpoint")
	}
	head, cp := strings.Split(text[len(header):i], "\n"), text[i+2:]
	if len(head) < 2 || !strings.HasPrefix(head[0], "extra ") || !strings.HasPrefix(head[1], "index ") {
		return errors.New("want extra and index lines")
	}
	extraRaw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(head[0], "extra "))
	if err != nil {
		return fmt.Errorf("extra: %v", err)
	}
	var extra struct {
		V     int    `json:"v"`
		Entry string `json:"entry"`
	}
	if err := json.Unmarshal(extraRaw, &extra); err != nil {
		return fmt.Errorf("extra: %v", err)
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(head[1], "index "), 10, 64)
	if err != nil {
		return fmt.Errorf("index: %v", err)
	}
	var proof tlog.RecordProof
	for _, l := range head[2:] {
		b, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(b) != tlog.HashSize {
			return fmt.Errorf("proof line %q is not a base64 hash", l)
		}
		var h tlog.Hash
		copy(h[:], b)
		proof = append(proof, h)
	}
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return fmt.Errorf("verifier key: %v", err)
	}
	n, err := note.Open([]byte(cp), note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 3 || lines[0] != v.Name() {
		return errors.New("checkpoint origin is not the verifier's name")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return fmt.Errorf("checkpoint size: %v", err)
	}
	rootb, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootb) != tlog.HashSize {
		return errors.New("checkpoint root is not a base64 hash")
	}
	var root tlog.Hash
	copy(root[:], rootb)
	if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash([]byte(extra.Entry))); err != nil {
		return fmt.Errorf("inclusion: %v", err)
	}
	fmt.Printf("%d %d %d\n", index, size, len(n.UnverifiedSigs))
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: tlog-proof VERIFIER-KEY PROOF-FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "tlog-proof:", err)
		os.Exit(1)
	}
}
