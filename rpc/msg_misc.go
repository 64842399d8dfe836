package rpc

// This file holds the arguments and results of the miscellaneous functions
// (0 to 6): version, random numbers, PINs and login state. Each type lists
// what follows func and client on the wire (and, for a response, status).

// GetVersionRequest is GET_VERSION's request; it has no arguments.
type GetVersionRequest struct{}

func (*GetVersionRequest) EncodeArgs(*Encoder)         {}
func (*GetVersionRequest) DecodeArgs(d *Decoder) error { return d.Err() }

// GetVersionResponse is GET_VERSION's result: uint version (libhal answers
// 0x01010100).
type GetVersionResponse struct {
	Version uint32
}

func (m *GetVersionResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Version) }
func (m *GetVersionResponse) DecodeArgs(d *Decoder) error {
	m.Version = d.Uint32()
	return d.Err()
}

// GetRandomRequest is GET_RANDOM's argument: uint n, the number of bytes
// wanted.
type GetRandomRequest struct {
	N uint32
}

func (m *GetRandomRequest) EncodeArgs(e *Encoder) { e.Uint32(m.N) }
func (m *GetRandomRequest) DecodeArgs(d *Decoder) error {
	m.N = d.Uint32()
	return d.Err()
}

// GetRandomResponse is GET_RANDOM's result: bytes data.
type GetRandomResponse struct {
	Data []byte
}

func (m *GetRandomResponse) EncodeArgs(e *Encoder) { e.Bytes(m.Data) }
func (m *GetRandomResponse) DecodeArgs(d *Decoder) error {
	m.Data = d.Bytes(MaxPacket)
	return d.Err()
}

// SetPINRequest is SET_PIN's arguments: uint user, bytes pin.
type SetPINRequest struct {
	User uint32
	PIN  []byte
}

func (m *SetPINRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.User)
	e.Bytes(m.PIN)
}
func (m *SetPINRequest) DecodeArgs(d *Decoder) error {
	m.User = d.Uint32()
	m.PIN = d.Bytes(MaxPacket)
	return d.Err()
}

// SetPINResponse is SET_PIN's (empty) result.
type SetPINResponse struct{}

func (*SetPINResponse) EncodeArgs(*Encoder)         {}
func (*SetPINResponse) DecodeArgs(d *Decoder) error { return d.Err() }

// LoginRequest is LOGIN's arguments: uint user, bytes pin.
type LoginRequest struct {
	User uint32
	PIN  []byte
}

func (m *LoginRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.User)
	e.Bytes(m.PIN)
}
func (m *LoginRequest) DecodeArgs(d *Decoder) error {
	m.User = d.Uint32()
	m.PIN = d.Bytes(MaxPacket)
	return d.Err()
}

// LoginResponse is LOGIN's (empty) result.
type LoginResponse struct{}

func (*LoginResponse) EncodeArgs(*Encoder)         {}
func (*LoginResponse) DecodeArgs(d *Decoder) error { return d.Err() }

// LogoutRequest is LOGOUT's request; it has no arguments (the client field
// of the header says who logs out).
type LogoutRequest struct{}

func (*LogoutRequest) EncodeArgs(*Encoder)         {}
func (*LogoutRequest) DecodeArgs(d *Decoder) error { return d.Err() }

// LogoutResponse is LOGOUT's (empty) result.
type LogoutResponse struct{}

func (*LogoutResponse) EncodeArgs(*Encoder)         {}
func (*LogoutResponse) DecodeArgs(d *Decoder) error { return d.Err() }

// LogoutAllRequest is LOGOUT_ALL's request; it has no arguments.
type LogoutAllRequest struct{}

func (*LogoutAllRequest) EncodeArgs(*Encoder)         {}
func (*LogoutAllRequest) DecodeArgs(d *Decoder) error { return d.Err() }

// LogoutAllResponse is LOGOUT_ALL's (empty) result.
type LogoutAllResponse struct{}

func (*LogoutAllResponse) EncodeArgs(*Encoder)         {}
func (*LogoutAllResponse) DecodeArgs(d *Decoder) error { return d.Err() }

// IsLoggedInRequest is IS_LOGGED_IN's argument: uint user.
type IsLoggedInRequest struct {
	User uint32
}

func (m *IsLoggedInRequest) EncodeArgs(e *Encoder) { e.Uint32(m.User) }
func (m *IsLoggedInRequest) DecodeArgs(d *Decoder) error {
	m.User = d.Uint32()
	return d.Err()
}

// IsLoggedInResponse is IS_LOGGED_IN's (empty) result: the status is the
// answer, OK when the user is logged in and [StatusForbidden] otherwise.
type IsLoggedInResponse struct{}

func (*IsLoggedInResponse) EncodeArgs(*Encoder)         {}
func (*IsLoggedInResponse) DecodeArgs(d *Decoder) error { return d.Err() }
