# Checks from C's side what miekg/pkcs11 hides: CK_MECHANISM as C lays it
# out, and the output-buffer length protocol (NULL buffer: the length; a
# buffer too small: CKR_BUFFER_TOO_SMALL with the length, and the
# operation still active; success: the operation ended). Run by
# TestLengthsFromC as: python3 lengths.py MODULE (with $CRYPTECH_HSM
# set); prints "ok" or fails.
import ctypes as C
import hashlib
import sys

OK, ARGUMENTS_BAD, BUFFER_TOO_SMALL = 0, 7, 0x150
OPERATION_NOT_INITIALIZED, MECHANISM_INVALID, MECHANISM_PARAM_INVALID = 0x91, 0x70, 0x71
CKM_SHA256, CKM_SHA512, CKM_SHA256_RSA_PKCS_PSS = 0x250, 0x270, 0x43
CKF_SERIAL_SESSION, CKF_HW, CKF_SIGN, CKF_VERIFY = 4, 1, 0x800, 0x2000

lib = C.CDLL(sys.argv[1])


class Mechanism(C.Structure):
    _fields_ = [("mechanism", C.c_ulong), ("param", C.c_void_p), ("len", C.c_ulong)]


class MechanismInfo(C.Structure):
    _fields_ = [("min", C.c_ulong), ("max", C.c_ulong), ("flags", C.c_ulong)]


def check(what, got, want):
    if got != want:
        sys.exit("%s: got %r, want %r" % (what, got, want))


check("C_Initialize", lib.C_Initialize(None), OK)
info = MechanismInfo()
check("C_GetMechanismInfo", lib.C_GetMechanismInfo(C.c_ulong(0), C.c_ulong(CKM_SHA256_RSA_PKCS_PSS), C.byref(info)), OK)
check("PSS info", (info.min, info.max, info.flags), (1024, 8192, CKF_HW | CKF_SIGN | CKF_VERIFY))
check("C_GetMechanismInfo(unknown)", lib.C_GetMechanismInfo(C.c_ulong(0), C.c_ulong(0x8000abcd), C.byref(info)), MECHANISM_INVALID)

h = C.c_ulong(0)
check("C_OpenSession", lib.C_OpenSession(C.c_ulong(0), C.c_ulong(CKF_SERIAL_SESSION), None, None, C.byref(h)), OK)
msg = b"the length protocol, from C" * 10
for mech, want in [(CKM_SHA256, hashlib.sha256(msg).digest()), (CKM_SHA512, hashlib.sha512(msg).digest())]:
    m = Mechanism(mech, None, 0)
    check("C_DigestInit", lib.C_DigestInit(h, C.byref(m)), OK)
    n = C.c_ulong(0)
    check("C_Digest(NULL)", lib.C_Digest(h, msg, C.c_ulong(len(msg)), None, C.byref(n)), OK)
    check("digest length", n.value, len(want))
    small = C.create_string_buffer(len(want) - 1)
    n = C.c_ulong(len(want) - 1)
    check("C_Digest(short)", lib.C_Digest(h, msg, C.c_ulong(len(msg)), small, C.byref(n)), BUFFER_TOO_SMALL)
    check("length after short", n.value, len(want))
    out = C.create_string_buffer(100)
    n = C.c_ulong(100)
    check("C_Digest", lib.C_Digest(h, msg, C.c_ulong(len(msg)), out, C.byref(n)), OK)
    check("digest", out.raw[:n.value], want)
    check("C_Digest after the result", lib.C_Digest(h, msg, C.c_ulong(len(msg)), out, C.byref(n)), OPERATION_NOT_INITIALIZED)

# A parameter where none is taken; NULL pointers.
param = (C.c_ubyte * 4)()
m = Mechanism(CKM_SHA256, C.cast(param, C.c_void_p), 4)
check("C_DigestInit with a parameter", lib.C_DigestInit(h, C.byref(m)), MECHANISM_PARAM_INVALID)
m = Mechanism(CKM_SHA256, None, 4)
check("C_DigestInit, NULL parameter of length 4", lib.C_DigestInit(h, C.byref(m)), ARGUMENTS_BAD)
check("C_DigestInit(NULL)", lib.C_DigestInit(h, None), ARGUMENTS_BAD)
m = Mechanism(CKM_SHA256, None, 0)
check("C_DigestInit", lib.C_DigestInit(h, C.byref(m)), OK)
check("C_DigestUpdate(NULL, 3)", lib.C_DigestUpdate(h, None, C.c_ulong(3)), ARGUMENTS_BAD)
check("C_DigestFinal(NULL length)", lib.C_DigestFinal(h, None, None), ARGUMENTS_BAD)
check("C_GenerateRandom(NULL, 8)", lib.C_GenerateRandom(h, None, C.c_ulong(8)), ARGUMENTS_BAD)
buf = C.create_string_buffer(48)
check("C_GenerateRandom", lib.C_GenerateRandom(h, buf, C.c_ulong(48)), OK)
if buf.raw == bytes(48):
    sys.exit("C_GenerateRandom left the buffer zero")
check("C_Finalize", lib.C_Finalize(None), OK)
print("ok")
