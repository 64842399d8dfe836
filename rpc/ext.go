package rpc

import (
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// What a connection's import batches may hold. They need a login (the
// normal user or wheel, as PKEY_IMPORT), and beyond these bounds
// EXT_IMPORT_BEGIN and EXT_IMPORT_ADD answer ALLOCATION_FAILURE, as libhal
// does when a table of its is full.
const (
	// maxBatch bounds the keys of one import batch, as backup bounds a
	// bundle.
	maxBatch = wire.MaxImportBatch
	// maxImportBatches bounds the batches a connection has open at once.
	maxImportBatches = 4
	// maxImportBytes bounds what all of a connection's open batches hold:
	// the bytes of every key's fields plus importKeyOverhead. An RSA-4096
	// key wrapped for an RSA-4096 KEKEK, with its tag, binding, public key,
	// the longest label (1,024 bytes) and the PKCS#11 attributes the
	// largest bundle carries, counts about 8.7 KB, so a batch of maxBatch
	// of them (87 MB) fits: a bundle's worth of keys is never refused. Each
	// ADD carries at most MaxPacket bytes, so this also bounds a connection
	// sending its biggest ADDs to about 8,000 of them.
	maxImportBytes = 128 << 20
	// importKeyOverhead is what a key costs in a batch besides its fields.
	importKeyOverhead = 512
)

// importBatch collects the keys of one extension import until it commits.
type importBatch struct {
	kekek hsm.UUID
	reqs  []hsm.ImportRequest
	bytes int // counted against maxImportBytes
}

// importCost is what one EXT_IMPORT_ADD's key counts against
// maxImportBytes.
func importCost(r *wire.ExtImportAddRequest, attrs []hsm.Attribute) int {
	n := importKeyOverhead + len(r.UUID) + len(r.Label) + len(r.Encryption) + len(r.PKCS8) +
		len(r.KEK) + len(r.Tag) + len(r.Binding) + len(r.SPKI)
	for _, a := range attrs {
		n += 8 + len(a.Value)
	}
	return n
}

// requireImporter checks that the connection may import keys: logged in as
// the normal user or wheel, as PKEY_IMPORT requires (hsm.Session's check,
// made before the batch holds anything).
func (c *serverConn) requireImporter() error {
	switch u := c.sess.User(); u {
	case hsm.UserNormal, hsm.UserWheel:
		return nil
	case hsm.UserNone:
		return fmt.Errorf("import: %w", hsm.ErrNotLoggedIn)
	default:
		return fmt.Errorf("import: %w: %s cannot use keys", hsm.ErrForbidden, u)
	}
}

// dropImports forgets the connection's open import batches (at logout).
func (c *serverConn) dropImports() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.imports)
	c.importBytes = 0
}

func (c *serverConn) extCapabilities(*wire.ExtCapabilitiesRequest) (wire.Args, error) {
	encs, err := c.sess.KEKEncryptions(bg)
	if err != nil {
		return nil, err
	}
	resp := &wire.ExtCapabilitiesResponse{Version: wire.ExtVersion}
	for _, e := range encs {
		resp.KEKEncryptions = append(resp.KEKEncryptions, string(e))
	}
	return resp, nil
}

func (c *serverConn) extDamaged(*wire.ExtDamagedRequest) (wire.Args, error) {
	blocks, err := c.sess.DamagedBlocks(bg)
	if err != nil {
		return nil, err
	}
	resp := &wire.ExtDamagedResponse{}
	for _, b := range blocks {
		resp.Blocks = append(resp.Blocks, uint32(b))
	}
	return resp, nil
}

func (c *serverConn) extExport(r *wire.ExtExportRequest) (wire.Args, error) {
	id, err := c.pkey(r.Pkey)
	if err != nil {
		return nil, err
	}
	enc, err := hsm.ParseKEKEncryption(r.Encryption)
	if err != nil {
		return nil, err
	}
	w, err := c.sess.Export(bg, hsm.ExportRequest{Key: id, KEKEK: r.KEKEK, Encryption: enc, Binding: r.Binding})
	if err != nil {
		return nil, err
	}
	return &wire.ExtExportResponse{PKCS8: w.PKCS8, KEK: w.KEK, Tag: w.Tag}, nil
}

