package rpc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// Client is an hsmapi.Token on one connection to a libhal RPC server: this
// package's Server, or a Cryptech HSM's multiplexer. It is safe for
// concurrent use; requests on one connection go one at a time.
type Client struct {
	nc net.Conn
	fr *wire.FrameReader

	mu     sync.Mutex // one request at a time, and what follows
	out    []byte
	broken error

	// ext is what the server's extension functions offer; nil for a plain
	// libhal server.
	ext *wire.ExtCapabilitiesResponse

	// xferMu makes an upload, the call that takes it, and the download of
	// its answer one step (the server has one upload and one download
	// buffer per connection). Taken before mu, never under it.
	xferMu sync.Mutex

	// keysMu guards open. It is never held with mu: a request is never
	// made under it.
	keysMu sync.Mutex
	// open holds the key handles this client opened, by UUID, so that
	// signing costs one request.
	open map[hsmapi.UUID]openKey
}

type openKey struct {
	handle uint32
	typ    hsmapi.KeyType
	curve  hsmapi.Curve
}

var (
	_ hsmapi.Token            = (*Client)(nil)
	_ hsmapi.BatchImporter    = (*Client)(nil)
	_ hsmapi.PrivateKeyLoader = (*Client)(nil)
	_ hsmapi.DamageReporter   = (*Client)(nil)
	_ hsmapi.AttributeReader  = (*Client)(nil)
	_ hsmapi.Identifier       = (*Client)(nil)
	_ hsmapi.PINSetter        = (*Client)(nil)
	_ hsmapi.RandomReader     = (*Client)(nil)
	_ hsmapi.AttributeWriter  = (*Client)(nil)
)

// ErrBadAddress: an --rpc address that is neither unix:PATH nor
// tcp:HOST:PORT.
var ErrBadAddress = errors.New("bad RPC address: want unix:PATH or tcp:HOST:PORT")

// maxUnixPath is the longest Unix socket path Linux takes (sun_path holds
// 108 bytes with the terminating NUL).
const maxUnixPath = 107

// ParseAddress splits "unix:/path" or "tcp:host:port" into a network and an
// address for net.Dial and net.Listen.
func ParseAddress(addr string) (network, address string, err error) {
	network, address, ok := strings.Cut(addr, ":")
	if !ok || address == "" || network != "unix" && network != "tcp" {
		return "", "", fmt.Errorf("%w: %q", ErrBadAddress, addr)
	}
	if network == "tcp" {
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", fmt.Errorf("%w: %q: %v", ErrBadAddress, addr, err)
		}
	}
	if network == "unix" && len(address) > maxUnixPath {
		// The kernel would say only "invalid argument".
		return "", "", fmt.Errorf("%w: %q: a socket path has at most %d bytes", ErrBadAddress, addr, maxUnixPath)
	}
	return network, address, nil
}

// ErrCleartext refuses a TCP address off loopback without TLS: libhal's
// protocol carries PINs and keys in the clear.
var ErrCleartext = errors.New("libhal's protocol carries PINs in the clear: a TCP address off loopback needs TLS")

// IsLoopback reports whether a HOST:PORT address names the loopback
// interface, where what is sent in the clear stays on this machine.
func IsLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Dial connects to a server at addr (unix:PATH or tcp:HOST:PORT), over TLS
// when tlsConf is not nil, and learns whether it offers the extensions. It
// refuses a TCP address off loopback without TLS (ErrCleartext), as the
// server refuses to listen on one.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config) (*Client, error) {
	network, address, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	if network == "tcp" && tlsConf == nil && !IsLoopback(address) {
		return nil, fmt.Errorf("connect to %s: %w", addr, ErrCleartext)
	}
	var d net.Dialer
	var nc net.Conn
	if tlsConf != nil {
		nc, err = (&tls.Dialer{NetDialer: &d, Config: tlsConf}).DialContext(ctx, network, address)
	} else {
		nc, err = d.DialContext(ctx, network, address)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	c, err := NewClient(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return c, nil
}

// NewClient starts a client on an open connection.
func NewClient(nc net.Conn) (*Client, error) {
	c := &Client{nc: nc, fr: wire.NewFrameReader(nc, wire.MaxPacket), open: map[hsmapi.UUID]openKey{}}
	var v wire.GetVersionResponse
	if err := c.call(wire.FuncGetVersion, &wire.GetVersionRequest{}, &v); err != nil {
		return nil, err
	}
	var caps wire.ExtCapabilitiesResponse
	err := c.call(wire.FuncExtCapabilities, &wire.ExtCapabilitiesRequest{}, &caps)
	switch {
	case err == nil:
		c.ext = &caps
	case !errors.Is(err, wire.StatusRPCBadFunction):
		return nil, err
	}
	return c, nil
}

// Extended reports whether the server offers this package's extensions.
func (c *Client) Extended() bool { return c.ext != nil }

// call sends one request and waits for its answer. A FORBIDDEN answer
// from a server of extensions version 5 is followed, before any other
// request, by EXT_REFUSAL, which tells a refusal from a client not logged
// in (libhal has one status for both); from version 6 on, so is every
// failed answer of the master key's and stored keys' functions, which
// libhal has no statuses for.
func (c *Client) call(f wire.Func, req, resp wire.Args) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.exchange(f, req, resp)
	if err != nil {
		return err
	}
	if c.ext != nil && (st == wire.StatusForbidden && c.ext.Version >= 5 || st != wire.StatusOK && explained(f) && c.ext.Version >= 6) {
		var r wire.ExtRefusalResponse
		rst, err := c.exchange(wire.FuncExtRefusal, &wire.ExtRefusalRequest{}, &r)
		if err != nil {
			return err
		}
		if rst == wire.StatusOK {
			if err := explainedError(st, &r); err != nil {
				return err
			}
		}
	}
	return errorOf(st)
}

