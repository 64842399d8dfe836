# Bad input from C's side, through every function the module implements:
# before C_Initialize, NULL pointers, slots, sessions and objects that are
# not (or no longer) there, operations in the wrong state, short output
# buffers, mechanisms and attributes the module lacks, a template that
# contradicts itself. Each call must answer the specification's CKR_ code
# (and the process live on); every mismatch is reported, not only the
# first. Run by TestBadInputFromC as: python3 badinput.py MODULE (with
# $CRYPTECH_HSM set); prints "ok" or fails.
import ctypes as C
import sys

OK, SLOT_ID_INVALID, ARGUMENTS_BAD = 0, 3, 7
ATTRIBUTE_TYPE_INVALID, DATA_LEN_RANGE = 0x12, 0x21
KEY_HANDLE_INVALID, KEY_TYPE_INCONSISTENT, KEY_FUNCTION_NOT_PERMITTED = 0x60, 0x63, 0x68
MECHANISM_INVALID, OBJECT_HANDLE_INVALID = 0x70, 0x82
OPERATION_ACTIVE, OPERATION_NOT_INITIALIZED = 0x90, 0x91
SESSION_HANDLE_INVALID, SESSION_READ_ONLY = 0xB3, 0xB5
SIGNATURE_INVALID, SIGNATURE_LEN_RANGE = 0xC0, 0xC1
TEMPLATE_INCONSISTENT, UNWRAPPING_KEY_HANDLE_INVALID = 0xD1, 0xF0
USER_NOT_LOGGED_IN, WRAPPING_KEY_HANDLE_INVALID = 0x101, 0x113
BUFFER_TOO_SMALL, NOT_INITIALIZED = 0x150, 0x190
UNAVAILABLE = 2**64 - 1

CKF_SERIAL, CKF_RW = 4, 2
CKO_PUBLIC_KEY, CKO_SECRET_KEY = 2, 4
CKA_CLASS, CKA_TOKEN, CKA_LABEL, CKA_KEY_TYPE, CKA_VALUE_LEN = 0, 1, 3, 0x100, 0x161
CKA_WRAP, CKA_UNWRAP, CKA_EC_PARAMS, CKA_EXTRACTABLE = 0x106, 0x107, 0x180, 0x162
CKA_UNKNOWN = 0x7fff1234  # no attribute has this type
CKM_SHA256, CKM_ECDSA_SHA256, CKM_EC_KEY_PAIR_GEN = 0x250, 0x1044, 0x1040
CKM_AES_KEY_GEN, CKM_AES_KEY_WRAP_KWP, CKM_UNKNOWN = 0x1080, 0x210B, 0x7fff4321
NO_SESSION, NO_OBJECT, NO_SLOT = 0x7777777, 0x7777777, 0x7777777

lib = C.CDLL(sys.argv[1])
U = C.c_ulong
failures = []


def want(what, got, expected):
    if got != expected:
        failures.append("%s: got %#x, want %#x" % (what, got, expected))


class Attribute(C.Structure):
    _fields_ = [("type", U), ("value", C.c_void_p), ("len", U)]


class Mechanism(C.Structure):
    _fields_ = [("mechanism", U), ("param", C.c_void_p), ("len", U)]


keep = []


def attrs(*pairs):
    arr = (Attribute * max(len(pairs), 1))()
    for a, (t, v) in zip(arr, pairs):
        a.type = t
        if isinstance(v, int):
            v = v.to_bytes(8, sys.byteorder) if v > 1 or t in (CKA_CLASS, CKA_KEY_TYPE, CKA_VALUE_LEN) else bytes([v])
        if v is not None:
            buf = C.create_string_buffer(v, len(v))
            keep.append(buf)
            a.value, a.len = C.cast(buf, C.c_void_p), len(v)
    return arr, U(len(pairs))


def mech(m):
    x = Mechanism(m, None, 0)
    keep.append(x)
    return C.byref(x)


class OAEPParams(C.Structure):
    _fields_ = [("hash", U), ("mgf", U), ("source", U), ("data", C.c_void_p), ("len", U)]


