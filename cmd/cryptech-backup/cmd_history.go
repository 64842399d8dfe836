package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/hsmkit/cryptech-backup/hsm"
)

var hashsigHistoryCommand = &command{
	name:    "hashsig-history",
	args:    "[--hsm DIR] [--forget I:FROM-TO]",
	summary: "list the HSS history records of an emulated HSM that no key holds, and what its flash holds; forget one an interrupted import left",
	examples: `  cryptech-backup hashsig-history --hsm ./hsm     # one line per range: I:FROM-TO, then what it is; the flash's use on stderr
  cryptech-backup hashsig-history --hsm ./hsm --forget 5f0c...e1:512-1024
`,
	define: defineHashsigHistory,
}

// defineHashsigHistory registers the flags of hashsigHistory and returns what runs it.
func defineHashsigHistory(fs *flag.FlagSet) runFunc {
	var dir, forget string
	registerHSMDir(fs, &dir, "emulated HSM state directory", "; the HSM must not be in use")
	fs.StringVar(&forget, "forget", "", "forget this range, as the list prints it: only one that an older version recorded apart from its key, and only if no key of this HSM ever signed with it")
	return func(_ context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		c.hsmDir = dir
		var id [16]byte
		var next, end uint64
		if forget != "" {
			var err error
			if id, next, end, err = parseHistoryRange(forget); err != nil {
				return usageError{"--forget: " + err.Error()}
			}
		}
		h, err := openEmulated(e, c.dir(e), "stop "+progName+" serve (or whatever holds it) first: hashsig-history reads the HSM's flash itself, and works on an HSM no process holds")
		if err != nil {
			return err
		}
		defer h.Close()
		if forget != "" {
			if err := h.ForgetHashsigRange(id, next, end); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "%s: forgot signatures [%d, %d) of HSS key %x: a part of that key holding them can be imported again\n", progName, next, end, id)
			return nil
		}
		u, err := h.FlashUsage()
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "%s: %s\n", progName, usageLine(u))
		orphans, err := h.HashsigOrphans()
		if err != nil {
			return err
		}
		for _, o := range orphans {
			for _, r := range o.Ranges {
				what := "imported, and deleted since"
				if r.Unconfirmed {
					what = "recorded by an older version apart from its key: an import cut short, or imported and deleted since"
				}
				fmt.Fprintf(e.stdout, "%x:%d-%d\t%s\n", o.ID, r.Next, r.End, what)
			}
		}
		return nil
	}
}

// parseHistoryRange parses I:FROM-TO, I in hex.
func parseHistoryRange(s string) (id [16]byte, next, end uint64, err error) {
	hexID, rng, ok := strings.Cut(s, ":")
	from, to, ok2 := strings.Cut(rng, "-")
	b, herr := hex.DecodeString(hexID)
	if !ok || !ok2 || herr != nil || len(b) != len(id) {
		return id, 0, 0, fmt.Errorf("%q is not I:FROM-TO, I the 32 hex digits of an HSS identifier", s)
	}
	copy(id[:], b)
	next, err1 := strconv.ParseUint(from, 10, 64)
	end, err2 := strconv.ParseUint(to, 10, 64)
	if err1 != nil || err2 != nil || next >= end {
		return id, 0, 0, fmt.Errorf("%q: FROM-TO is a range of signature indexes, FROM below TO", rng)
	}
	return id, next, end, nil
}

// usageLine says what an HSM's flash holds, the HSS history's share named.
func usageLine(u hsm.FlashUsage) string {
	line := fmt.Sprintf("flash: %d of %d blocks free, %d damaged; HSS history, kept for good: keys %d, ranges %d, blocks %d",
		u.Free, u.Blocks, u.Damaged, u.HistoryKeys, u.HistoryRanges, u.HistoryBlocks)
	if u.CacheBlocks > 0 {
		line += fmt.Sprintf("; HSS tree caches, freed when keys need the room: blocks %d", u.CacheBlocks)
	}
	return line
}