// exchange sends one request and reads its answer's status, skipping
// answers to other functions as libhal's clients do. Called with c.mu held.
func (c *Client) exchange(f wire.Func, req, resp wire.Args) (wire.Status, error) {
	lockassert.Held(&c.mu)
	if c.broken != nil {
		return 0, c.broken
	}
	payload := wire.EncodeRequest(f, 0, req)
	c.out = wire.AppendFrame(c.out[:0], payload)
	_, err := c.nc.Write(c.out)
	// LOGIN, SET_PIN, EXT_LOAD_SECRET and EXT_MASTERKEY_BACKUP requests carry
	// secrets.
	clear(payload)
	clear(c.out)
	if err != nil {
		return 0, c.fail(err)
	}
	for {
		frame, err := c.fr.ReadFrame()
		if err != nil {
			return 0, c.fail(err)
		}
		hdr, st, err := wire.DecodeResponse(frame, resp)
		if err != nil && hdr.Func == f {
			return 0, c.fail(err)
		}
		if hdr.Func != f {
			continue
		}
		return st, nil
	}
}

// fail marks the connection unusable: after a transport error, answers
// could no longer be matched to requests. Called with c.mu held.
func (c *Client) fail(err error) error {
	lockassert.Held(&c.mu)
	c.broken = fmt.Errorf("%w: %v", wire.StatusRPCTransport, err)
	c.nc.Close()
	return c.broken
}

// Close closes the connection; the server logs it out.
func (c *Client) Close() error {
	// Close first: a call in flight holds c.mu until its answer comes,
	// which may be never; closing makes its read fail at once.
	err := c.nc.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = fmt.Errorf("%w: client closed", wire.StatusRPCTransport)
	}
	return err
}

func (c *Client) Login(_ context.Context, user hsmapi.User, pin []byte) error {
	if err := c.call(wire.FuncLogin, &wire.LoginRequest{User: uint32(user), PIN: pin}, &wire.LoginResponse{}); err != nil {
		return fmt.Errorf("login as %s: %w", user, err)
	}
	return nil
}

// SetPIN is libhal's SET_PIN: the server decides who may set whose PIN.
func (c *Client) SetPIN(_ context.Context, user hsmapi.User, pin []byte) error {
	if err := c.call(wire.FuncSetPIN, &wire.SetPINRequest{User: uint32(user), PIN: pin}, &wire.SetPINResponse{}); err != nil {
		return fmt.Errorf("set PIN of %s: %w", user, err)
	}
	return nil
}

func (c *Client) Logout(context.Context) error {
	c.forgetAll()
	return c.call(wire.FuncLogout, &wire.LogoutRequest{}, &wire.LogoutResponse{})
}

func (c *Client) forgetAll() {
	c.keysMu.Lock()
	defer c.keysMu.Unlock()
	c.open = map[hsmapi.UUID]openKey{}
}

func (c *Client) forget(id hsmapi.UUID) {
	c.keysMu.Lock()
	defer c.keysMu.Unlock()
	delete(c.open, id)
}

// openKey returns a handle on a key, opening it the first time.
func (c *Client) openKey(id hsmapi.UUID) (openKey, error) {
	c.keysMu.Lock()
	k, ok := c.open[id]
	c.keysMu.Unlock()
	if ok {
		return k, nil
	}
	var r wire.PkeyOpenResponse
	if err := c.call(wire.FuncPkeyOpen, &wire.PkeyOpenRequest{UUID: id[:]}, &r); err != nil {
		return openKey{}, fmt.Errorf("open key %s: %w", id, err)
	}
	return c.remember(id, r.Pkey)
}

// remember keeps a new handle with the key's type and curve.
func (c *Client) remember(id hsmapi.UUID, handle uint32) (openKey, error) {
	k := openKey{handle: handle}
	var t wire.PkeyGetKeyTypeResponse
	var cv wire.PkeyGetKeyCurveResponse
	if err := c.call(wire.FuncPkeyGetKeyType, &wire.PkeyGetKeyTypeRequest{Pkey: handle}, &t); err != nil {
		return k, err
	}
	if err := c.call(wire.FuncPkeyGetKeyCurve, &wire.PkeyGetKeyCurveRequest{Pkey: handle}, &cv); err != nil {
		return k, err
	}
	k.typ, k.curve = hsmapi.KeyType(t.Type), hsmapi.Curve(cv.Curve)
	c.keysMu.Lock()
	defer c.keysMu.Unlock()
	c.open[id] = k
	return k, nil
}

