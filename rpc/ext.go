package rpc

import (
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

func (c *serverConn) extCapabilities(*wire.ExtCapabilitiesRequest) (wire.Args, error) {
	encs, err := c.fe.Token().KEKEncryptions(bg)
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
	d, ok := c.fe.Token().(hsmapi.DamageReporter)
	if !ok {
		return &wire.ExtDamagedResponse{}, nil // none it could tell of
	}
	blocks, err := d.DamagedBlocks(bg)
	if err != nil {
		return nil, err
	}
	resp := &wire.ExtDamagedResponse{}
	for _, b := range blocks {
		resp.Blocks = append(resp.Blocks, uint32(b))
	}
	return resp, nil
}

// extIdentity tells what the HSM behind the server says it is; a token
// that cannot tell is NOT_IMPLEMENTED.
func (c *serverConn) extIdentity(*wire.ExtIdentityRequest) (wire.Args, error) {
	idr, ok := c.fe.Token().(hsmapi.Identifier)
	if !ok {
		return nil, fmt.Errorf("identity: %w", hsmapi.ErrUnsupported)
	}
	id, err := idr.Identity(bg)
	if err != nil {
		return nil, err
	}
	return &wire.ExtIdentityResponse{Manufacturer: id.Manufacturer, Model: id.Model, Serial: id.Serial, Label: id.Label}, nil
}

// extRefusal tells why the request before was answered FORBIDDEN.
func (c *serverConn) extRefusal(*wire.ExtRefusalRequest) (wire.Args, error) {
	r := c.refusal
	return &r, nil
}

func (c *serverConn) extExport(r *wire.ExtExportRequest) (wire.Args, error) {
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
	w, err := c.fe.Token().Export(bg, hsmapi.ExportRequest{Key: id, KEKEKPublicKey: kekek, Encryption: enc, Binding: r.Binding})
	if err != nil {
		return nil, err
	}
	return &wire.ExtExportResponse{PKCS8: w.EncryptedKey, KEK: w.EncryptedKEK, Tag: w.Tag}, nil
}

func (c *serverConn) extImportBegin(r *wire.ExtImportBeginRequest) (wire.Args, error) {
	kekek, err := uuidOf(r.KEKEK)
	if err != nil {
		return nil, err
	}
	h, err := c.fe.BeginImport(kekek)
	if err != nil {
		return nil, err
	}
	return &wire.ExtImportBeginResponse{Batch: h}, nil
}

func (c *serverConn) extImportAdd(r *wire.ExtImportAddRequest) (wire.Args, error) {
	return c.importAdd(r, nil)
}

func (c *serverConn) extImportAdd2(r *wire.ExtImportAdd2Request) (wire.Args, error) {
	attrs, err := attributesOf(r.Attributes)
	if err != nil {
		return nil, err
	}
	return c.importAdd(&r.ExtImportAddRequest, attrs)
}

func (c *serverConn) extImportCommit(r *wire.ExtImportCommitRequest) (wire.Args, error) {
	res, err := c.fe.CommitImport(bg, r.Batch)
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
func (c *serverConn) importAdd(r *wire.ExtImportAddRequest, attrs []hsmapi.Attribute) (wire.Args, error) {
	req, err := importRequestOf(r, attrs, c.fe.MayImport)
	if err != nil {
		return nil, err
	}
	return &wire.ExtImportAddResponse{}, c.fe.AddImport(r.Batch, req)
}

// importRequestOf is the request EXT_IMPORT_ADD carries, once its UUID
// and, before anything is parsed further, mayImport passed.
func importRequestOf(r *wire.ExtImportAddRequest, attrs []hsmapi.Attribute, mayImport func() error) (hsmapi.ImportRequest, error) {
	id, err := uuidOf(r.UUID)
	if err != nil {
		return hsmapi.ImportRequest{}, err
	}
	if id.IsZero() {
		return hsmapi.ImportRequest{}, fmt.Errorf("%w: a batch key needs its UUID", hsmapi.ErrBadArguments)
	}
	if err := mayImport(); err != nil {
		return hsmapi.ImportRequest{}, err
	}
	req := hsmapi.ImportRequest{UUID: id, Label: r.Label, Flags: hsmapi.Flags(r.Flags), PublicKey: r.SPKI, Attributes: attrs}
	if len(r.PKCS8) > 0 {
		if req.Encryption, err = hsmapi.ParseKEKEncryption(r.Encryption); err != nil {
			return hsmapi.ImportRequest{}, err
		}
		req.Wrapped = hsmapi.WrappedKey{EncryptedKey: r.PKCS8, EncryptedKEK: r.KEK, Tag: r.Tag}
		req.Binding = r.Binding
	}
	return req, nil
}