oaep_params = OAEPParams(0x250, 2, 1, None, 0)  # SHA-256, MGF1-SHA256, no label
oaep = Mechanism(0x9, C.cast(C.byref(oaep_params), C.c_void_p), C.sizeof(OAEPParams))


out, n = C.create_string_buffer(4096), U(4096)
h1, h2 = U(), U()
data = b"bad input"
ld = U(len(data))

# Every function before C_Initialize.
for name, call in [
    ("C_Finalize", lambda: lib.C_Finalize(None)),
    ("C_GetInfo", lambda: lib.C_GetInfo(out)),
    ("C_GetSlotList", lambda: lib.C_GetSlotList(C.c_ubyte(0), None, C.byref(n))),
    ("C_GetSlotInfo", lambda: lib.C_GetSlotInfo(U(0), out)),
    ("C_GetTokenInfo", lambda: lib.C_GetTokenInfo(U(0), out)),
    ("C_GetMechanismList", lambda: lib.C_GetMechanismList(U(0), None, C.byref(n))),
    ("C_GetMechanismInfo", lambda: lib.C_GetMechanismInfo(U(0), U(CKM_SHA256), out)),
    ("C_OpenSession", lambda: lib.C_OpenSession(U(0), U(CKF_SERIAL), None, None, C.byref(h1))),
    ("C_CloseSession", lambda: lib.C_CloseSession(U(1))),
    ("C_CloseAllSessions", lambda: lib.C_CloseAllSessions(U(0))),
    ("C_GetSessionInfo", lambda: lib.C_GetSessionInfo(U(1), out)),
    ("C_Login", lambda: lib.C_Login(U(1), U(1), b"test-pin", U(8))),
    ("C_Logout", lambda: lib.C_Logout(U(1))),
    ("C_InitToken", lambda: lib.C_InitToken(U(0), b"test-pin", U(8), b" " * 32)),
    ("C_InitPIN", lambda: lib.C_InitPIN(U(1), b"test-pin", U(8))),
    ("C_SetPIN", lambda: lib.C_SetPIN(U(1), b"test-pin", U(8), b"test-pin", U(8))),
    ("C_FindObjectsInit", lambda: lib.C_FindObjectsInit(U(1), None, U(0))),
    ("C_GenerateRandom", lambda: lib.C_GenerateRandom(U(1), out, U(8))),
    ("C_DigestInit", lambda: lib.C_DigestInit(U(1), mech(CKM_SHA256))),
    ("C_SignInit", lambda: lib.C_SignInit(U(1), mech(CKM_ECDSA_SHA256), U(1))),
    ("C_Sign", lambda: lib.C_Sign(U(1), data, ld, out, C.byref(n))),
    ("C_Verify", lambda: lib.C_Verify(U(1), data, ld, out, U(64))),
    ("C_GenerateKey", lambda: lib.C_GenerateKey(U(1), mech(CKM_AES_KEY_GEN), None, U(0), C.byref(h1))),
    ("C_WrapKey", lambda: lib.C_WrapKey(U(1), mech(CKM_AES_KEY_WRAP_KWP), U(1), U(2), None, C.byref(n))),
    ("C_EncryptInit", lambda: lib.C_EncryptInit(U(1), mech(CKM_UNKNOWN), U(1))),
    ("C_Decrypt", lambda: lib.C_Decrypt(U(1), data, ld, out, C.byref(n))),
]:
    want(name + " before C_Initialize", call(), NOT_INITIALIZED)

want("C_Initialize", lib.C_Initialize(None), OK)