func (c *Client) GenerateKey(_ context.Context, req hsmapi.GenerateRequest) (hsmapi.KeyInfo, error) {
	var r wire.PkeyGenerateRSAResponse // the three generate answers share a layout
	var err error
	switch req.Type {
	case hsmapi.KeyTypeRSAPrivate:
		err = c.call(wire.FuncPkeyGenerateRSA, &wire.PkeyGenerateRSARequest{KeyLen: uint32(req.Bits), Exponent: []byte{1, 0, 1}, Flags: uint32(req.Flags)}, &r)
	case hsmapi.KeyTypeECPrivate:
		err = c.call(wire.FuncPkeyGenerateEC, &wire.PkeyGenerateECRequest{Curve: uint32(req.Curve), Flags: uint32(req.Flags)}, &r)
	case hsmapi.KeyTypeHashsigPrivate:
		if len(req.Levels) == 0 {
			return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: no levels", hsmapi.ErrBadArguments)
		}
		for _, l := range req.Levels[1:] {
			if l != req.Levels[0] {
				return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: libhal's PKEY_GENERATE_HASHSIG gives every level the same types", hsmapi.ErrUnsupported)
			}
		}
		err = c.call(wire.FuncPkeyGenerateHashsig, &wire.PkeyGenerateHashsigRequest{L: uint32(len(req.Levels)),
			LMSType: uint32(req.Levels[0].LMS), LMOTSType: uint32(req.Levels[0].LMOTS), Flags: uint32(req.Flags)}, &r)
	default:
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: cannot generate %v", hsmapi.ErrBadArguments, req.Type)
	}
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	// libhal's generate takes no attributes: they follow in one
	// PKEY_SET_ATTRIBUTES, and the key is deleted should that fail (see
	// settle).
	id, err := c.settle(r.Pkey, r.UUID, labelAndAttributes(req.Label, req.Attributes))
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	return c.Key(bg, id)
}

func (c *Client) setLabel(handle uint32, label string) error {
	return c.call(wire.FuncPkeySetAttributes, &wire.PkeySetAttributesRequest{Pkey: handle,
		Attributes: []wire.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(label)}}}, &wire.PkeySetAttributesResponse{})
}

// Key describes a key, asking the server for each of its facts.
func (c *Client) Key(_ context.Context, id hsmapi.UUID) (hsmapi.KeyInfo, error) {
	k, err := c.openKey(id)
	if err != nil {
		return hsmapi.KeyInfo{}, err
	}
	if k.typ == hsmapi.KeyTypeAES {
		return c.secretKeyInfo(id, k)
	}
	var flags wire.PkeyGetKeyFlagsResponse
	var pub wire.PkeyGetPublicKeyResponse
	if err := c.call(wire.FuncPkeyGetKeyFlags, &wire.PkeyGetKeyFlagsRequest{Pkey: k.handle}, &flags); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("key %s: %w", id, err)
	}
	if err := c.call(wire.FuncPkeyGetPublicKey, &wire.PkeyGetPublicKeyRequest{Pkey: k.handle, Max: wire.MaxPacket - 64}, &pub); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("key %s: %w", id, err)
	}
	info, err := hsmapi.DescribePublicKey(pub.DER, k.typ.IsPrivate())
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("key %s: %w", id, err)
	}
	if info.Hashsig != nil {
		// libhal's functions carry an HSS key in libhal's encoding; this
		// side of the wire speaks RFC 9708.
		pk, err := hashsig.ParsePKIXPublicKey(pub.DER)
		if err != nil {
			return hsmapi.KeyInfo{}, fmt.Errorf("key %s: %w", id, err)
		}
		info.PublicKey = hashsig.MarshalPKIXPublicKey(pk)
	}
	info.UUID, info.Flags = id, hsmapi.Flags(flags.Flags)
	hss := info.Hashsig != nil && k.typ == hsmapi.KeyTypeHashsigPrivate
	types := []uint32{hsmapi.AttributeLabel}
	if hss {
		types = append(types, AttributeHashsigRemaining)
	}
	attrs, err := c.attributes(k.handle, types)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("key %s: %w", id, err)
	}
	info.Label = string(attrs[hsmapi.AttributeLabel])
	if hss {
		v := attrs[AttributeHashsigRemaining]
		info.Hashsig.RemainingUnknown = len(v) != 8
		if len(v) == 8 {
			info.Hashsig.Remaining = binary.BigEndian.Uint64(v)
		}
	}
	return info, nil
}

// SetAttributes sets and deletes attributes of a key (a Delete attribute
// goes as libhal's HAL_PKEY_ATTRIBUTE_NIL) with one PKEY_SET_ATTRIBUTES.
// This project's server stores them all or none, in one keystore write.
func (c *Client) SetAttributes(_ context.Context, id hsmapi.UUID, attrs []hsmapi.Attribute) error {
	k, err := c.openKey(id)
	if err != nil {
		return fmt.Errorf("set attributes: %w", err)
	}
	if err := c.call(wire.FuncPkeySetAttributes, &wire.PkeySetAttributesRequest{Pkey: k.handle, Attributes: wireAttributes(attrs)},
		&wire.PkeySetAttributesResponse{}); err != nil {
		return fmt.Errorf("set attributes of %s: %w", id, err)
	}
	return nil
}

