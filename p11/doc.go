// Package p11 is an hsm.Token on a PKCS#11 token: SoftHSM2, or a real HSM,
// through github.com/ThalesIgnite/crypto11 (sessions, key generation,
// lookup, signing) and github.com/miekg/pkcs11 where crypto11 stops
// (C_WrapKey, C_UnwrapKey, attributes, mechanism lists).
//
// Keys are named by CKA_ID: a key whose CKA_ID is 16 bytes has that UUID;
// another key gets a UUID derived from its CKA_ID. Key flags map to
// attributes: exportable is CKA_EXTRACTABLE, token CKA_TOKEN,
// digitalsignature CKA_SIGN, keyencipherment CKA_UNWRAP, dataencipherment
// CKA_DECRYPT.
//
// A transfer does on the token what the emulated HSM does inside: an
// AES-256 session key is the transit KEK (CKM_AES_KEY_GEN), the private key
// is wrapped under it with CKM_AES_KEY_WRAP_PAD, and the KEK is wrapped to
// the KEKEK with CKM_RSA_PKCS_OAEP (SHA-256 or SHA-1, whichever the token
// does; CKM_RSA_PKCS only when asked). The bundle's tag is made the same way:
// the digest of its binding, as a generic secret session object, wrapped
// under the KEK. Imported private keys are CKA_TOKEN, CKA_PRIVATE and
// CKA_SENSITIVE, extractable only when the bundle says exportable, and get a
// public key object beside them. CKM_RSA_AES_KEY_WRAP, which does both wraps
// in one call, is not used even where a token offers it: it never shows the
// KEK as an object, so no tag could be made or checked under it.
//
// LoadPrivateKey takes an RSA private key in the clear with C_CreateObject,
// as a session object that only unwraps: the soft KEKEK of a bundle, for the
// length of one import (load.go).
//
// A token has no transactions: an import is one key after another, rolled
// back by package backup when one fails; a crash in between can leave some
// keys on the token. HSS keys are not supported on PKCS#11 tokens.
package p11
