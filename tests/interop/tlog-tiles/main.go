// Command tlog-tiles is an independent implementation of C2SP tlog-tiles for
// qvault's interop tests, on Go's golang.org/x/mod/sumdb/tlog (the tiled-log
// code of the Go checksum database, from which tlog-tiles was specified).
//
// Usage:
//
//	tlog-tiles build EXPORT DIR   write the tiles and entry bundles of the
//	                              entries in a qvault log export into DIR;
//	                              print the tree size and hex root hash
//	tlog-tiles read DIR           read DIR as a monitor does: the checkpoint's
//	                              size and root (signature not checked: the
//	                              signed-note interop test does that), every
//	                              entry bundle, and through tlog.TileHashReader
//	                              (which authenticates each tile against the
//	                              root) every leaf hash, and inclusion proofs
//	                              for every 997th and the last entry;
//	                              print the tree size and hex root hash
//
// sumdb/tlog names tiles tile/<H>/<L>/<N> and has no entry bundles; C2SP drops
// the height (always 8) and stores entries as big-endian u16 length-prefixed
// bundles at tile/entries/<N>. Exit 0 on success, 1 on failure, 2 on usage.
//
// Built offline from Debian's packages (golang-go, golang-golang-x-mod-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off go build -o tlog-tiles .
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

// c2spPath is the C2SP name of a sumdb tile; L == -1 is the entry bundle.
func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), "tile/8/")
	if t.L == -1 {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

func readExport(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() || sc.Text() != "qvault-log v1" {
		return nil, errors.New("not a qvault log export")
	}
	var entries [][]byte
	for sc.Scan() {
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte("entry ")) {
			entries = append(entries, append([]byte(nil), line[len("entry "):]...))
		}
	}
	return entries, sc.Err()
}

type memHashes []tlog.Hash

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// tilesAt is every full tile and the partial tiles of a tree of size n.
func tilesAt(n int64) []tlog.Tile {
	var out []tlog.Tile
	for _, t := range tlog.NewTiles(height, 0, n) {
		if t.W == 1<<height || int64(t.W) == (n>>(height*uint(t.L)))%(1<<height) {
			out = append(out, t)
		}
	}
	return out
}

func build(export, dir string) error {
	entries, err := readExport(export)
	if err != nil {
		return err
	}
	var stored memHashes
	for i, e := range entries {
		h, err := tlog.StoredHashes(int64(i), e, stored)
		if err != nil {
			return err
		}
		stored = append(stored, h...)
	}
	n := int64(len(entries))
	root, err := tlog.TreeHash(n, stored)
	if err != nil {
		return err
	}
	write := func(p string, data []byte) error {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		return os.WriteFile(full, data, 0o644)
	}
	for _, t := range tilesAt(n) {
		data, err := tlog.ReadTileData(t, stored)
		if err != nil {
			return err
		}
		if err := write(c2spPath(t), data); err != nil {
			return err
		}
		if t.L == 0 {
			var b []byte
			for _, e := range entries[t.N<<height : t.N<<height+int64(t.W)] {
				b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
				b = append(b, e...)
			}
			d := t
			d.L = -1
			if err := write(c2spPath(d), b); err != nil {
				return err
			}
		}
	}
	fmt.Printf("%d %x\n", n, root[:])
	return nil
}

type dirTiles string

func (d dirTiles) Height() int { return height }
func (d dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := os.ReadFile(filepath.Join(string(d), c2spPath(t)))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}
func (d dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func read(dir string) error {
	cp, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		return err
	}
	lines := strings.Split(string(cp), "\n")
	if len(lines) < 3 {
		return errors.New("checkpoint too short")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return fmt.Errorf("checkpoint size: %v", err)
	}
	rootb, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootb) != tlog.HashSize {
		return errors.New("checkpoint root is not a base64 hash")
	}
	var tree tlog.Tree
	tree.N = n
	copy(tree.Hash[:], rootb)
	thr := tlog.TileHashReader(tree, dirTiles(dir))
	root, err := tlog.TreeHash(n, thr)
	if err != nil {
		return fmt.Errorf("tree hash from tiles: %v", err)
	}
	if root != tree.Hash {
		return errors.New("the tiles' root is not the checkpoint's")
	}
	// Every leaf hash in one batch: the reader authenticates each tile it
	// reads against the root once.
	idx := make([]int64, n)
	for i := range idx {
		idx[i] = tlog.StoredHashIndex(0, int64(i))
	}
	leaves, err := thr.ReadHashes(idx)
	if err != nil {
		return fmt.Errorf("leaf hashes from tiles: %v", err)
	}
	for _, t := range tilesAt(n) {
		if t.L != 0 {
			continue
		}
		d := t
		d.L = -1
		b, err := os.ReadFile(filepath.Join(dir, c2spPath(d)))
		if err != nil {
			return err
		}
		for i := int64(0); i < int64(t.W); i++ {
			if len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
				return fmt.Errorf("%s: truncated", c2spPath(d))
			}
			l := int(binary.BigEndian.Uint16(b))
			e := b[2 : 2+l]
			b = b[2+l:]
			at := t.N<<height + i
			if tlog.RecordHash(e) != leaves[at] {
				return fmt.Errorf("entry %d does not hash to its level-0 tile", at)
			}
			// And an inclusion proof from the tiles, for some entries.
			if at%997 == 0 || at == n-1 {
				p, err := tlog.ProveRecord(n, at, thr)
				if err != nil {
					return fmt.Errorf("entry %d: proof from tiles: %v", at, err)
				}
				if err := tlog.CheckRecord(p, n, tree.Hash, at, leaves[at]); err != nil {
					return fmt.Errorf("entry %d: %v", at, err)
				}
			}
		}
		if len(b) != 0 {
			return fmt.Errorf("%s: bytes after the last entry", c2spPath(d))
		}
	}
	fmt.Printf("%d %x\n", n, root[:])
	return nil
}

func main() {
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "build":
		err = build(os.Args[2], os.Args[3])
	case len(os.Args) == 3 && os.Args[1] == "read":
		err = read(os.Args[2])
	default:
		fmt.Fprintln(os.Stderr, "usage: tlog-tiles build EXPORT DIR | tlog-tiles read DIR")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlog-tiles:", err)
		os.Exit(1)
	}
}