// extAttributes reports whether the server answers EXT_GET_ATTRIBUTES.
func (c *Client) extAttributes() bool { return c.ext != nil && c.ext.Version >= 2 }

// attributes reads those of types that a key has, without an error for the
// ones it lacks: from this project's server every attribute in one
// EXT_GET_ATTRIBUTES (kept whole when types is nil); from a Cryptech HSM
// their lengths, then the values of those it has, with a buffer just that
// large (libhal puts the buffer on its stack). An attribute a Cryptech HSM
// holds empty reads as absent: its lengths cannot tell the two apart, and
// asking for each would cost a request per attribute.
func (c *Client) attributes(handle uint32, types []uint32) (map[uint32][]byte, error) {
	out := map[uint32][]byte{}
	if c.extAttributes() {
		var r wire.ExtGetAttributesResponse
		if err := c.call(wire.FuncExtGetAttributes, &wire.ExtGetAttributesRequest{Pkey: handle}, &r); err != nil {
			return nil, err
		}
		for _, a := range r.Attributes {
			if types == nil || slices.Contains(types, a.Type) {
				out[a.Type] = a.Value
			}
		}
		return out, nil
	}
	var lengths wire.PkeyGetAttributesResponse
	lengths.LengthsOnly = true
	err := c.call(wire.FuncPkeyGetAttributes, &wire.PkeyGetAttributesRequest{Pkey: handle, Types: types}, &lengths)
	if errors.Is(err, hsmapi.ErrAttributeNotFound) {
		return out, nil // libhal's answer for a key with no attributes at all
	}
	if err != nil {
		return nil, err
	}
	if len(lengths.Attributes) != len(types) {
		return nil, fmt.Errorf("%w: %d lengths for %d attributes", wire.StatusRPCProtocolError, len(lengths.Attributes), len(types))
	}
	var ask []uint32
	size := 0
	flush := func() error {
		if len(ask) == 0 {
			return nil
		}
		var r wire.PkeyGetAttributesResponse
		if err := c.call(wire.FuncPkeyGetAttributes, &wire.PkeyGetAttributesRequest{Pkey: handle, Types: ask, BufferLen: uint32(size)}, &r); err != nil {
			return err
		}
		if len(r.Attributes) != len(ask) {
			return fmt.Errorf("%w: %d values for %d attributes", wire.StatusRPCProtocolError, len(r.Attributes), len(ask))
		}
		for _, a := range r.Attributes {
			out[a.Type] = a.Value
		}
		ask, size = ask[:0], 0
		return nil
	}
	for _, a := range lengths.Attributes {
		if a.Length == 0 || a.Absent {
			continue
		}
		// One request's answer must fit in a packet, as libhal checks.
		if 4*(1+2*(len(ask)+1))+size+int(a.Length) > wire.MaxPacket-headerSize {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		ask = append(ask, a.Type)
		size += int(a.Length)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// libhalAttributeTypes are the attributes KeyAttributes asks a Cryptech HSM
// for, which cannot list a key's attributes: the PKCS#11 attributes that
// Cryptech's PKCS#11 library and this project's p11 store (but the label),
// and the public object's.
var libhalAttributeTypes = []uint32{
	hsmapi.CKAToken, hsmapi.CKAPrivate, hsmapi.CKATrusted, hsmapi.CKASubject, hsmapi.CKAID, hsmapi.CKASensitive,
	hsmapi.CKAEncrypt, hsmapi.CKADecrypt, hsmapi.CKAWrap, hsmapi.CKAUnwrap, hsmapi.CKASign, hsmapi.CKASignRecover,
	hsmapi.CKAVerify, hsmapi.CKAVerifyRecover, hsmapi.CKADerive, hsmapi.CKAStartDate, hsmapi.CKAEndDate,
	hsmapi.CKAExtractable, hsmapi.CKALocal, hsmapi.CKANeverExtractable, hsmapi.CKAAlwaysSensitive,
	hsmapi.CKAModifiable, hsmapi.CKACopyable, hsmapi.CKADestroyable, hsmapi.CKAAlwaysAuthenticate,
	hsmapi.CKAWrapWithTrusted, hsmapi.AttributePublicObject,
}

// KeyAttributes returns every attribute of a key but its label (and the
// remaining signatures this project's server tells), ordered by type:
// through EXT_GET_ATTRIBUTES, or from a Cryptech HSM those of
// libhalAttributeTypes it has, in two requests.
func (c *Client) KeyAttributes(_ context.Context, id hsmapi.UUID) ([]hsmapi.Attribute, error) {
	k, err := c.openKey(id)
	if err != nil {
		return nil, fmt.Errorf("get attributes: %w", err)
	}
	var types []uint32
	if !c.extAttributes() {
		types = libhalAttributeTypes
	}
	m, err := c.attributes(k.handle, types)
	if err != nil {
		return nil, fmt.Errorf("get attributes of %s: %w", id, err)
	}
	delete(m, hsmapi.AttributeLabel)
	delete(m, AttributeHashsigRemaining)
	out := make([]hsmapi.Attribute, 0, len(m))
	for _, t := range slices.Sorted(maps.Keys(m)) {
		out = append(out, hsmapi.Attribute{Type: t, Value: m[t]})
	}
	return out, nil
}

// matchPage is how many UUIDs one PKEY_MATCH asks for.
const matchPage = 64

// Keys asks a server of version 7 for the keys, described, with one
// EXT_LIST_KEYS and the downloads of its answer. From an older server or a
// Cryptech HSM it pages through PKEY_MATCH, then describes each key.
func (c *Client) Keys(ctx context.Context, f hsmapi.Filter) ([]hsmapi.KeyInfo, error) {
	var attrs []wire.Attribute
	for _, a := range f.Attributes {
		attrs = append(attrs, wire.Attribute{Type: a.Type, Value: a.Value})
	}
	if c.ext != nil && c.ext.Version >= 7 {
		return c.listKeys(f, attrs)
	}
	req := &wire.PkeyMatchRequest{Type: uint32(f.Type), Curve: uint32(f.Curve), Mask: uint32(f.Mask), Flags: uint32(f.Flags),
		Attributes: attrs, Max: matchPage, Previous: make([]byte, 16)}
	var ids []hsmapi.UUID
	for {
		var r wire.PkeyMatchResponse
		if err := c.call(wire.FuncPkeyMatch, req, &r); err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		for _, u := range r.UUIDs {
			id, err := uuidOf(u)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		if len(r.UUIDs) < matchPage {
			break
		}
		req.State, req.Previous = r.State, r.UUIDs[len(r.UUIDs)-1]
	}
	var out []hsmapi.KeyInfo
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		k, err := c.Key(ctx, id)
		if err != nil {
			return nil, err
		}
		if f.Matches(k) {
			out = append(out, k)
		}
	}
	return out, nil
}

// listKeys is Keys through EXT_LIST_KEYS, whose key list comes in UUID
// order, filtered by the server as Token.Keys filters.
func (c *Client) listKeys(f hsmapi.Filter, attrs []wire.Attribute) ([]hsmapi.KeyInfo, error) {
	c.xferMu.Lock()
	list, err := c.withDownload(wire.FuncExtListKeys, "list keys", &wire.ExtListKeysRequest{Type: uint32(f.Type),
		Curve: uint32(f.Curve), Mask: uint32(f.Mask), Flags: uint32(f.Flags), Attributes: attrs})
	c.xferMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	res, err := decodeKeyList(list)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var out []hsmapi.KeyInfo // nil for none, as in process
	for i, r := range res {
		if i > 0 && bytes.Compare(res[i-1].Key.UUID[:], r.Key.UUID[:]) >= 0 {
			return nil, fmt.Errorf("list keys: %w: key %s out of UUID order", wire.StatusRPCProtocolError, r.Key.UUID)
		}
		if !f.Matches(r.Key) {
			return nil, fmt.Errorf("list keys: %w: key %s does not match the filter", wire.StatusRPCProtocolError, r.Key.UUID)
		}
		out = append(out, r.Key)
	}
	return out, nil
}

func (c *Client) DeleteKey(_ context.Context, id hsmapi.UUID) error {
	k, err := c.openKey(id)
	if err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	if err := c.call(wire.FuncPkeyDelete, &wire.PkeyDeleteRequest{Pkey: k.handle}, &wire.PkeyDeleteResponse{}); err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	c.forget(id)
	return nil
}

// signedData is what PKEY_SIGN and PKEY_VERIFY carry without a hash handle:
// the DigestInfo for RSA, the digest for ECDSA, the message for HSS.
func signedData(k openKey, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		return nil, fmt.Errorf("%w: no hash given", hsmapi.ErrBadArguments)
	}
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return nil, fmt.Errorf("%w: libhal signs RSA with PKCS#1 v1.5 only", hsmapi.ErrUnsupported)
	}
	if k.typ == hsmapi.KeyTypeRSAPrivate || k.typ == hsmapi.KeyTypeRSAPublic {
		if opts.HashFunc() == 0 {
			return digest, nil
		}
		return digestInfoDER(opts.HashFunc(), digest)
	}
	return digest, nil
}

func (c *Client) Sign(_ context.Context, id hsmapi.UUID, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k, err := c.openKey(id)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	data, err := signedData(k, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", id, err)
	}
	var r wire.PkeySignResponse
	if err := c.call(wire.FuncPkeySign, &wire.PkeySignRequest{Pkey: k.handle, Data: data, Max: wire.MaxPacket - 64}, &r); err != nil {
		return nil, fmt.Errorf("sign with %s: %w", id, err)
	}
	if k.curve != hsmapi.CurveNone {
		return ecdsaRawToDER(r.Signature, curveSize(k.curve))
	}
	return r.Signature, nil
}

func (c *Client) Verify(_ context.Context, id hsmapi.UUID, digest, sig []byte, opts crypto.SignerOpts) error {
	k, err := c.openKey(id)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	data, err := signedData(k, digest, opts)
	if err != nil {
		return fmt.Errorf("verify with %s: %w", id, err)
	}
	if k.curve != hsmapi.CurveNone {
		if sig, err = ecdsaDERToRaw(sig, curveSize(k.curve)); err != nil {
			return err
		}
	}
	if err := c.call(wire.FuncPkeyVerify, &wire.PkeyVerifyRequest{Pkey: k.handle, Data: data, Signature: sig}, &wire.PkeyVerifyResponse{}); err != nil {
		return fmt.Errorf("verify with %s: %w", id, err)
	}
	return nil
}

// maxRandom is the most GET_RANDOM answers at once: what fits in a packet
// after the header and the length, as the server checks.
const maxRandom = wire.MaxPacket - headerSize - 4

// Random fills p from the server's TRNG with GET_RANDOM (libhal's function
// 1, which needs no login), a packet's worth at a time.
func (c *Client) Random(_ context.Context, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxRandom)
		var r wire.GetRandomResponse
		if err := c.call(wire.FuncGetRandom, &wire.GetRandomRequest{N: uint32(n)}, &r); err != nil {
			return fmt.Errorf("random: %w", err)
		}
		if len(r.Data) != n {
			return fmt.Errorf("random: %w: %d bytes asked, %d given", wire.StatusRPCProtocolError, n, len(r.Data))
		}
		copy(p, r.Data)
		p = p[n:]
	}
	return nil
}

