package rpc

import (
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/sim"
)

// Extension functions: what package backup needs that libhal's 32
// functions cannot carry. A real Cryptech HSM answers RPC_BAD_FUNCTION,
// and the client then keeps to libhal's functions. docs/rpc.md has the
// layouts.
const (
	// FuncExtCapabilities -> uint version, uint n, n x bytes KEK encryption.
	FuncExtCapabilities Func = 0x10000
	// FuncExtExport: uint pkey, bytes kekek_spki, bytes encryption, uint
	// has_binding, bytes binding -> bytes pkcs8, bytes kek, bytes tag.
	FuncExtExport Func = 0x10001
	// FuncExtImportBegin: bytes kekek_uuid -> uint batch.
	FuncExtImportBegin Func = 0x10002
	// FuncExtImportAdd: uint batch, bytes uuid, bytes label, uint flags,
	// bytes encryption, bytes pkcs8, bytes kek, bytes tag, uint has_binding,
	// bytes binding, bytes spki -> nothing.
	FuncExtImportAdd Func = 0x10003
	// FuncExtImportCommit: uint batch -> uint n, bytes present (a bitmap, bit
	// i of byte i/8, least significant first: key i was already there). All
	// the batch's keys are stored in one keystore transaction, or none; keys
	// keep the UUIDs they were added with.
	FuncExtImportCommit Func = 0x10004
	// FuncExtDamaged -> uint n, n x uint block: the flash blocks that failed
	// their CRC at power-on, whose keys cannot be read (an export asks, so
	// as not to leave them out without a word).
	FuncExtDamaged Func = 0x10005
	// FuncExtGetAttributes (version 2): uint pkey -> uint n, n x (uint type,
	// bytes value): every attribute of the key, ordered by type.
	FuncExtGetAttributes Func = 0x10006
	// FuncExtImportAdd2 (version 2): EXT_IMPORT_ADD's arguments, then
	// uint n, n x (uint type, bytes value): the key's attributes, stored
	// with it in the batch's one transaction.
	FuncExtImportAdd2 Func = 0x10007
)

// ExtVersion is the version of the extension functions: 2 added
// EXT_GET_ATTRIBUTES and EXT_IMPORT_ADD2.
const ExtVersion = 2

// What a connection's import batches may hold. They need a login (the
// normal user or wheel, as PKEY_IMPORT), and beyond these bounds
// EXT_IMPORT_BEGIN and EXT_IMPORT_ADD answer ALLOCATION_FAILURE, as libhal
// does when a table of its is full.
const (
	// maxBatch bounds the keys of one import batch, as backup bounds a
	// bundle.
	maxBatch = 10_000
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

type ExtCapabilitiesRequest struct{}

func (*ExtCapabilitiesRequest) EncodeArgs(*Encoder)         {}
func (*ExtCapabilitiesRequest) DecodeArgs(d *Decoder) error { return d.Err() }

type ExtCapabilitiesResponse struct {
	Version        uint32
	KEKEncryptions []string
}

func (m *ExtCapabilitiesResponse) EncodeArgs(e *Encoder) {
	e.Uint32(m.Version)
	e.Uint32(uint32(len(m.KEKEncryptions)))
	for _, s := range m.KEKEncryptions {
		e.Bytes([]byte(s))
	}
}

func (m *ExtCapabilitiesResponse) DecodeArgs(d *Decoder) error {
	m.Version = d.Uint32()
	n := d.Uint32()
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		m.KEKEncryptions = append(m.KEKEncryptions, string(d.Bytes(64)))
	}
	return d.Err()
}

type ExtDamagedRequest struct{}

func (*ExtDamagedRequest) EncodeArgs(*Encoder)         {}
func (*ExtDamagedRequest) DecodeArgs(d *Decoder) error { return d.Err() }

type ExtDamagedResponse struct {
	Blocks []uint32
}

func (m *ExtDamagedResponse) EncodeArgs(e *Encoder) {
	e.Uint32(uint32(len(m.Blocks)))
	for _, b := range m.Blocks {
		e.Uint32(b)
	}
}

func (m *ExtDamagedResponse) DecodeArgs(d *Decoder) error {
	n := d.Uint32()
	if n > sim.MaxBlocks {
		return fmt.Errorf("%w: %d damaged blocks", StatusRPCProtocolError, n)
	}
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		m.Blocks = append(m.Blocks, d.Uint32())
	}
	return d.Err()
}

