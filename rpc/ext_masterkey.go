package rpc

import (
	"fmt"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// The extensions of the master key's life and of keys stored outside the
// HSM (version 6), answered by the token's hsmapi.MasterKeyKeeper and
// hsmapi.KeyStorer. What does not fit one packet (a stored-keys file, the
// UUIDs of many keys, a key file of many shares, a list of keys) goes
// through the connection's upload and download buffers: the client
// uploads in EXT_UPLOAD chunks, calls, and downloads the answer in
// EXT_DOWNLOAD chunks.

// maxUpload bounds a connection's upload buffer, as the import batches are
// bounded together: a stored-keys file of 10,000 RSA-4096 keys is about
// 60 MiB.
const maxUpload = 128 << 20

// transfer is a connection's upload and download buffers. Requests on a
// connection are answered one at a time, so it needs no lock.
type transfer struct {
	up, down []byte
}

// reset drops both buffers, clearing them (the download may hold the
// custodians' sealed shares).
func (t *transfer) reset() {
	clear(t.up)
	clear(t.down)
	t.up, t.down = nil, nil
}

// takeUpload hands the upload buffer to its one user.
func (t *transfer) takeUpload() []byte {
	b := t.up
	t.up = nil
	return b
}

// answer puts data in the download buffer, replacing what was there.
func (t *transfer) answer(data []byte) (wire.Args, error) {
	clear(t.down)
	t.down = data
	return &wire.ExtLengthResponse{Length: uint32(len(data))}, nil
}

func (c *serverConn) extUpload(r *wire.ExtUploadRequest) (wire.Args, error) {
	t := &c.xfer
	if r.Offset == 0 {
		clear(t.up)
		t.up = t.up[:0]
	}
	switch {
	case int64(r.Offset) != int64(len(t.up)):
		return nil, fmt.Errorf("%w: upload at %d, after %d bytes", hsmapi.ErrBadArguments, r.Offset, len(t.up))
	case len(t.up)+len(r.Data) > maxUpload:
		return nil, fmt.Errorf("upload: %w: more than %d bytes", frontend.ErrNoRoom, maxUpload)
	}
	t.up = append(t.up, r.Data...)
	return &wire.ExtEmptyResponse{}, nil
}

func (c *serverConn) extDownload(r *wire.ExtDownloadRequest) (wire.Args, error) {
	d := c.xfer.down
	if int64(r.Offset) > int64(len(d)) {
		return nil, fmt.Errorf("%w: download from %d of %d bytes", hsmapi.ErrBadArguments, r.Offset, len(d))
	}
	chunk := d[r.Offset:]
	chunk = chunk[:min(len(chunk), wire.MaxTransferChunk)]
	return &wire.ExtDownloadResponse{Total: uint32(len(d)), Data: chunk}, nil
}

func (c *serverConn) extMasterKeyStatus(*wire.ExtMasterKeyStatusRequest) (wire.Args, error) {
	mk, err := c.fe.MasterKeyKeeper()
	if err != nil {
		return nil, err
	}
	st, err := mk.MasterKeyStatus(bg)
	if err != nil {
		return nil, err
	}
	resp := &wire.ExtMasterKeyStatusResponse{Set: boolWord(st.Set), CheckValueKnown: boolWord(st.CheckValueKnown), CheckValue: st.CheckValue[:]}
	for _, o := range st.OldKeys {
		resp.OldCheckValues = append(resp.OldCheckValues, o.CheckValue[:])
		resp.OldRecords = append(resp.OldRecords, uint32(o.Records))
	}
	if st.Restore != nil {
		resp.Restoring = 1
		resp.ExtRestoreStatusResponse = wireRestoreStatus(*st.Restore)
	}
	return resp, nil
}

func boolWord(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func wireRestoreStatus(r hsmapi.RestoreStatus) wire.ExtRestoreStatusResponse {
	return wire.ExtRestoreStatusResponse{ID: r.ID[:], PublicKey: r.PublicKey, Received: uint32(r.Received),
		Threshold: uint32(r.Threshold), CheckValue: r.CheckValue[:], Done: boolWord(r.Done)}
}

// extMasterKeyBackup splits the master key; the custodians' passphrases
// came on the connection as PINs do, and are cleared here once used.
func (c *serverConn) extMasterKeyBackup(r *wire.ExtMasterKeyBackupRequest) (wire.Args, error) {
	defer func() {
		for _, p := range r.Passphrases {
			clear(p)
		}
	}()
	mk, err := c.fe.MasterKeyKeeper()
	if err != nil {
		return nil, err
	}
	if r.KDFThreads > 255 {
		return nil, fmt.Errorf("%w: %d KDF threads", hsmapi.ErrBadArguments, r.KDFThreads)
	}
	file, err := mk.BackupMasterKey(bg, hsmapi.BackupRequest{ID: r.ID, Threshold: int(r.Threshold), Shares: int(r.Shares),
		Passphrases: r.Passphrases, KDFTime: r.KDFTime, KDFMemoryKiB: r.KDFMemoryKiB, KDFThreads: uint8(r.KDFThreads)})
	if err != nil {
		return nil, err
	}
	return c.xfer.answer(file)
}

func (c *serverConn) extMasterKeyZeroize(*wire.ExtMasterKeyZeroizeRequest) (wire.Args, error) {
	mk, err := c.fe.MasterKeyKeeper()
	if err != nil {
		return nil, err
	}
	return &wire.ExtEmptyResponse{}, mk.ZeroizeMasterKey(bg)
}

func (c *serverConn) extRestoreBegin(*wire.ExtRestoreBeginRequest) (wire.Args, error) {
	mk, err := c.fe.MasterKeyKeeper()
	if err != nil {
		return nil, err
	}
	st, err := mk.BeginRestore(bg)
	if err != nil {
		return nil, err
	}
	resp := wireRestoreStatus(st)
	return &resp, nil
}

// extRestoreSubmit hands the restore session a share sealed to it: only
// the HSM opens it, so the connection never carries the share itself.
func (c *serverConn) extRestoreSubmit(r *wire.ExtRestoreSubmitRequest) (wire.Args, error) {
	mk, err := c.fe.MasterKeyKeeper()
	if err != nil {
		return nil, err
	}
	st, err := mk.SubmitShare(bg, r.Sealed)
	if err != nil {
		return nil, err
	}
	resp := wireRestoreStatus(st)
	return &resp, nil
}

func (c *serverConn) extRestoreAbort(*wire.ExtRestoreAbortRequest) (wire.Args, error) {
	mk, err := c.fe.MasterKeyKeeper()
	if err != nil {
		return nil, err
	}
	return &wire.ExtEmptyResponse{}, mk.AbortRestore(bg)
}

func (c *serverConn) extMasterKeyRotate(*wire.ExtMasterKeyRotateRequest) (wire.Args, error) {
	mk, err := c.fe.MasterKeyKeeper()
	if err != nil {
		return nil, err
	}
	res, err := mk.RotateMasterKey(bg)
	if err != nil {
		return nil, err
	}
	return &wire.ExtMasterKeyRotateResponse{CheckValue: res.CheckValue[:], OldCheckValue: res.OldCheckValue[:],
		Resealed: uint32(res.Resealed), Skipped: uint32(res.Skipped)}, nil
}

func (c *serverConn) extMasterKeyRetire(r *wire.ExtMasterKeyRetireRequest) (wire.Args, error) {
	if len(r.CheckValue) != hsmapi.MasterKeyCheckSize {
		return nil, fmt.Errorf("%w: a %d-byte check value", hsmapi.ErrBadArguments, len(r.CheckValue))
	}
	mk, err := c.fe.MasterKeyKeeper()
	if err != nil {
		return nil, err
	}
	return &wire.ExtEmptyResponse{}, mk.RetireMasterKey(bg, [hsmapi.MasterKeyCheckSize]byte(r.CheckValue))
}

// extStoreKeys stores the keys whose UUIDs the upload holds, 16 bytes
// each, and answers the stored-keys file through the download.
func (c *serverConn) extStoreKeys(*wire.ExtStoreKeysRequest) (wire.Args, error) {
	up := c.xfer.takeUpload()
	ks, err := c.fe.KeyStorer()
	if err != nil {
		return nil, err
	}
	const n = len(hsmapi.UUID{})
	if len(up)%n != 0 {
		return nil, fmt.Errorf("%w: %d bytes of UUIDs", hsmapi.ErrBadArguments, len(up))
	}
	ids := make([]hsmapi.UUID, 0, len(up)/n)
	for i := 0; i < len(up); i += n {
		ids = append(ids, hsmapi.UUID(up[i:i+n]))
	}
	file, err := ks.StoreKeys(bg, ids)
	if err != nil {
		return nil, err
	}
	return c.xfer.answer(file)
}

// extCheckStored checks the stored-keys file the upload holds, and answers
// its keys through the download.
func (c *serverConn) extCheckStored(*wire.ExtCheckStoredRequest) (wire.Args, error) {
	up := c.xfer.takeUpload()
	ks, err := c.fe.KeyStorer()
	if err != nil {
		return nil, err
	}
	keys, err := ks.CheckStoredKeys(bg, up)
	if err != nil {
		return nil, err
	}
	res := make([]hsmapi.ImportResult, len(keys))
	for i, k := range keys {
		res[i].Key = k
	}
	return c.xfer.answer(encodeKeyList(res))
}

// extRestoreKeys restores the keys of the stored-keys file the upload
// holds, and answers them through the download.
func (c *serverConn) extRestoreKeys(*wire.ExtRestoreKeysRequest) (wire.Args, error) {
	up := c.xfer.takeUpload()
	ks, err := c.fe.KeyStorer()
	if err != nil {
		return nil, err
	}
	res, err := ks.RestoreKeys(bg, up)
	if err != nil {
		return nil, err
	}
	return c.xfer.answer(encodeKeyList(res))
}

// encodeKeyList is a key list: uint n, n x (key, uint present).
func encodeKeyList(res []hsmapi.ImportResult) []byte {
	var e wire.Encoder
	size := 4
	for _, r := range res {
		// The fixed fields, the label and public key with their lengths
		// and padding, and hss_remaining.
		size += 64 + len(r.Key.Label) + len(r.Key.PublicKey) + 6
	}
	e.Grow(size)
	e.Uint32(uint32(len(res)))
	for _, r := range res {
		k := wire.ExtListedKeyResponse{ExtKeyInfoResponse: wireKeyInfo(r.Key), Present: boolWord(r.Present)}
		k.EncodeArgs(&e)
	}
	return e.Data()
}