# Slots that are not there.
want("C_GetSlotInfo(no slot)", lib.C_GetSlotInfo(U(NO_SLOT), out), SLOT_ID_INVALID)
want("C_GetTokenInfo(no slot)", lib.C_GetTokenInfo(U(NO_SLOT), out), SLOT_ID_INVALID)
want("C_GetMechanismList(no slot)", lib.C_GetMechanismList(U(NO_SLOT), None, C.byref(n)), SLOT_ID_INVALID)
want("C_GetMechanismInfo(no slot)", lib.C_GetMechanismInfo(U(NO_SLOT), U(CKM_SHA256), out), SLOT_ID_INVALID)
want("C_OpenSession(no slot)", lib.C_OpenSession(U(NO_SLOT), U(CKF_SERIAL), None, None, C.byref(h1)), SLOT_ID_INVALID)
want("C_CloseAllSessions(no slot)", lib.C_CloseAllSessions(U(NO_SLOT)), SLOT_ID_INVALID)
want("C_InitToken(no slot)", lib.C_InitToken(U(NO_SLOT), b"test-pin", U(8), b" " * 32), SLOT_ID_INVALID)
want("C_GetMechanismInfo(unknown)", lib.C_GetMechanismInfo(U(0), U(CKM_UNKNOWN), out), MECHANISM_INVALID)
want("C_GetMechanismInfo(NULL)", lib.C_GetMechanismInfo(U(0), U(CKM_SHA256), None), ARGUMENTS_BAD)

# Short output buffers in the slot functions: the length protocol.
count = U(0)
want("C_GetMechanismList count", lib.C_GetMechanismList(U(0), None, C.byref(count)), OK)
short = U(count.value - 1)
want("C_GetMechanismList(short)", lib.C_GetMechanismList(U(0), (U * count.value)(), C.byref(short)), BUFFER_TOO_SMALL)
want("C_GetMechanismList count after short", short.value, count.value)
short = U(0)
want("C_GetSlotList(short)", lib.C_GetSlotList(C.c_ubyte(0), (U * 1)(), C.byref(short)), BUFFER_TOO_SMALL)
want("C_GetSlotList count after short", short.value, 1)