type ExtExportRequest struct {
	Pkey       uint32
	KEKEK      []byte
	Encryption string
	Binding    []byte // nil: none
}

func (m *ExtExportRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Pkey)
	e.Bytes(m.KEKEK)
	e.Bytes([]byte(m.Encryption))
	encodeOptional(e, m.Binding)
}

func (m *ExtExportRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	m.KEKEK = d.Bytes(MaxPacket)
	m.Encryption = string(d.Bytes(64))
	m.Binding = decodeOptional(d)
	return d.Err()
}

type ExtExportResponse struct{ PKCS8, KEK, Tag []byte }

func (m *ExtExportResponse) EncodeArgs(e *Encoder) { e.Bytes(m.PKCS8); e.Bytes(m.KEK); e.Bytes(m.Tag) }
func (m *ExtExportResponse) DecodeArgs(d *Decoder) error {
	m.PKCS8, m.KEK, m.Tag = d.Bytes(MaxPacket), d.Bytes(MaxPacket), d.Bytes(MaxPacket)
	return d.Err()
}

type ExtImportBeginRequest struct{ KEKEK []byte }

func (m *ExtImportBeginRequest) EncodeArgs(e *Encoder) { e.Bytes(m.KEKEK) }
func (m *ExtImportBeginRequest) DecodeArgs(d *Decoder) error {
	m.KEKEK = d.Bytes(16)
	return d.Err()
}

type ExtImportBeginResponse struct{ Batch uint32 }

func (m *ExtImportBeginResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Batch) }
func (m *ExtImportBeginResponse) DecodeArgs(d *Decoder) error {
	m.Batch = d.Uint32()
	return d.Err()
}

type ExtImportAddRequest struct {
	Batch           uint32
	UUID            []byte
	Label           string
	Flags           uint32
	Encryption      string
	PKCS8, KEK, Tag []byte
	Binding         []byte // nil: none
	SPKI            []byte
}

func (m *ExtImportAddRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Batch)
	e.Bytes(m.UUID)
	e.Bytes([]byte(m.Label))
	e.Uint32(m.Flags)
	e.Bytes([]byte(m.Encryption))
	e.Bytes(m.PKCS8)
	e.Bytes(m.KEK)
	e.Bytes(m.Tag)
	encodeOptional(e, m.Binding)
	e.Bytes(m.SPKI)
}

func (m *ExtImportAddRequest) DecodeArgs(d *Decoder) error {
	m.Batch = d.Uint32()
	m.UUID = d.Bytes(16)
	// Any label a key may have: an import carries what a libhal client
	// set on the source.
	m.Label = string(d.Bytes(hsmapi.MaxRawLabelLength))
	m.Flags = d.Uint32()
	m.Encryption = string(d.Bytes(64))
	m.PKCS8, m.KEK, m.Tag = d.Bytes(MaxPacket), d.Bytes(MaxPacket), d.Bytes(MaxPacket)
	m.Binding = decodeOptional(d)
	m.SPKI = d.Bytes(MaxPacket)
	return d.Err()
}

// ExtImportAdd2Request is EXT_IMPORT_ADD2's arguments: EXT_IMPORT_ADD's,
// then the key's attributes (none absent).
type ExtImportAdd2Request struct {
	ExtImportAddRequest
	Attributes []Attribute
}

func (m *ExtImportAdd2Request) EncodeArgs(e *Encoder) {
	m.ExtImportAddRequest.EncodeArgs(e)
	encodeAttributes(e, m.Attributes)
}

func (m *ExtImportAdd2Request) DecodeArgs(d *Decoder) error {
	m.ExtImportAddRequest.DecodeArgs(d)
	m.Attributes = decodeAttributes(d)
	return d.Err()
}

type ExtImportAddResponse struct{}

func (*ExtImportAddResponse) EncodeArgs(*Encoder)         {}
func (*ExtImportAddResponse) DecodeArgs(d *Decoder) error { return d.Err() }

type ExtImportCommitRequest struct{ Batch uint32 }

func (m *ExtImportCommitRequest) EncodeArgs(e *Encoder) { e.Uint32(m.Batch) }
func (m *ExtImportCommitRequest) DecodeArgs(d *Decoder) error {
	m.Batch = d.Uint32()
	return d.Err()
}