// DamagedBlocks asks an extended server for its flash blocks that failed
// their CRC; a plain libhal server cannot tell, and none are reported.
func (c *Client) DamagedBlocks(context.Context) ([]int, error) {
	if c.ext == nil {
		return nil, nil
	}
	var r wire.ExtDamagedResponse
	if err := c.call(wire.FuncExtDamaged, &wire.ExtDamagedRequest{}, &r); err != nil {
		return nil, fmt.Errorf("damaged blocks: %w", err)
	}
	blocks := make([]int, len(r.Blocks))
	for i, b := range r.Blocks {
		blocks[i] = int(b)
	}
	return blocks, nil
}

// Identity asks an extended server (version 3) what its HSM is; a plain
// libhal server cannot tell (hsmapi.ErrUnsupported).
func (c *Client) Identity(context.Context) (hsmapi.Identity, error) {
	if c.ext == nil || c.ext.Version < 3 {
		return hsmapi.Identity{}, fmt.Errorf("identity: %w: the server cannot tell", hsmapi.ErrUnsupported)
	}
	var r wire.ExtIdentityResponse
	if err := c.call(wire.FuncExtIdentity, &wire.ExtIdentityRequest{}, &r); err != nil {
		return hsmapi.Identity{}, fmt.Errorf("identity: %w", err)
	}
	return hsmapi.Identity{Manufacturer: r.Manufacturer, Model: r.Model, Serial: r.Serial, Label: r.Label}, nil
}

