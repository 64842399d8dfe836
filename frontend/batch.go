package frontend

import (
	"context"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// batch collects the keys of one import until it commits.
type batch struct {
	kekek hsmapi.UUID
	reqs  []hsmapi.ImportRequest
	bytes int // counted against Limits.BatchBytes
}

// importKeyOverhead is what a key costs in a batch besides its fields.
const importKeyOverhead = 512

// ImportCost is what one key of an import batch counts against
// Limits.BatchBytes: the bytes of its fields, and an overhead.
func ImportCost(r hsmapi.ImportRequest) int {
	n := importKeyOverhead + len(r.UUID) + len(r.Label) + len(r.Encryption) + len(r.Wrapped.EncryptedKey) +
		len(r.Wrapped.EncryptedKEK) + len(r.Wrapped.Tag) + len(r.Binding) + len(r.PublicKey)
	for _, a := range r.Attributes {
		n += 8 + len(a.Value)
	}
	return n
}

// MayImport fails unless the client is logged in as the normal user or
// wheel, as the token's import will require: a client that could never
// commit a batch is not let fill one. The batch functions check it before
// a batch holds anything; a face may check it sooner.
func (c *Client) MayImport() error {
	if err := hsmapi.CheckKeyUser(c.User()); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

// BeginImport opens an import batch of keys wrapped for the KEKEK kekek.
func (c *Client) BeginImport(kekek hsmapi.UUID) (uint32, error) {
	if err := c.MayImport(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.batches) >= c.limits.Batches {
		return 0, fmt.Errorf("%w: %d import batches open", ErrNoRoom, len(c.batches))
	}
	h := c.newHandle()
	c.batches[h] = &batch{kekek: kekek}
	return h, nil
}

// AddImport adds one key to a batch; its KEKEK is the batch's.
func (c *Client) AddImport(b uint32, req hsmapi.ImportRequest) error {
	if err := c.MayImport(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	bt, ok := c.batches[b]
	if !ok {
		return fmt.Errorf("%w: no import batch %d", hsmapi.ErrBadArguments, b)
	}
	if len(bt.reqs) >= c.limits.BatchKeys {
		return fmt.Errorf("%w: more than %d keys in one batch", ErrNoRoom, len(bt.reqs))
	}
	cost := ImportCost(req)
	if c.batchBytes+cost > c.limits.BatchBytes {
		return fmt.Errorf("%w: import batches would hold %d bytes", ErrNoRoom, c.batchBytes+cost)
	}
	req.KEKEKUUID = bt.kekek
	bt.reqs = append(bt.reqs, req)
	bt.bytes += cost
	c.batchBytes += cost
	return nil
}

// CommitImport stores a batch's keys in one step of the token's, all or
// none, and closes the batch whatever happens.
func (c *Client) CommitImport(ctx context.Context, b uint32) ([]hsmapi.ImportResult, error) {
	if err := c.MayImport(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	bt, ok := c.batches[b]
	if ok {
		delete(c.batches, b)
		c.batchBytes -= bt.bytes
	}
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: no import batch %d", hsmapi.ErrBadArguments, b)
	}
	bi, ok := c.tok.(hsmapi.BatchImporter)
	if !ok {
		return nil, fmt.Errorf("import: %w: no batch import", hsmapi.ErrUnsupported)
	}
	return bi.ImportBatch(ctx, bt.reqs)
}