type ExtImportCommitResponse struct {
	// Present[i]: key i of the batch was already there, and left alone.
	Present []bool
}

func (m *ExtImportCommitResponse) EncodeArgs(e *Encoder) {
	e.Uint32(uint32(len(m.Present)))
	bits := make([]byte, (len(m.Present)+7)/8)
	for i, p := range m.Present {
		if p {
			bits[i/8] |= 1 << (i % 8)
		}
	}
	e.Bytes(bits)
}

func (m *ExtImportCommitResponse) DecodeArgs(d *Decoder) error {
	n := d.Uint32()
	bits := d.Bytes(MaxPacket)
	if d.Err() != nil {
		return d.Err()
	}
	if n > maxBatch || len(bits) != (int(n)+7)/8 {
		return StatusRPCProtocolError
	}
	m.Present = make([]bool, n)
	for i := range m.Present {
		m.Present[i] = bits[i/8]&(1<<(i%8)) != 0
	}
	return nil
}

// encodeOptional writes a flag and the bytes, so that nil and empty differ.
func encodeOptional(e *Encoder, b []byte) {
	if b == nil {
		e.Uint32(0)
		e.Bytes(nil)
		return
	}
	e.Uint32(1)
	e.Bytes(b)
}

func decodeOptional(d *Decoder) []byte {
	has := d.Uint32()
	b := d.Bytes(MaxPacket)
	if has == 0 {
		return nil
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

// importBatch collects the keys of one extension import until it commits.
type importBatch struct {
	kekek hsmapi.UUID
	reqs  []hsmapi.ImportRequest
	bytes int // counted against maxImportBytes
}

// importCost is what one EXT_IMPORT_ADD's key counts against
// maxImportBytes.
func importCost(r *ExtImportAddRequest, attrs []hsmapi.Attribute) int {
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
	case hsmapi.UserNormal, hsmapi.UserWheel:
		return nil
	case hsmapi.UserNone:
		return fmt.Errorf("import: %w", hsmapi.ErrNotLoggedIn)
	default:
		return fmt.Errorf("import: %w: %s cannot use keys", hsmapi.ErrForbidden, u)
	}
}

// dropImports forgets the connection's open import batches (at logout).
func (c *serverConn) dropImports() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.imports)
	c.importBytes = 0
}