func (c *serverConn) extImportBegin(r *wire.ExtImportBeginRequest) (wire.Args, error) {
	kekek, err := uuidOf(r.KEKEK)
	if err != nil {
		return nil, err
	}
	if err := c.requireImporter(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.imports) >= c.srv.limits.batches {
		return nil, fmt.Errorf("%w: %d import batches open", wire.StatusAllocationFailure, len(c.imports))
	}
	h := c.newHandle()
	c.imports[h] = &importBatch{kekek: kekek}
	return &wire.ExtImportBeginResponse{Batch: h}, nil
}

func (c *serverConn) extImportAdd(r *wire.ExtImportAddRequest) (wire.Args, error) {
	return c.importAdd(r, nil)
}

func (c *serverConn) extImportAdd2(r *wire.ExtImportAdd2Request) (wire.Args, error) {
	attrs := make([]hsm.Attribute, len(r.Attributes))
	for i, a := range r.Attributes {
		if a.Absent {
			return nil, fmt.Errorf("%w: attribute 0x%x without a value", hsm.ErrBadArguments, a.Type)
		}
		attrs[i] = hsm.Attribute{Type: a.Type, Value: a.Value}
	}
	return c.importAdd(&r.ExtImportAddRequest, attrs)
}

func (c *serverConn) extImportCommit(r *wire.ExtImportCommitRequest) (wire.Args, error) {
	if err := c.requireImporter(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	b, ok := c.imports[r.Batch]
	if ok {
		delete(c.imports, r.Batch)
		c.importBytes -= b.bytes
	}
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: no import batch %d", hsm.ErrBadArguments, r.Batch)
	}
	res, err := c.sess.ImportBatch(bg, b.reqs)
	if err != nil {
		return nil, err
	}
	resp := &wire.ExtImportCommitResponse{Present: make([]bool, len(res))}
	for i, k := range res {
		resp.Present[i] = k.Present
	}
	return resp, nil
}

// importAdd adds one key, with its attributes, to an import batch
// (EXT_IMPORT_ADD, EXT_IMPORT_ADD2).
func (c *serverConn) importAdd(r *wire.ExtImportAddRequest, attrs []hsm.Attribute) (wire.Args, error) {
	id, err := uuidOf(r.UUID)
	if err != nil {
		return nil, err
	}
	if id.IsZero() {
		return nil, fmt.Errorf("%w: a batch key needs its UUID", hsm.ErrBadArguments)
	}
	if err := c.requireImporter(); err != nil {
		return nil, err
	}
	req := hsm.ImportRequest{UUID: id, Label: r.Label, Flags: hsm.Flags(r.Flags), PublicKey: r.SPKI, Attributes: attrs}
	if len(r.PKCS8) > 0 {
		if req.Encryption, err = hsm.ParseKEKEncryption(r.Encryption); err != nil {
			return nil, err
		}
		req.Wrapped = hsm.WrappedKey{PKCS8: r.PKCS8, KEK: r.KEK, Tag: r.Tag}
		req.Binding = r.Binding
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.imports[r.Batch]
	if !ok {
		return nil, fmt.Errorf("%w: no import batch %d", hsm.ErrBadArguments, r.Batch)
	}
	if len(b.reqs) >= c.srv.limits.batchKeys {
		return nil, fmt.Errorf("%w: more than %d keys in one batch", wire.StatusAllocationFailure, len(b.reqs))
	}
	cost := importCost(r, attrs)
	if c.importBytes+cost > c.srv.limits.batchMem {
		return nil, fmt.Errorf("%w: import batches would hold %d bytes", wire.StatusAllocationFailure, c.importBytes+cost)
	}
	req.KEKEK = b.kekek
	b.reqs = append(b.reqs, req)
	b.bytes += cost
	c.importBytes += cost
	return &wire.ExtImportAddResponse{}, nil
}