// KEKEncryptions: what the extensions report, or libhal's one.
func (c *Client) KEKEncryptions(context.Context) ([]hsmapi.KEKEncryption, error) {
	if c.ext == nil {
		return []hsmapi.KEKEncryption{hsmapi.KEKPKCS1v15}, nil
	}
	var out []hsmapi.KEKEncryption
	for _, s := range c.ext.KEKEncryptions {
		if e, err := hsmapi.ParseKEKEncryption(s); err == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// errLibhalOnly explains what a plain libhal server cannot do.
var errLibhalOnly = fmt.Errorf("%w: this HSM speaks libhal's RPC only (PKCS#1 v1.5 KEKs, no tags, fresh UUIDs on import)", hsmapi.ErrUnsupported)

func (c *Client) Export(_ context.Context, req hsmapi.ExportRequest) (hsmapi.WrappedKey, error) {
	kekek, err := req.KEKEK()
	if err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("export %s: %w", req.Key, err)
	}
	k, err := c.openKey(req.Key)
	if err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("export: %w", err)
	}
	if c.ext != nil {
		var r wire.ExtExportResponse
		err := c.call(wire.FuncExtExport, &wire.ExtExportRequest{Pkey: k.handle, KEKEK: kekek.SPKI(), Encryption: string(req.Encryption), Binding: req.Binding}, &r)
		if err != nil {
			return hsmapi.WrappedKey{}, fmt.Errorf("export %s: %w", req.Key, err)
		}
		w := hsmapi.WrappedKey{EncryptedKey: r.PKCS8, EncryptedKEK: r.KEK}
		if req.Binding != nil {
			w.Tag = r.Tag
		}
		return w, nil
	}
	if req.Encryption != hsmapi.KEKPKCS1v15 || req.Binding != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("export %s: %w", req.Key, errLibhalOnly)
	}
	// libhal's way: load the KEKEK as a volatile public key, export, delete it.
	var loaded wire.PkeyLoadResponse
	if err := c.call(wire.FuncPkeyLoad, &wire.PkeyLoadRequest{DER: kekek.SPKI(), Flags: uint32(hsmapi.FlagKeyEncipherment)}, &loaded); err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("export %s: load KEKEK: %w", req.Key, err)
	}
	defer c.call(wire.FuncPkeyDelete, &wire.PkeyDeleteRequest{Pkey: loaded.Pkey}, &wire.PkeyDeleteResponse{})
	var r wire.PkeyExportResponse
	if err := c.call(wire.FuncPkeyExport, &wire.PkeyExportRequest{Pkey: k.handle, KEKEK: loaded.Pkey, PKCS8Max: wire.MaxPacket / 2, KEKMax: wire.MaxPacket / 4}, &r); err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("export %s: %w", req.Key, err)
	}
	return hsmapi.WrappedKey{EncryptedKey: r.PKCS8, EncryptedKEK: r.KEK}, nil
}