// extHandlers run the extension functions.
var extHandlers = map[Func]func(c *serverConn, d *Decoder) (Args, error){
	FuncExtCapabilities: func(c *serverConn, d *Decoder) (Args, error) {
		if err := decodeAll(d, &ExtCapabilitiesRequest{}); err != nil {
			return nil, err
		}
		encs, err := c.sess.KEKEncryptions(bg)
		if err != nil {
			return nil, err
		}
		resp := &ExtCapabilitiesResponse{Version: ExtVersion}
		for _, e := range encs {
			resp.KEKEncryptions = append(resp.KEKEncryptions, string(e))
		}
		return resp, nil
	},
	FuncExtDamaged: func(c *serverConn, d *Decoder) (Args, error) {
		if err := decodeAll(d, &ExtDamagedRequest{}); err != nil {
			return nil, err
		}
		blocks, err := c.sess.DamagedBlocks(bg)
		if err != nil {
			return nil, err
		}
		resp := &ExtDamagedResponse{}
		for _, b := range blocks {
			resp.Blocks = append(resp.Blocks, uint32(b))
		}
		return resp, nil
	},
	FuncExtExport: func(c *serverConn, d *Decoder) (Args, error) {
		var r ExtExportRequest
		if err := decodeAll(d, &r); err != nil {
			return nil, err
		}
		id, err := c.pkey(r.Pkey)
		if err != nil {
			return nil, err
		}
		enc, err := hsmapi.ParseKEKEncryption(r.Encryption)
		if err != nil {
			return nil, err
		}
		kekek, err := hsmapi.ParseKEKEK(r.KEKEK)
		if err != nil {
			return nil, err
		}
		w, err := c.sess.Export(bg, hsmapi.ExportRequest{Key: id, KEKEKPublicKey: kekek, Encryption: enc, Binding: r.Binding})
		if err != nil {
			return nil, err
		}
		return &ExtExportResponse{PKCS8: w.EncryptedKey, KEK: w.EncryptedKEK, Tag: w.Tag}, nil
	},
	FuncExtImportBegin: func(c *serverConn, d *Decoder) (Args, error) {
		var r ExtImportBeginRequest
		if err := decodeAll(d, &r); err != nil {
			return nil, err
		}
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
			return nil, fmt.Errorf("%w: %d import batches open", StatusAllocationFailure, len(c.imports))
		}
		h := c.newHandle()
		c.imports[h] = &importBatch{kekek: kekek}
		return &ExtImportBeginResponse{Batch: h}, nil
	},
	FuncExtImportAdd: func(c *serverConn, d *Decoder) (Args, error) {
		var r ExtImportAddRequest
		if err := decodeAll(d, &r); err != nil {
			return nil, err
		}
		return c.importAdd(&r, nil)
	},
	FuncExtImportAdd2: func(c *serverConn, d *Decoder) (Args, error) {
		var r ExtImportAdd2Request
		if err := decodeAll(d, &r); err != nil {
			return nil, err
		}
		attrs := make([]hsmapi.Attribute, len(r.Attributes))
		for i, a := range r.Attributes {
			if a.Absent {
				return nil, fmt.Errorf("%w: attribute 0x%x without a value", hsmapi.ErrBadArguments, a.Type)
			}
			attrs[i] = hsmapi.Attribute{Type: a.Type, Value: a.Value}
		}
		return c.importAdd(&r.ExtImportAddRequest, attrs)
	},
	FuncExtGetAttributes: func(c *serverConn, d *Decoder) (Args, error) {
		var r ExtGetAttributesRequest
		if err := decodeAll(d, &r); err != nil {
			return nil, err
		}
		return c.extGetAttributes(&r)
	},
	FuncExtImportCommit: func(c *serverConn, d *Decoder) (Args, error) {
		var r ExtImportCommitRequest
		if err := decodeAll(d, &r); err != nil {
			return nil, err
		}
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
			return nil, fmt.Errorf("%w: no import batch %d", hsmapi.ErrBadArguments, r.Batch)
		}
		res, err := c.sess.ImportBatch(bg, b.reqs)
		if err != nil {
			return nil, err
		}
		resp := &ExtImportCommitResponse{Present: make([]bool, len(res))}
		for i, k := range res {
			resp.Present[i] = k.Present
		}
		return resp, nil
	},
}

// importAdd adds one key, with its attributes, to an import batch
// (EXT_IMPORT_ADD, EXT_IMPORT_ADD2).
func (c *serverConn) importAdd(r *ExtImportAddRequest, attrs []hsmapi.Attribute) (Args, error) {
	id, err := uuidOf(r.UUID)
	if err != nil {
		return nil, err
	}
	if id.IsZero() {
		return nil, fmt.Errorf("%w: a batch key needs its UUID", hsmapi.ErrBadArguments)
	}
	if err := c.requireImporter(); err != nil {
		return nil, err
	}
	req := hsmapi.ImportRequest{UUID: id, Label: r.Label, Flags: hsmapi.Flags(r.Flags), PublicKey: r.SPKI, Attributes: attrs}
	if len(r.PKCS8) > 0 {
		if req.Encryption, err = hsmapi.ParseKEKEncryption(r.Encryption); err != nil {
			return nil, err
		}
		req.Wrapped = hsmapi.WrappedKey{EncryptedKey: r.PKCS8, EncryptedKEK: r.KEK, Tag: r.Tag}
		req.Binding = r.Binding
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.imports[r.Batch]
	if !ok {
		return nil, fmt.Errorf("%w: no import batch %d", hsmapi.ErrBadArguments, r.Batch)
	}
	if len(b.reqs) >= c.srv.limits.batchKeys {
		return nil, fmt.Errorf("%w: more than %d keys in one batch", StatusAllocationFailure, len(b.reqs))
	}
	cost := importCost(r, attrs)
	if c.importBytes+cost > c.srv.limits.batchMem {
		return nil, fmt.Errorf("%w: import batches would hold %d bytes", StatusAllocationFailure, c.importBytes+cost)
	}
	req.KEKEKUUID = b.kekek
	b.reqs = append(b.reqs, req)
	b.bytes += cost
	c.importBytes += cost
	return &ExtImportAddResponse{}, nil
}

func decodeAll(d *Decoder, a Args) error {
	if err := a.DecodeArgs(d); err != nil {
		return err
	}
	return d.Finish()
}
