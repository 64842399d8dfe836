// Package hsmapi is the seam between what moves keys and what holds them:
// the [Token] contract, roughly libhal's pkey API keyed by UUID, with its
// optional interfaces ([BatchImporter], [AttributeReader],
// [PrivateKeyLoader], [DamageReporter], [UnreadableReporter]), the request
// and result types, the sentinel errors callers branch on, and the transfer
// encodings every backend must write and read alike (the encrypted KEK and
// the wrapped key, both EncryptedPrivateKeyInfo; the PKCS#11 attribute
// numbers keys carry).
//
// Three backends implement it, none importing another: hsm.Session (the
// emulated Cryptech HSM), rpc.Client (a libhal HSM over its RPC protocol)
// and p11.Token (a PKCS#11 token). Each states with var _ hsmapi.X = ...
// every interface it implements. Package backup, and anything else that
// must run on any backend, imports this package and none of them.
//
// It imports nothing of the emulator (hsm, keystore, sim): a test checks
// that. Capabilities still to come are declared here as further optional
// interfaces, beside the ones above: storing and restoring the master key
// outside the HSM, and exporting one key to several recipients' KEKEKs.
package hsmapi
