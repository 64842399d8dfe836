package rpc

import (
	"path/filepath"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// BenchmarkKeys10000 lists an HSM of 10,000 keys (P-256 public keys, each
// labelled): in process (hsm.Session.Keys), over a Unix socket as a server
// of version 7 answers (EXT_LIST_KEYS and its downloads), and as a server
// of version 6 or a Cryptech HSM does (PKEY_MATCH pages, then several
// requests per key). The target (issue 13) is rpc within 2x of inproc.
// reqs/op counts the client's requests.
func BenchmarkKeys10000(b *testing.B) {
	const n = 10000
	h, s := hsmtest.CreateFull(b, filepath.Join(b.TempDir(), "hsm"), n)
	addr, _ := serveHSM(b, h)
	check := func(b *testing.B, keys []hsmapi.KeyInfo, err error) {
		if err != nil {
			b.Fatal(err)
		}
		if len(keys) != n {
			b.Fatalf("%d keys, want %d", len(keys), n)
		}
	}
	b.Run("inproc", func(b *testing.B) {
		for b.Loop() {
			keys, err := s.Keys(ctx, hsmapi.Filter{})
			check(b, keys, err)
		}
	})
	for _, v := range []uint32{7, 6} {
		name := "rpc"
		if v == 6 {
			name = "rpc-v6"
		}
		b.Run(name, func(b *testing.B) {
			c, cc := dialCounting(b, addr, hsmtest.PIN)
			ext := *c.ext
			ext.Version = v
			c.ext = &ext
			before := cc.writes.Load()
			for b.Loop() {
				keys, err := c.Keys(ctx, hsmapi.Filter{})
				check(b, keys, err)
			}
			b.ReportMetric(float64(cc.writes.Load()-before)/float64(b.N), "reqs/op")
		})
	}
}