# A session, logged in, with an EC key pair (session objects) and an AES
# wrapping key.
want("C_OpenSession", lib.C_OpenSession(U(0), U(CKF_SERIAL | CKF_RW), None, None, C.byref(h1)), OK)
want("C_Login", lib.C_Login(h1, U(1), b"test-pin", U(8)), OK)
pub_t, npub = attrs((CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")), (CKA_TOKEN, 0))
priv_t, npriv = attrs((CKA_TOKEN, 0), (CKA_EXTRACTABLE, 1))
pub, priv = U(), U()
want("C_GenerateKeyPair", lib.C_GenerateKeyPair(h1, mech(CKM_EC_KEY_PAIR_GEN), pub_t, npub, priv_t, npriv, C.byref(pub), C.byref(priv)), OK)
aes_t, naes = attrs((CKA_VALUE_LEN, 32), (CKA_TOKEN, 0), (CKA_WRAP, 1), (CKA_UNWRAP, 1))
aes = U()
want("C_GenerateKey", lib.C_GenerateKey(h1, mech(CKM_AES_KEY_GEN), aes_t, naes, C.byref(aes)), OK)

# Sessions that are not there, or no longer.
want("C_OpenSession (to close)", lib.C_OpenSession(U(0), U(CKF_SERIAL), None, None, C.byref(h2)), OK)
want("C_CloseSession", lib.C_CloseSession(h2), OK)
for what, h in [("no session", U(NO_SESSION)), ("closed session", h2), ("session 0", U(0))]:
    for name, call in [
        ("C_CloseSession", lambda: lib.C_CloseSession(h)),
        ("C_GetSessionInfo", lambda: lib.C_GetSessionInfo(h, out)),
        ("C_Login", lambda: lib.C_Login(h, U(1), b"test-pin", U(8))),
        ("C_Logout", lambda: lib.C_Logout(h)),
        ("C_InitPIN", lambda: lib.C_InitPIN(h, b"test-pin", U(8))),
        ("C_SetPIN", lambda: lib.C_SetPIN(h, b"test-pin", U(8), b"test-pin", U(8))),
        ("C_CreateObject", lambda: lib.C_CreateObject(h, pub_t, npub, C.byref(h1))),
        ("C_CopyObject", lambda: lib.C_CopyObject(h, pub, None, U(0), C.byref(U()))),
        ("C_DestroyObject", lambda: lib.C_DestroyObject(h, pub)),
        ("C_GetObjectSize", lambda: lib.C_GetObjectSize(h, pub, C.byref(n))),
        ("C_GetAttributeValue", lambda: lib.C_GetAttributeValue(h, pub, *attrs((CKA_LABEL, None)))),
        ("C_SetAttributeValue", lambda: lib.C_SetAttributeValue(h, pub, *attrs((CKA_LABEL, b"x")))),
        ("C_FindObjectsInit", lambda: lib.C_FindObjectsInit(h, None, U(0))),
        ("C_FindObjects", lambda: lib.C_FindObjects(h, (U * 4)(), U(4), C.byref(n))),
        ("C_FindObjectsFinal", lambda: lib.C_FindObjectsFinal(h)),
        ("C_GenerateKeyPair", lambda: lib.C_GenerateKeyPair(h, mech(CKM_EC_KEY_PAIR_GEN), pub_t, npub, priv_t, npriv, C.byref(U()), C.byref(U()))),
        ("C_GenerateKey", lambda: lib.C_GenerateKey(h, mech(CKM_AES_KEY_GEN), aes_t, naes, C.byref(U()))),
        ("C_DigestInit", lambda: lib.C_DigestInit(h, mech(CKM_SHA256))),
        ("C_Digest", lambda: lib.C_Digest(h, data, ld, out, C.byref(n))),
        ("C_DigestUpdate", lambda: lib.C_DigestUpdate(h, data, ld)),
        ("C_DigestKey", lambda: lib.C_DigestKey(h, aes)),
        ("C_DigestFinal", lambda: lib.C_DigestFinal(h, out, C.byref(n))),
        ("C_SignInit", lambda: lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), priv)),
        ("C_Sign", lambda: lib.C_Sign(h, data, ld, out, C.byref(n))),
        ("C_SignUpdate", lambda: lib.C_SignUpdate(h, data, ld)),
        ("C_SignFinal", lambda: lib.C_SignFinal(h, out, C.byref(n))),
        ("C_VerifyInit", lambda: lib.C_VerifyInit(h, mech(CKM_ECDSA_SHA256), pub)),
        ("C_Verify", lambda: lib.C_Verify(h, data, ld, out, U(64))),
        ("C_VerifyUpdate", lambda: lib.C_VerifyUpdate(h, data, ld)),
        ("C_VerifyFinal", lambda: lib.C_VerifyFinal(h, out, U(64))),
        ("C_SeedRandom", lambda: lib.C_SeedRandom(h, data, ld)),
        ("C_GenerateRandom", lambda: lib.C_GenerateRandom(h, out, U(8))),
        ("C_WrapKey", lambda: lib.C_WrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), aes, priv, None, C.byref(n))),
        ("C_UnwrapKey", lambda: lib.C_UnwrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), aes, out, U(40), aes_t, naes, C.byref(U()))),
        ("C_EncryptInit", lambda: lib.C_EncryptInit(h, C.byref(oaep), pub)),
        ("C_Encrypt", lambda: lib.C_Encrypt(h, data, ld, out, C.byref(n))),
        ("C_DecryptInit", lambda: lib.C_DecryptInit(h, C.byref(oaep), priv)),
        ("C_Decrypt", lambda: lib.C_Decrypt(h, data, ld, out, C.byref(n))),
    ]:
        want("%s(%s)" % (name, what), call(), SESSION_HANDLE_INVALID)
    # The session is wrong before the mechanism or the template is.
    for name, call in [
        ("C_CreateObject", lambda: lib.C_CreateObject(h, None, U(0), C.byref(U()))),
        ("C_GenerateKeyPair", lambda: lib.C_GenerateKeyPair(h, mech(CKM_UNKNOWN), None, U(0), None, U(0), C.byref(U()), C.byref(U()))),
        ("C_GenerateKey", lambda: lib.C_GenerateKey(h, mech(CKM_UNKNOWN), None, U(0), C.byref(U()))),
        ("C_DigestInit", lambda: lib.C_DigestInit(h, mech(CKM_UNKNOWN))),
        ("C_SignInit", lambda: lib.C_SignInit(h, mech(CKM_UNKNOWN), priv)),
        ("C_VerifyInit", lambda: lib.C_VerifyInit(h, mech(CKM_UNKNOWN), pub)),
        ("C_WrapKey", lambda: lib.C_WrapKey(h, mech(CKM_UNKNOWN), aes, priv, None, C.byref(n))),
        ("C_UnwrapKey", lambda: lib.C_UnwrapKey(h, mech(CKM_UNKNOWN), aes, out, U(40), None, U(0), C.byref(U()))),
        ("C_EncryptInit", lambda: lib.C_EncryptInit(h, mech(CKM_UNKNOWN), pub)),
        ("C_DecryptInit", lambda: lib.C_DecryptInit(h, mech(CKM_UNKNOWN), priv)),
    ]:
        want("%s(%s, unknown mechanism or empty template)" % (name, what), call(), SESSION_HANDLE_INVALID)

