package rpc

import (
	"context"
	"errors"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// The master key's life and keys stored outside the HSM, through the
// extensions of version 6 (docs/rpc.md). libhal defines no functions for
// either: against a Cryptech HSM, or a server of an older version, every
// method says it is not supported.

var (
	_ hsmapi.MasterKeyKeeper = (*Client)(nil)
	_ hsmapi.KeyStorer       = (*Client)(nil)
)

// callV6 makes a call of version 6, or says the server cannot.
func (c *Client) callV6(f wire.Func, what string, req, resp wire.Args) error {
	if c.ext == nil || c.ext.Version < 6 {
		return fmt.Errorf("%w: this server cannot %s", hsmapi.ErrUnsupported, what)
	}
	return c.call(f, req, resp)
}

// MasterKeyStatus says whether the server's master key is set, its check
// value, the old-key ring and the restore in progress.
func (c *Client) MasterKeyStatus(context.Context) (hsmapi.MasterKeyStatus, error) {
	var r wire.ExtMasterKeyStatusResponse
	if err := c.callV6(wire.FuncExtMasterKeyStatus, "manage the master key", &wire.ExtMasterKeyStatusRequest{}, &r); err != nil {
		return hsmapi.MasterKeyStatus{}, fmt.Errorf("master key status: %w", err)
	}
	st := hsmapi.MasterKeyStatus{Set: r.Set == 1, CheckValueKnown: r.CheckValueKnown == 1, OldKeys: make([]hsmapi.OldKey, 0, len(r.OldRecords))}
	if err := checkValueOf(r.CheckValue, &st.CheckValue); err != nil {
		return hsmapi.MasterKeyStatus{}, fmt.Errorf("master key status: %w", err)
	}
	if len(r.OldCheckValues) != len(r.OldRecords) {
		return hsmapi.MasterKeyStatus{}, fmt.Errorf("master key status: %w: %d old keys, %d record counts", wire.StatusRPCProtocolError, len(r.OldCheckValues), len(r.OldRecords))
	}
	for i, cv := range r.OldCheckValues {
		o := hsmapi.OldKey{Records: int(r.OldRecords[i])}
		if err := checkValueOf(cv, &o.CheckValue); err != nil {
			return hsmapi.MasterKeyStatus{}, fmt.Errorf("master key status: %w", err)
		}
		st.OldKeys = append(st.OldKeys, o)
	}
	if r.Restoring == 1 {
		rs, err := restoreStatusOf(&r.ExtRestoreStatusResponse)
		if err != nil {
			return hsmapi.MasterKeyStatus{}, fmt.Errorf("master key status: %w", err)
		}
		st.Restore = &rs
	}
	return st, nil
}

// checkValueOf reads a check value off the wire.
func checkValueOf(b []byte, cv *[hsmapi.MasterKeyCheckSize]byte) error {
	if len(b) != len(cv) {
		return fmt.Errorf("%w: a %d-byte check value", wire.StatusRPCProtocolError, len(b))
	}
	copy(cv[:], b)
	return nil
}

// restoreStatusOf reads a restore session off the wire.
func restoreStatusOf(r *wire.ExtRestoreStatusResponse) (hsmapi.RestoreStatus, error) {
	st := hsmapi.RestoreStatus{PublicKey: r.PublicKey, Received: int(r.Received), Threshold: int(r.Threshold), Done: r.Done == 1}
	if len(r.ID) != len(st.ID) {
		return st, fmt.Errorf("%w: a %d-byte restore session id", wire.StatusRPCProtocolError, len(r.ID))
	}
	copy(st.ID[:], r.ID)
	return st, checkValueOf(r.CheckValue, &st.CheckValue)
}

// BackupMasterKey has the server split its master key and returns the key
// file. The custodians' passphrases travel on the connection, as PINs do.
func (c *Client) BackupMasterKey(_ context.Context, req hsmapi.BackupRequest) ([]byte, error) {
	r := &wire.ExtMasterKeyBackupRequest{ID: req.ID, Threshold: uint32(req.Threshold), Shares: uint32(req.Shares),
		Passphrases: req.Passphrases, KDFTime: req.KDFTime, KDFMemoryKiB: req.KDFMemoryKiB, KDFThreads: uint32(req.KDFThreads)}
	c.xferMu.Lock()
	defer c.xferMu.Unlock()
	file, err := c.withDownload(wire.FuncExtMasterKeyBackup, "back the master key up", r)
	if err != nil {
		return nil, fmt.Errorf("back the master key up: %w", err)
	}
	return file, nil
}

// ZeroizeMasterKey wipes the server's master key, as tamper does.
func (c *Client) ZeroizeMasterKey(context.Context) error {
	if err := c.callV6(wire.FuncExtMasterKeyZeroize, "manage the master key", &wire.ExtMasterKeyZeroizeRequest{}, &wire.ExtEmptyResponse{}); err != nil {
		return fmt.Errorf("zeroize the master key: %w", err)
	}
	return nil
}

// BeginRestore opens a restore session on the server, or returns the one
// open.
func (c *Client) BeginRestore(context.Context) (hsmapi.RestoreStatus, error) {
	return c.restoreCall(wire.FuncExtRestoreBegin, "open a restore session", &wire.ExtRestoreBeginRequest{})
}

// SubmitShare hands the restore session one share sealed to it: the share
// itself never crosses the connection.
func (c *Client) SubmitShare(_ context.Context, sealed []byte) (hsmapi.RestoreStatus, error) {
	return c.restoreCall(wire.FuncExtRestoreSubmit, "submit a share", &wire.ExtRestoreSubmitRequest{Sealed: sealed})
}

func (c *Client) restoreCall(f wire.Func, what string, req wire.Args) (hsmapi.RestoreStatus, error) {
	var r wire.ExtRestoreStatusResponse
	if err := c.callV6(f, "restore the master key", req, &r); err != nil {
		return hsmapi.RestoreStatus{}, fmt.Errorf("%s: %w", what, err)
	}
	st, err := restoreStatusOf(&r)
	if err != nil {
		return hsmapi.RestoreStatus{}, fmt.Errorf("%s: %w", what, err)
	}
	return st, nil
}

// AbortRestore ends the server's restore session.
func (c *Client) AbortRestore(context.Context) error {
	if err := c.callV6(wire.FuncExtRestoreAbort, "restore the master key", &wire.ExtRestoreAbortRequest{}, &wire.ExtEmptyResponse{}); err != nil {
		return fmt.Errorf("abort the restore: %w", err)
	}
	return nil
}

// RotateMasterKey has the server make a new master key and seal every
// record again.
func (c *Client) RotateMasterKey(context.Context) (hsmapi.RotateResult, error) {
	var r wire.ExtMasterKeyRotateResponse
	if err := c.callV6(wire.FuncExtMasterKeyRotate, "manage the master key", &wire.ExtMasterKeyRotateRequest{}, &r); err != nil {
		return hsmapi.RotateResult{}, fmt.Errorf("rotate the master key: %w", err)
	}
	res := hsmapi.RotateResult{Resealed: int(r.Resealed), Skipped: int(r.Skipped)}
	if err := errors.Join(checkValueOf(r.CheckValue, &res.CheckValue), checkValueOf(r.OldCheckValue, &res.OldCheckValue)); err != nil {
		return hsmapi.RotateResult{}, fmt.Errorf("rotate the master key: %w", err)
	}
	return res, nil
}

// RetireMasterKey drops an old key from the server's ring.
func (c *Client) RetireMasterKey(_ context.Context, cv [hsmapi.MasterKeyCheckSize]byte) error {
	if err := c.callV6(wire.FuncExtMasterKeyRetire, "manage the master key", &wire.ExtMasterKeyRetireRequest{CheckValue: cv[:]}, &wire.ExtEmptyResponse{}); err != nil {
		return fmt.Errorf("retire master key %x: %w", cv, err)
	}
	return nil
}

// StoreKeys has the server store the keys outside it and returns the
// stored-keys file. The UUIDs go up, and the file comes down, in as many
// packets as they take.
func (c *Client) StoreKeys(_ context.Context, ids []hsmapi.UUID) ([]byte, error) {
	up := make([]byte, 0, len(ids)*len(hsmapi.UUID{}))
	for _, id := range ids {
		up = append(up, id[:]...)
	}
	c.xferMu.Lock()
	defer c.xferMu.Unlock()
	file, err := c.uploadCall(wire.FuncExtStoreKeys, "store keys", up, &wire.ExtStoreKeysRequest{})
	if err != nil {
		return nil, fmt.Errorf("store keys: %w", err)
	}
	return file, nil
}

// CheckStoredKeys has the server check a stored-keys file.
func (c *Client) CheckStoredKeys(_ context.Context, file []byte) ([]hsmapi.KeyInfo, error) {
	res, err := c.keyListCall(wire.FuncExtCheckStored, file, &wire.ExtCheckStoredRequest{})
	if err != nil {
		return nil, fmt.Errorf("check stored keys: %w", err)
	}
	keys := make([]hsmapi.KeyInfo, len(res))
	for i, r := range res {
		keys[i] = r.Key
	}
	return keys, nil
}

// RestoreKeys has the server take the keys of a stored-keys file back.
func (c *Client) RestoreKeys(_ context.Context, file []byte) ([]hsmapi.ImportResult, error) {
	res, err := c.keyListCall(wire.FuncExtRestoreKeys, file, &wire.ExtRestoreKeysRequest{})
	if err != nil {
		return nil, fmt.Errorf("restore keys: %w", err)
	}
	return res, nil
}

// keyListCall uploads a stored-keys file for f and reads the key list it
// answers.
func (c *Client) keyListCall(f wire.Func, file []byte, req wire.Args) ([]hsmapi.ImportResult, error) {
	if len(file) > maxUpload {
		return nil, fmt.Errorf("%w: a %d-byte file: a server takes at most %d bytes", hsmapi.ErrBadArguments, len(file), maxUpload)
	}
	c.xferMu.Lock()
	defer c.xferMu.Unlock()
	list, err := c.uploadCall(f, "store keys", file, req)
	if err != nil {
		return nil, err
	}
	return decodeKeyList(list)
}

// uploadCall puts up in the server's upload buffer, calls f, and reads
// its answer from the download buffer. Called with c.xferMu held.
func (c *Client) uploadCall(f wire.Func, what string, up []byte, req wire.Args) ([]byte, error) {
	lockassert.Held(&c.xferMu)
	if c.ext == nil || c.ext.Version < 6 {
		return nil, fmt.Errorf("%w: this server cannot %s", hsmapi.ErrUnsupported, what)
	}
	// An empty upload still starts anew: nothing left from before counts.
	for off := 0; ; {
		n := min(len(up)-off, wire.MaxTransferChunk)
		if err := c.call(wire.FuncExtUpload, &wire.ExtUploadRequest{Offset: uint32(off), Data: up[off : off+n]}, &wire.ExtEmptyResponse{}); err != nil {
			return nil, fmt.Errorf("upload: %w", err)
		}
		if off += n; off == len(up) {
			break
		}
	}
	return c.withDownload(f, what, req)
}

// withDownload calls f, which answers the length of what it put in the
// download buffer, and reads that. Called with c.xferMu held.
func (c *Client) withDownload(f wire.Func, what string, req wire.Args) ([]byte, error) {
	lockassert.Held(&c.xferMu)
	var l wire.ExtLengthResponse
	if err := c.callV6(f, what, req, &l); err != nil {
		return nil, err
	}
	out := make([]byte, 0, min(int(l.Length), maxUpload))
	for len(out) < int(l.Length) {
		var r wire.ExtDownloadResponse
		if err := c.call(wire.FuncExtDownload, &wire.ExtDownloadRequest{Offset: uint32(len(out))}, &r); err != nil {
			return nil, fmt.Errorf("download: %w", err)
		}
		if r.Total != l.Length || len(r.Data) == 0 || len(out)+len(r.Data) > int(l.Length) {
			return nil, fmt.Errorf("download: %w: %d bytes at %d of %d (total %d)", wire.StatusRPCProtocolError, len(r.Data), len(out), l.Length, r.Total)
		}
		out = append(out, r.Data...)
	}
	return out, nil
}

// decodeKeyList reads a key list: uint n, n x (key, uint present).
func decodeKeyList(b []byte) ([]hsmapi.ImportResult, error) {
	d := wire.NewDecoder(b)
	n := d.Uint32()
	// Each key takes 40 bytes at least: more than that many is a lie.
	if d.Err() == nil && int64(n) > int64(len(b)/40) {
		return nil, fmt.Errorf("%w: a key list of %d keys in %d bytes", wire.StatusRPCProtocolError, n, len(b))
	}
	res := make([]hsmapi.ImportResult, 0, n)
	for range n {
		var k wire.ExtListedKeyResponse
		if err := k.DecodeArgs(d); err != nil {
			return nil, err
		}
		info, err := keyInfoOf(&k.ExtKeyInfoResponse)
		if err != nil {
			return nil, err
		}
		res = append(res, hsmapi.ImportResult{Key: info, Present: k.Present == 1})
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return res, nil
}