// Import stores one key: through the extensions, a batch of one; through
// libhal's functions, PKEY_LOAD or PKEY_IMPORT, which give it a new UUID.
func (c *Client) Import(ctx context.Context, req hsmapi.ImportRequest) (hsmapi.ImportResult, error) {
	if c.ext != nil {
		res, err := c.ImportBatch(ctx, []hsmapi.ImportRequest{req})
		if err != nil {
			return hsmapi.ImportResult{}, err
		}
		return res[0], nil
	}
	var pkey uint32
	var uuid []byte
	if len(req.Wrapped.EncryptedKey) == 0 {
		var r wire.PkeyLoadResponse
		if err := c.call(wire.FuncPkeyLoad, &wire.PkeyLoadRequest{DER: req.PublicKey, Flags: uint32(req.Flags)}, &r); err != nil {
			return hsmapi.ImportResult{}, fmt.Errorf("import: %w", err)
		}
		pkey, uuid = r.Pkey, r.UUID
	} else {
		if req.Encryption != hsmapi.KEKPKCS1v15 || req.Binding != nil {
			return hsmapi.ImportResult{}, fmt.Errorf("import: %w", errLibhalOnly)
		}
		kekek, err := c.openKey(req.KEKEKUUID)
		if err != nil {
			return hsmapi.ImportResult{}, fmt.Errorf("import: KEKEK: %w", err)
		}
		var r wire.PkeyImportResponse
		if err := c.call(wire.FuncPkeyImport, &wire.PkeyImportRequest{KEKEK: kekek.handle, PKCS8: req.Wrapped.EncryptedKey, KEK: req.Wrapped.EncryptedKEK, Flags: uint32(req.Flags)}, &r); err != nil {
			return hsmapi.ImportResult{}, fmt.Errorf("import: %w", err)
		}
		pkey, uuid = r.Pkey, r.UUID
	}
	// Never CKA_LOCAL: a Cryptech HSM stores no such thing of an imported
	// key, whatever the key left with (this project's server also says so
	// itself).
	attrs := slices.DeleteFunc(slices.Clone(req.Attributes), func(a hsmapi.Attribute) bool { return a.Type == hsmapi.CKALocal })
	attrs = append(attrs, hsmapi.Attribute{Type: hsmapi.CKALocal, Value: []byte{0}})
	id, err := c.settle(pkey, uuid, labelAndAttributes(req.Label, attrs))
	if err != nil {
		return hsmapi.ImportResult{}, fmt.Errorf("import: %w", err)
	}
	k, err := c.Key(ctx, id)
	return hsmapi.ImportResult{Key: k}, err
}

// settle finishes a key that PKEY_LOAD, PKEY_IMPORT or a generate made: sets its label
// and attributes with one PKEY_SET_ATTRIBUTES and keeps its handle. Should
// that fail the key is deleted again, rather than stay without them. (Two
// requests, not one atomic step: a crash between them leaves the key
// without its attributes, which libhal's functions cannot avoid.)
func (c *Client) settle(pkey uint32, uuid []byte, attrs []wire.Attribute) (hsmapi.UUID, error) {
	id, err := uuidOf(uuid)
	if err == nil && len(attrs) > 0 {
		err = c.call(wire.FuncPkeySetAttributes, &wire.PkeySetAttributesRequest{Pkey: pkey, Attributes: attrs}, &wire.PkeySetAttributesResponse{})
	}
	if err == nil {
		_, err = c.remember(id, pkey)
	}
	if err != nil {
		c.call(wire.FuncPkeyDelete, &wire.PkeyDeleteRequest{Pkey: pkey}, &wire.PkeyDeleteResponse{})
		c.forget(id)
		return hsmapi.UUID{}, err
	}
	return id, nil
}

// labelAndAttributes is what PKEY_SET_ATTRIBUTES sets on a new key.
func labelAndAttributes(label string, attrs []hsmapi.Attribute) []wire.Attribute {
	var out []wire.Attribute
	if label != "" {
		out = append(out, wire.Attribute{Type: hsmapi.AttributeLabel, Value: []byte(label)})
	}
	return append(out, wireAttributes(attrs)...)
}