# Objects that are not there.
h = h1
for what, o in [("no object", U(NO_OBJECT)), ("object 0", U(0))]:
    for name, call, expected in [
        ("C_CopyObject", lambda: lib.C_CopyObject(h, o, None, U(0), C.byref(U())), OBJECT_HANDLE_INVALID),
        ("C_DestroyObject", lambda: lib.C_DestroyObject(h, o), OBJECT_HANDLE_INVALID),
        ("C_GetObjectSize", lambda: lib.C_GetObjectSize(h, o, C.byref(n)), OBJECT_HANDLE_INVALID),
        ("C_GetAttributeValue", lambda: lib.C_GetAttributeValue(h, o, *attrs((CKA_LABEL, None))), OBJECT_HANDLE_INVALID),
        ("C_SetAttributeValue", lambda: lib.C_SetAttributeValue(h, o, *attrs((CKA_LABEL, b"x"))), OBJECT_HANDLE_INVALID),
        ("C_DigestKey", lambda: lib.C_DigestKey(h, o), OPERATION_NOT_INITIALIZED),
        ("C_SignInit", lambda: lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), o), KEY_HANDLE_INVALID),
        ("C_VerifyInit", lambda: lib.C_VerifyInit(h, mech(CKM_ECDSA_SHA256), o), KEY_HANDLE_INVALID),
        ("C_EncryptInit", lambda: lib.C_EncryptInit(h, C.byref(oaep), o), KEY_HANDLE_INVALID),
        ("C_DecryptInit", lambda: lib.C_DecryptInit(h, C.byref(oaep), o), KEY_HANDLE_INVALID),
        ("C_WrapKey(wrapping key)", lambda: lib.C_WrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), o, priv, None, C.byref(n)), WRAPPING_KEY_HANDLE_INVALID),
        ("C_WrapKey(key)", lambda: lib.C_WrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), aes, o, None, C.byref(n)), KEY_HANDLE_INVALID),
        ("C_UnwrapKey", lambda: lib.C_UnwrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), o, out, U(40), aes_t, naes, C.byref(U())), UNWRAPPING_KEY_HANDLE_INVALID),
    ]:
        want("%s(%s)" % (name, what), call(), expected)

