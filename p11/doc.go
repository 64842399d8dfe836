// Package p11 is an hsmapi.Token on a PKCS#11 token: SoftHSM2, a real HSM,
// or the emulated HSM's own module (cmd/cryptech-pkcs11), through github.com/ThalesIgnite/crypto11 (login and sessions) and
// github.com/miekg/pkcs11 for the rest: crypto11 finds a key pair by CKA_ID
// alone, which several keys may share.
//
// A key is a private key object and the public key object that is its
// half, paired by CKA_ID and public key (several keys may share a CKA_ID),
// or either alone. Keys this package cannot use are left out of Keys and
// named by UnusableKeys. A key whose CKA_ID is 16 bytes, shared with no other
// key, has that UUID; every other key a UUID derived from its CKA_ID and
// public key. Key flags are those of the private object (of the public
// object alone): exportable is CKA_EXTRACTABLE, token CKA_TOKEN,
// digitalsignature CKA_SIGN (CKA_VERIFY), keyencipherment CKA_UNWRAP
// (CKA_WRAP), dataencipherment CKA_DECRYPT (CKA_ENCRYPT).
//
// Keys carry their PKCS#11 attributes (hsmapi.AttributeReader): export reads
// every usage and policy attribute of both objects, import sets exactly
// those, or, for a key that never was on a token, exactly what its flags
// grant.
//
// A transfer does on the token what the emulated HSM does inside: an
// AES-256 session key is the transit KEK (CKM_AES_KEY_GEN), the private key
// is wrapped under it with CKM_AES_KEY_WRAP_PAD, and the KEK is wrapped to
// the KEKEK with CKM_RSA_PKCS_OAEP (SHA-256 or SHA-1, whichever the token
// does; CKM_RSA_PKCS only when asked). The bundle's tag is made the same way:
// the digest of its binding, as an AES-256 session object that does nothing
// but be wrapped, wrapped under the KEK, and an import checks it by making
// it again and comparing. An imported private key is made as a session
// object first, then copied to the token (C_CopyObject), or made again as a
// token object where the token copies no private key. The emulated HSM's
// module (known by C_GetInfo's manufacturer) keeps a key pair as one key
// and makes the public object with the private one: there the key is
// unwrapped once, as a token object, with the bundle's public attributes
// in the same C_UnwrapKey (the module's attribute 0xC7B50002,
// hsmapi.AttributePublicObject), so that those PKCS#11 sets only when an
// object is made (a public object's CKA_PRIVATE true, CKA_MODIFIABLE
// false) arrive too, stored with the key in one write.
// The KEKEK that setup makes (GenerateKEKEK) only unwraps, and forces what
// it unwraps to stay secret; KEKEKFlaws tells setup how an existing key
// falls short of that (it reads the key's CKA_UNWRAP_TEMPLATE back with
// C_GetAttributeValue itself: template.go). CKM_RSA_AES_KEY_WRAP, which does both wraps
// in one call, is not used even where a token offers it: it never shows the
// KEK as an object, so no tag could be made or checked under it.
//
// LoadPrivateKey takes an RSA private key in the clear with C_CreateObject,
// as a session object that only unwraps: the soft KEKEK of a bundle, for the
// length of one import (load.go).
//
// External storage (hsmapi.KeyStorer, store.go): a token has no master key,
// so keys are wrapped for storage outside it under a storage key object on
// it, an AES-256 token key that only wraps and unwraps and is never
// extractable, made on the first store; the file's tag is made as a
// transfer's is, under that key, and a restore imports each key as Import
// does, under that key instead of a KEK. Only extractable keys can be
// stored, and no HSS key (docs/stored-keys.md, "On a PKCS#11 token").
//
// A token has no transactions: an import is one key after another, rolled
// back by package backup when one fails; a crash in between can leave some
// keys on the token.
//
// HSS keys (PKCS#11 3.1's CKK_HSS) are keys of this package on a token that
// offers CKM_HSS, the emulated HSM's module: listed with their public key,
// levels and signatures left, made, signing, exported and imported as
// above. The token splits an HSS key when it wraps it and refuses a part
// it received before, so an import unwraps it once only, as the token
// object, and matches its public key without signing (hss.go). A token
// without CKM_HSS (SoftHSM2) is asked for none, and an HSS key is refused
// for it (hsmapi.ErrUnsupported).
package p11