// ImportBatch imports every key in one server-side keystore transaction,
// through the extensions; a plain libhal server cannot (ErrUnsupported).
func (c *Client) ImportBatch(ctx context.Context, reqs []hsmapi.ImportRequest) ([]hsmapi.ImportResult, error) {
	if c.ext == nil {
		return nil, fmt.Errorf("import: %w", errLibhalOnly)
	}
	if len(reqs) == 0 {
		return nil, nil
	}
	// A zero UUID asks for a fresh one (hsmapi.ImportRequest): the client
	// draws it, since EXT_IMPORT_COMMIT tells no UUIDs back.
	reqs = slices.Clone(reqs)
	for i := range reqs {
		if reqs[i].UUID.IsZero() {
			id, err := hsmapi.NewUUID(nil)
			if err != nil {
				return nil, fmt.Errorf("import: %w", err)
			}
			reqs[i].UUID = id
		}
	}
	var begin wire.ExtImportBeginResponse
	kekek := reqs[0].KEKEKUUID
	if err := c.call(wire.FuncExtImportBegin, &wire.ExtImportBeginRequest{KEKEK: kekek[:]}, &begin); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	for i, req := range reqs {
		if req.KEKEKUUID != kekek && len(req.Wrapped.EncryptedKey) > 0 {
			return nil, fmt.Errorf("import: %w: one batch, one KEKEK", hsmapi.ErrBadArguments)
		}
		add := wire.ExtImportAddRequest{Batch: begin.Batch, UUID: req.UUID[:], Label: req.Label, Flags: uint32(req.Flags),
			Encryption: string(req.Encryption), PKCS8: req.Wrapped.EncryptedKey, KEK: req.Wrapped.EncryptedKEK, Tag: req.Wrapped.Tag,
			Binding: req.Binding, SPKI: req.PublicKey}
		var err error
		switch {
		case len(req.Attributes) == 0:
			err = c.call(wire.FuncExtImportAdd, &add, &wire.ExtImportAddResponse{})
		case c.ext.Version < 2:
			// Never a key without the attributes it left with.
			err = fmt.Errorf("%w: this server's import extension (version %d) cannot carry key attributes", hsmapi.ErrUnsupported, c.ext.Version)
		default:
			err = c.call(wire.FuncExtImportAdd2, &wire.ExtImportAdd2Request{ExtImportAddRequest: add, Attributes: labelAndAttributes("", req.Attributes)}, &wire.ExtImportAddResponse{})
		}
		if err != nil {
			return nil, fmt.Errorf("import key %d (%s): %w", i, req.UUID, err)
		}
	}
	var commit wire.ExtImportCommitResponse
	if err := c.call(wire.FuncExtImportCommit, &wire.ExtImportCommitRequest{Batch: begin.Batch}, &commit); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if len(commit.Present) != len(reqs) {
		return nil, fmt.Errorf("import: %w: %d results for %d keys", wire.StatusRPCProtocolError, len(commit.Present), len(reqs))
	}
	out := make([]hsmapi.ImportResult, len(reqs))
	for i, req := range reqs {
		k, err := c.Key(ctx, req.UUID)
		if err != nil {
			return nil, err
		}
		out[i] = hsmapi.ImportResult{Key: k, Present: commit.Present[i]}
	}
	return out, nil
}

// LoadPrivateKey stores a private key given in the clear with PKEY_LOAD, as
// libhal's clients do, then sets its label and attributes (see settle; a
// key loaded this way is a soft KEKEK for one import, volatile, so a crash
// between the two requests leaves nothing behind). The key is marked not
// made in the HSM (CKA_LOCAL false) unless req.Attributes say otherwise:
// this project's server does that itself, a Cryptech HSM does not.
func (c *Client) LoadPrivateKey(ctx context.Context, req hsmapi.LoadRequest) (hsmapi.KeyInfo, error) {
	attrs, err := loadAttributes(req, c.ext == nil)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	var r wire.PkeyLoadResponse
	if err := c.call(wire.FuncPkeyLoad, &wire.PkeyLoadRequest{DER: req.PKCS8, Flags: uint32(req.Flags)}, &r); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	id, err := c.settle(r.Pkey, r.UUID, attrs)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	return c.Key(ctx, id)
}

// loadAttributes is what LoadPrivateKey sets after PKEY_LOAD: the label, the
// attributes asked for and, when markLocal, CKA_LOCAL false unless asked
// otherwise.
func loadAttributes(req hsmapi.LoadRequest, markLocal bool) ([]wire.Attribute, error) {
	if err := hsmapi.CheckLabel(req.Label); err != nil {
		return nil, err
	}
	local := false
	for _, a := range req.Attributes {
		if a.Type == hsmapi.AttributeLabel || a.Delete {
			return nil, fmt.Errorf("%w: attribute 0x%x: the label is Label, and a new key has nothing to delete", hsmapi.ErrBadArguments, a.Type)
		}
		local = local || a.Type == hsmapi.CKALocal
	}
	out := labelAndAttributes(req.Label, req.Attributes)
	if markLocal && !local {
		out = append(out, wire.Attribute{Type: hsmapi.CKALocal, Value: []byte{0}})
	}
	return out, nil
}