# Operations in the wrong state: no operation, or one already active.
for name, call in [
    ("C_Digest", lambda: lib.C_Digest(h, data, ld, out, C.byref(n))),
    ("C_DigestUpdate", lambda: lib.C_DigestUpdate(h, data, ld)),
    ("C_DigestKey", lambda: lib.C_DigestKey(h, aes)),
    ("C_DigestFinal", lambda: lib.C_DigestFinal(h, out, C.byref(n))),
    ("C_Sign", lambda: lib.C_Sign(h, data, ld, out, C.byref(n))),
    ("C_SignUpdate", lambda: lib.C_SignUpdate(h, data, ld)),
    ("C_SignFinal", lambda: lib.C_SignFinal(h, out, C.byref(n))),
    ("C_Verify", lambda: lib.C_Verify(h, data, ld, out, U(64))),
    ("C_VerifyUpdate", lambda: lib.C_VerifyUpdate(h, data, ld)),
    ("C_VerifyFinal", lambda: lib.C_VerifyFinal(h, out, U(64))),
    ("C_Encrypt", lambda: lib.C_Encrypt(h, data, ld, out, C.byref(n))),
    ("C_Decrypt", lambda: lib.C_Decrypt(h, data, ld, out, C.byref(n))),
    ("C_FindObjects", lambda: lib.C_FindObjects(h, (U * 4)(), U(4), C.byref(n))),
    ("C_FindObjectsFinal", lambda: lib.C_FindObjectsFinal(h)),
]:
    want(name + " without its Init", call(), OPERATION_NOT_INITIALIZED)
# C_Sign after C_SignUpdate: refused, and (as every C_Sign that fails
# but for the length) it ends the operation.
want("C_SignInit", lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), priv), OK)
want("C_SignUpdate", lib.C_SignUpdate(h, data, ld), OK)
want("C_Sign after C_SignUpdate", lib.C_Sign(h, data, ld, out, C.byref(U(4096))), OPERATION_ACTIVE)
want("C_SignFinal after that", lib.C_SignFinal(h, out, C.byref(U(4096))), OPERATION_NOT_INITIALIZED)
want("C_SignInit", lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), priv), OK)
want("C_SignInit again", lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), priv), OPERATION_ACTIVE)
want("C_SignUpdate", lib.C_SignUpdate(h, data, ld), OK)
sl = U(10)
want("C_SignFinal(short)", lib.C_SignFinal(h, out, C.byref(sl)), BUFFER_TOO_SMALL)
want("C_SignFinal length", sl.value, 64)
sl = U(64)
want("C_SignFinal", lib.C_SignFinal(h, out, C.byref(sl)), OK)
want("C_SignFinal after the result", lib.C_SignFinal(h, out, C.byref(sl)), OPERATION_NOT_INITIALIZED)
want("C_SignInit(NULL mechanism)", lib.C_SignInit(h, None, priv), ARGUMENTS_BAD)
want("C_SignInit(unknown mechanism)", lib.C_SignInit(h, mech(CKM_UNKNOWN), priv), MECHANISM_INVALID)
want("C_SignInit(a digest)", lib.C_SignInit(h, mech(CKM_SHA256), priv), MECHANISM_INVALID)
# A public or secret key has no CKA_SIGN: refused for that first, as
# SoftHSM2 does.
want("C_SignInit(public key)", lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), pub), KEY_FUNCTION_NOT_PERMITTED)
want("C_SignInit(AES key)", lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), aes), KEY_FUNCTION_NOT_PERMITTED)
want("C_VerifyInit", lib.C_VerifyInit(h, mech(CKM_ECDSA_SHA256), pub), OK)
# A call refused for its arguments ends its operation too ("always
# terminates", "results in an error terminates").
want("C_Verify(NULL signature)", lib.C_Verify(h, data, ld, None, U(64)), ARGUMENTS_BAD)
want("C_Verify after that", lib.C_Verify(h, data, ld, out, U(64)), OPERATION_NOT_INITIALIZED)
want("C_VerifyInit", lib.C_VerifyInit(h, mech(CKM_ECDSA_SHA256), pub), OK)
want("C_Verify(short signature)", lib.C_Verify(h, data, ld, out, U(10)), SIGNATURE_LEN_RANGE)
want("C_DigestInit", lib.C_DigestInit(h, mech(CKM_SHA256)), OK)
want("C_DigestInit again", lib.C_DigestInit(h, mech(CKM_SHA256)), OPERATION_ACTIVE)
want("C_Digest(NULL length)", lib.C_Digest(h, data, ld, out, None), ARGUMENTS_BAD)
want("C_Digest after that", lib.C_Digest(h, data, ld, out, C.byref(U(64))), OPERATION_NOT_INITIALIZED)
want("C_DigestInit", lib.C_DigestInit(h, mech(CKM_SHA256)), OK)
want("C_DigestUpdate(NULL, 3)", lib.C_DigestUpdate(h, None, U(3)), ARGUMENTS_BAD)
want("C_DigestFinal after that", lib.C_DigestFinal(h, out, C.byref(U(64))), OPERATION_NOT_INITIALIZED)
want("C_FindObjectsInit", lib.C_FindObjectsInit(h, None, U(0)), OK)
want("C_FindObjectsInit again", lib.C_FindObjectsInit(h, None, U(0)), OPERATION_ACTIVE)
want("C_FindObjectsFinal", lib.C_FindObjectsFinal(h), OK)

