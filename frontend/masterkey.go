package frontend

import "github.com/hsmkit/cryptech-backup/hsmapi"

// MasterKeyKeeper is the client's token as a keeper of its master key, or
// an error wrapping hsmapi.ErrUnsupported. The token checks the login
// (the security officer or wheel) itself.
func (c *Client) MasterKeyKeeper() (hsmapi.MasterKeyKeeper, error) {
	return tokenAs[hsmapi.MasterKeyKeeper](c, "manage the master key")
}

// KeyStorer is the client's token as a storer of keys outside it, or an
// error wrapping hsmapi.ErrUnsupported.
func (c *Client) KeyStorer() (hsmapi.KeyStorer, error) {
	return tokenAs[hsmapi.KeyStorer](c, "store keys outside the HSM")
}
