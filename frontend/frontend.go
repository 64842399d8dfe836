// Package frontend holds what an HSM's face keeps for each of its clients:
// a token session, who is logged in, the handles of open keys and hashes,
// and import batches, within limits that keep any one client from making
// the daemon hold memory without end. It is written against the Token
// contract alone, so that a face can put any token behind it.
//
// The libhal RPC server (package rpc) is one face over it, a thin adapter
// from the wire's functions to a [Client]'s methods; the PKCS#11 module is
// to be the second.
//
// # Locks
//
// Frontend.mu guards the set of clients; Client.mu guards one client's
// state. Frontend.mu is taken before a Client.mu, never after, and neither
// is held while the token works.
package frontend

import (
	"context"
	"errors"
	"sync"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// An Opener makes the token session behind each client: an emulated HSM
// (*hsm.HSM), or any other backend.
type Opener interface {
	Open(ctx context.Context) (hsmapi.Token, error)
}

// randomSource is implemented by an Opener that can tell random bytes of
// the HSM's own (libhal's GET_RANDOM).
type randomSource interface {
	Random(p []byte) error
}

// Limits bound what one client may hold at once. libhal has fixed tables
// of key and hash slots for all its clients; these bound each client
// instead.
type Limits struct {
	// KeyHandles bounds the open key handles. Beyond it, opening one fails
	// with ErrNoKeyHandles.
	KeyHandles int
	// HashHandles bounds the open hashes. Beyond it, ErrNoRoom.
	HashHandles int
	// Batches bounds the open import batches, BatchKeys the keys of one,
	// BatchBytes what all of a client's batches hold (see ImportCost).
	// Beyond them, ErrNoRoom.
	Batches, BatchKeys, BatchBytes int
}

// DefaultLimits are the limits of a Frontend made by New.
var DefaultLimits = Limits{
	// More than the keys the largest keystore can hold (one key per flash
	// block), since a client may keep a handle on every key it touches.
	KeyHandles:  65536,
	HashHandles: 64,
	Batches:     4,
	// As backup bounds a bundle.
	BatchKeys: 10_000,
	// An RSA-4096 key wrapped for an RSA-4096 KEKEK, with its tag, binding,
	// public key, the longest label (1,024 bytes) and the PKCS#11
	// attributes the largest bundle carries, counts about 8.7 KB, so a
	// batch of BatchKeys of them (87 MB) fits: a bundle's worth of keys is
	// never refused.
	BatchBytes: 128 << 20,
}

// Errors of the limits; a face turns them into its own answers.
var (
	// ErrNoKeyHandles: the client holds Limits.KeyHandles key handles.
	ErrNoKeyHandles = errors.New("no key handles left")
	// ErrNoRoom: a hash or an import would exceed the client's limits.
	ErrNoRoom = errors.New("no room left")
)

// A Frontend makes and keeps track of clients on one Opener.
type Frontend struct {
	opener Opener
	// Limits apply to the clients opened after they are set.
	Limits Limits

	// mu guards clients. It is taken before a Client.mu, never after,
	// and under rpc.Server.mu when a connection is refused at closing.
	mu      sync.Mutex
	clients map[*Client]struct{}
}

// New makes a front end for the tokens o opens, with DefaultLimits.
func New(o Opener) *Frontend {
	return &Frontend{opener: o, Limits: DefaultLimits, clients: map[*Client]struct{}{}}
}

// Open starts a client with a token session of its own.
func (f *Frontend) Open(ctx context.Context) (*Client, error) {
	tok, err := f.opener.Open(ctx)
	if err != nil {
		return nil, err
	}
	c := &Client{
		f: f, tok: tok, limits: f.Limits,
		keys: map[uint32]KeyHandle{}, hashes: map[uint32]*Hash{}, batches: map[uint32]*batch{},
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clients[c] = struct{}{}
	return c, nil
}

// Random fills p with random bytes of the HSM's own, or fails with
// hsmapi.ErrUnsupported when the Opener has none to give.
func (f *Frontend) Random(p []byte) error {
	r, ok := f.opener.(randomSource)
	if !ok {
		return hsmapi.ErrUnsupported
	}
	return r.Random(p)
}

// LogoutAll logs every client out (libhal's LOGOUT_ALL).
func (f *Frontend) LogoutAll(ctx context.Context) {
	for _, c := range f.snapshot() {
		c.Logout(ctx)
	}
}

func (f *Frontend) snapshot() []*Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*Client, 0, len(f.clients))
	for c := range f.clients {
		out = append(out, c)
	}
	return out
}

// Stats counts what the clients hold, for leak checks.
type Stats struct {
	Clients, LoggedIn, KeyHandles, HashHandles int
	// ImportBatches counts the open import batches, ImportBytes what their
	// keys count against Limits.BatchBytes.
	ImportBatches, ImportBytes int
}

// Stats reports what the open clients hold.
func (f *Frontend) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	var st Stats
	for c := range f.clients {
		c.mu.Lock()
		st.Clients++
		if c.user != hsmapi.UserNone {
			st.LoggedIn++
		}
		st.KeyHandles += len(c.keys)
		st.HashHandles += len(c.hashes)
		st.ImportBatches += len(c.batches)
		st.ImportBytes += c.batchBytes
		c.mu.Unlock()
	}
	return st
}