# Unknown mechanisms and attributes; a template that contradicts itself;
# NULL pointers.
want("C_DigestInit(unknown)", lib.C_DigestInit(h, mech(CKM_UNKNOWN)), MECHANISM_INVALID)
want("C_GenerateKeyPair(unknown)", lib.C_GenerateKeyPair(h, mech(CKM_UNKNOWN), pub_t, npub, priv_t, npriv, C.byref(U()), C.byref(U())), MECHANISM_INVALID)
want("C_GenerateKey(unknown)", lib.C_GenerateKey(h, mech(CKM_UNKNOWN), aes_t, naes, C.byref(U())), MECHANISM_INVALID)
want("C_WrapKey(unknown)", lib.C_WrapKey(h, mech(CKM_UNKNOWN), aes, priv, None, C.byref(n)), MECHANISM_INVALID)
want("C_UnwrapKey(unknown)", lib.C_UnwrapKey(h, mech(CKM_UNKNOWN), aes, out, U(40), aes_t, naes, C.byref(U())), MECHANISM_INVALID)
want("C_EncryptInit(unknown)", lib.C_EncryptInit(h, mech(CKM_UNKNOWN), pub), MECHANISM_INVALID)
want("C_DecryptInit(unknown)", lib.C_DecryptInit(h, mech(CKM_UNKNOWN), priv), MECHANISM_INVALID)
want("C_WrapKey(NULL mechanism)", lib.C_WrapKey(h, None, aes, priv, None, C.byref(n)), ARGUMENTS_BAD)
want("C_WrapKey(NULL length)", lib.C_WrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), aes, priv, None, None), ARGUMENTS_BAD)
want("C_UnwrapKey(NULL handle)", lib.C_UnwrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), aes, out, U(40), aes_t, naes, None), ARGUMENTS_BAD)
want("C_UnwrapKey(NULL blob)", lib.C_UnwrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), aes, None, U(40), aes_t, naes, C.byref(U())), ARGUMENTS_BAD)
want("C_GenerateKey(NULL handle)", lib.C_GenerateKey(h, mech(CKM_AES_KEY_GEN), aes_t, naes, None), ARGUMENTS_BAD)
want("C_EncryptInit(NULL)", lib.C_EncryptInit(h, None, pub), ARGUMENTS_BAD)
want("C_SetAttributeValue(NULL template)", lib.C_SetAttributeValue(h, pub, None, U(1)), ARGUMENTS_BAD)
want("C_SignInit", lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), priv), OK)
want("C_SignUpdate(NULL, 3)", lib.C_SignUpdate(h, None, U(3)), ARGUMENTS_BAD)
want("C_SignFinal after that", lib.C_SignFinal(h, out, C.byref(U(64))), OPERATION_NOT_INITIALIZED)

get, ng = attrs((CKA_UNKNOWN, None), (CKA_LABEL, None))
want("C_GetAttributeValue(unknown attribute)", lib.C_GetAttributeValue(h, pub, get, ng), ATTRIBUTE_TYPE_INVALID)
want("its length", get[0].len, UNAVAILABLE)
bad_pub, nbad = attrs((CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")), (CKA_TOKEN, 0), (CKA_UNKNOWN, b"x"))
before = U()
lib.C_FindObjectsInit(h, None, U(0))
lib.C_FindObjects(h, (U * 64)(), U(64), C.byref(before))
lib.C_FindObjectsFinal(h)
want("C_GenerateKeyPair(unknown attribute)", lib.C_GenerateKeyPair(h, mech(CKM_EC_KEY_PAIR_GEN), bad_pub, nbad, priv_t, npriv, C.byref(U()), C.byref(U())), ATTRIBUTE_TYPE_INVALID)
want("C_SetAttributeValue(unknown attribute)", lib.C_SetAttributeValue(h, pub, *attrs((CKA_UNKNOWN, b"x"))), ATTRIBUTE_TYPE_INVALID)
twice, nt = attrs((CKA_VALUE_LEN, 32), (CKA_TOKEN, 0), (CKA_WRAP, 1), (CKA_UNWRAP, 1), (CKA_TOKEN, 1))
want("C_GenerateKey(CKA_TOKEN false and true)", lib.C_GenerateKey(h, mech(CKM_AES_KEY_GEN), twice, nt, C.byref(U())), TEMPLATE_INCONSISTENT)
wrong_class, nw = attrs((CKA_CLASS, CKO_PUBLIC_KEY), (CKA_VALUE_LEN, 32), (CKA_TOKEN, 0), (CKA_WRAP, 1))
want("C_GenerateKey(CKA_CLASS public key)", lib.C_GenerateKey(h, mech(CKM_AES_KEY_GEN), wrong_class, nw, C.byref(U())), TEMPLATE_INCONSISTENT)
after = U()
lib.C_FindObjectsInit(h, None, U(0))
lib.C_FindObjects(h, (U * 64)(), U(64), C.byref(after))
lib.C_FindObjectsFinal(h)
want("objects after refused creations", after.value, before.value)
found, nf = (U * 4)(), U(0)
want("C_FindObjectsInit(unknown attribute)", lib.C_FindObjectsInit(h, *attrs((CKA_UNKNOWN, b"x"))), OK)
want("C_FindObjects", lib.C_FindObjects(h, found, U(4), C.byref(nf)), OK)
want("objects with an unknown attribute", nf.value, 0)
lib.C_FindObjectsFinal(h)

# Short buffers of the key functions.
wl = U(0)
want("C_WrapKey length", lib.C_WrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), aes, priv, None, C.byref(wl)), OK)
short = U(wl.value - 1)
want("C_WrapKey(short)", lib.C_WrapKey(h, mech(CKM_AES_KEY_WRAP_KWP), aes, priv, out, C.byref(short)), BUFFER_TOO_SMALL)
want("C_WrapKey length after short", short.value, wl.value)

# A read-only session creates no token object.
ro = U()
want("C_OpenSession(read-only)", lib.C_OpenSession(U(0), U(CKF_SERIAL), None, None, C.byref(ro)), OK)
tok_t, ntok = attrs((CKA_VALUE_LEN, 32), (CKA_TOKEN, 1), (CKA_WRAP, 1))
want("C_GenerateKey(token, read-only)", lib.C_GenerateKey(ro, mech(CKM_AES_KEY_GEN), tok_t, ntok, C.byref(U())), SESSION_READ_ONLY)
# Logging out destroys the private session objects: their handles stay
# invalid after the next login.
want("C_Logout", lib.C_Logout(h), OK)
want("C_SignInit logged out", lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), priv), USER_NOT_LOGGED_IN)
want("C_GenerateKey logged out", lib.C_GenerateKey(h, mech(CKM_AES_KEY_GEN), aes_t, naes, C.byref(U())), USER_NOT_LOGGED_IN)
want("C_Login again", lib.C_Login(h, U(1), b"test-pin", U(8)), OK)
want("C_SignInit with a handle of before", lib.C_SignInit(h, mech(CKM_ECDSA_SHA256), priv), KEY_HANDLE_INVALID)
want("C_Finalize(reserved)", lib.C_Finalize(C.c_void_p(1)), ARGUMENTS_BAD)
want("C_Finalize", lib.C_Finalize(None), OK)

if failures:
    sys.exit("\n".join(failures))
print("ok")
