# Checks what neither pkcs11-tool nor github.com/miekg/pkcs11 reach, from
# C's side: C_GetInterfaceList, C_GetInterface, that every entry of both
# function lists is set, CK_C_INITIALIZE_ARGS as C lays it out, NULL
# pointers, and C_GetAttributeValue's lengths in the caller's buffers.
# Run by TestFromC as: python3 fromc.py MODULE (with $CRYPTECH_HSM set);
# prints "ok" or fails.
import ctypes as C
import sys

OK, ARGUMENTS_BAD, NOT_SUPPORTED = 0, 7, 0x54
FUNCS_2_40, FUNCS_3_0 = 68, 92

lib = C.CDLL(sys.argv[1])


class Version(C.Structure):
    _fields_ = [("major", C.c_ubyte), ("minor", C.c_ubyte)]


class Interface(C.Structure):
    _fields_ = [("name", C.c_char_p), ("funcs", C.c_void_p), ("flags", C.c_ulong)]


def check(what, got, want):
    if got != want:
        sys.exit("%s: got %r, want %r" % (what, got, want))


def entries(funcs, n):
    """The function pointers of a list: after its CK_VERSION, aligned."""
    first = C.sizeof(C.c_void_p)
    return (C.c_void_p * n).from_address(funcs + first)


def version(funcs):
    v = Version.from_address(funcs)
    return (v.major, v.minor)


def call(funcs, i, *args):
    f = C.CFUNCTYPE(C.c_ulong, *[type(a) for a in args])(entries(funcs, i + 1)[i])
    return f(*args)


fl = C.c_void_p()
check("C_GetFunctionList", lib.C_GetFunctionList(C.byref(fl)), OK)
check("C_GetFunctionList(NULL)", lib.C_GetFunctionList(None), ARGUMENTS_BAD)
check("2.40 list version", version(fl.value), (2, 40))
check("2.40 list NULL entries", [i for i, f in enumerate(entries(fl.value, FUNCS_2_40)) if not f], [])

n = C.c_ulong(0)
check("C_GetInterfaceList count", lib.C_GetInterfaceList(None, C.byref(n)), OK)
check("interfaces", n.value, 2)
small = C.c_ulong(1)
check("C_GetInterfaceList short", lib.C_GetInterfaceList((Interface * 1)(), C.byref(small)), 0x150)
check("count after short", small.value, 2)
ifs = (Interface * 2)()
check("C_GetInterfaceList", lib.C_GetInterfaceList(ifs, C.byref(n)), OK)
check("interface names", [i.name for i in ifs], [b"PKCS 11", b"PKCS 11"])
check("interface versions", [version(i.funcs) for i in ifs], [(3, 0), (2, 40)])

p = C.POINTER(Interface)()
check("C_GetInterface default", lib.C_GetInterface(None, None, C.byref(p), C.c_ulong(0)), OK)
v3 = p.contents.funcs
check("default interface version", version(v3), (3, 0))
check("3.0 list NULL entries", [i for i, f in enumerate(entries(v3, FUNCS_3_0)) if not f], [])
want = Version(2, 40)
check("C_GetInterface 2.40", lib.C_GetInterface(b"PKCS 11", C.byref(want), C.byref(p), C.c_ulong(0)), OK)
check("2.40 interface", p.contents.funcs, fl.value)
check("C_GetInterface unknown name", lib.C_GetInterface(b"Vendor X", None, C.byref(p), C.c_ulong(0)), ARGUMENTS_BAD)
check("C_GetInterface unknown version", lib.C_GetInterface(None, C.byref(Version(3, 1)), C.byref(p), C.c_ulong(0)), ARGUMENTS_BAD)
check("C_GetInterface with flags", lib.C_GetInterface(None, None, C.byref(p), C.c_ulong(1)), ARGUMENTS_BAD)
check("C_GetInterface(NULL)", lib.C_GetInterface(None, None, None, C.c_ulong(0)), ARGUMENTS_BAD)

# The 3.0 list works: C_Initialize (0), C_GetInterfaceList (68), the
# functions still missing (C_InitToken 9, C_LoginUser 70,
# C_MessageVerifyFinal 91), C_Finalize (1).
check("3.0 C_Initialize", call(v3, 0, C.c_void_p(None)), OK)
check("3.0 C_GetInterfaceList", call(v3, 68, C.c_void_p(None), C.pointer(n)), OK)
for i in (9, 70, 91):
    check("3.0 entry %d" % i, call(v3, i), NOT_SUPPORTED)
check("3.0 C_Finalize", call(v3, 1, C.c_void_p(None)), OK)

class InitArgs(C.Structure):
    _fields_ = [("create", C.c_void_p), ("destroy", C.c_void_p), ("lock", C.c_void_p),
                ("unlock", C.c_void_p), ("flags", C.c_ulong), ("reserved", C.c_void_p)]


OS_LOCKING_OK, CANT_LOCK, ALREADY = 2, 0xA, 0x191
fake = C.cast(lib.C_GetInfo, C.c_void_p)  # any non-NULL pointer; never called
for what, args, want in [
    ("app mutexes without OS locking", InitArgs(fake, fake, fake, fake, 0, None), CANT_LOCK),
    ("some app mutexes", InitArgs(fake, None, fake, fake, OS_LOCKING_OK, None), ARGUMENTS_BAD),
    ("pReserved set", InitArgs(None, None, None, None, OS_LOCKING_OK, fake), ARGUMENTS_BAD),
    ("app mutexes with OS locking", InitArgs(fake, fake, fake, fake, OS_LOCKING_OK, None), OK),
]:
    check("C_Initialize, " + what, lib.C_Initialize(C.byref(args)), want)
check("C_Initialize again", lib.C_Initialize(None), ALREADY)

check("C_GetInfo(NULL)", lib.C_GetInfo(None), ARGUMENTS_BAD)
check("C_GetSlotList(NULL count)", lib.C_GetSlotList(C.c_ubyte(1), None, None), ARGUMENTS_BAD)
check("C_GetSlotInfo(NULL)", lib.C_GetSlotInfo(C.c_ulong(0), None), ARGUMENTS_BAD)
check("C_GetTokenInfo(NULL)", lib.C_GetTokenInfo(C.c_ulong(0), None), ARGUMENTS_BAD)
check("C_GetMechanismList(NULL count)", lib.C_GetMechanismList(C.c_ulong(0), None, None), ARGUMENTS_BAD)
check("C_OpenSession(NULL handle)", lib.C_OpenSession(C.c_ulong(0), C.c_ulong(4), None, None, None), ARGUMENTS_BAD)
h = C.c_ulong(0)
check("C_OpenSession", lib.C_OpenSession(C.c_ulong(0), C.c_ulong(4), None, None, C.byref(h)), OK)
check("C_GetSessionInfo(NULL)", lib.C_GetSessionInfo(h, None), ARGUMENTS_BAD)
check("C_Login(NULL PIN, length 4)", lib.C_Login(h, C.c_ulong(1), None, C.c_ulong(4)), ARGUMENTS_BAD)
check("C_Login(huge length)", lib.C_Login(h, C.c_ulong(1), b"x", C.c_ulong(2**63)), 0xA2)

# Objects and key pair generation: NULL pointers, the length protocol in
# the application's own buffers.
class Attribute(C.Structure):
    _fields_ = [("type", C.c_ulong), ("value", C.c_void_p), ("len", C.c_ulong)]


class Mechanism(C.Structure):
    _fields_ = [("mechanism", C.c_ulong), ("param", C.c_void_p), ("len", C.c_ulong)]


def attrs(*pairs):
    arr = (Attribute * len(pairs))()
    for a, (t, v) in zip(arr, pairs):
        a.type = t
        if v is not None:
            buf = C.create_string_buffer(v, len(v))
            keep.append(buf)
            a.value, a.len = C.cast(buf, C.c_void_p), len(v)
    return arr


keep = []
BUFFER_TOO_SMALL, SENSITIVE, HANDLE_INVALID, UNAVAILABLE = 0x150, 0x11, 0x82, 2**64 - 1
CKA_CLASS, CKA_LABEL, CKA_VALUE, CKA_EC_PARAMS, CKA_EC_POINT = 0, 3, 0x11, 0x180, 0x181
check("C_Login", lib.C_Login(h, C.c_ulong(1), b"test-pin", C.c_ulong(8)), OK)
ec = Mechanism(0x1040, None, 0)
pub = attrs((CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")), (CKA_LABEL, b"from C"))
hpub, hpriv = C.c_ulong(0), C.c_ulong(0)
check("C_GenerateKeyPair(NULL mechanism)", lib.C_GenerateKeyPair(h, None, pub, C.c_ulong(2), None, C.c_ulong(0), C.byref(hpub), C.byref(hpriv)), ARGUMENTS_BAD)
check("C_GenerateKeyPair(NULL handle)", lib.C_GenerateKeyPair(h, C.byref(ec), pub, C.c_ulong(2), None, C.c_ulong(0), C.byref(hpub), None), ARGUMENTS_BAD)
check("C_GenerateKeyPair(NULL template, 2 entries)", lib.C_GenerateKeyPair(h, C.byref(ec), None, C.c_ulong(2), None, C.c_ulong(0), C.byref(hpub), C.byref(hpriv)), ARGUMENTS_BAD)
bad = attrs((CKA_LABEL, None))
bad[0].len = 4
check("C_GenerateKeyPair(NULL value, length 4)", lib.C_GenerateKeyPair(h, C.byref(ec), bad, C.c_ulong(1), None, C.c_ulong(0), C.byref(hpub), C.byref(hpriv)), ARGUMENTS_BAD)
check("C_GenerateKeyPair", lib.C_GenerateKeyPair(h, C.byref(ec), pub, C.c_ulong(2), None, C.c_ulong(0), C.byref(hpub), C.byref(hpriv)), OK)

get = attrs((CKA_EC_POINT, None), (CKA_LABEL, None))
check("C_GetAttributeValue lengths", lib.C_GetAttributeValue(h, hpub, get, C.c_ulong(2)), OK)
check("lengths", [a.len for a in get], [67, 6])
short = (C.c_char * 3)()
get[1].value, get[1].len = C.cast(short, C.c_void_p), 3
point = (C.c_char * 67)()
get[0].value, get[0].len = C.cast(point, C.c_void_p), 67
check("C_GetAttributeValue short", lib.C_GetAttributeValue(h, hpub, get, C.c_ulong(2)), BUFFER_TOO_SMALL)
check("lengths after short", [a.len for a in get], [67, UNAVAILABLE])
check("EC point", point.raw[:3], bytes([4, 65, 4]))
secret = attrs((CKA_VALUE, None), (CKA_CLASS, None))
check("C_GetAttributeValue sensitive", lib.C_GetAttributeValue(h, hpriv, secret, C.c_ulong(2)), SENSITIVE)
check("lengths of a secret", [a.len for a in secret], [UNAVAILABLE, 8])
check("C_GetAttributeValue(NULL template)", lib.C_GetAttributeValue(h, hpub, None, C.c_ulong(1)), ARGUMENTS_BAD)

check("C_FindObjectsInit(NULL template)", lib.C_FindObjectsInit(h, None, C.c_ulong(1)), ARGUMENTS_BAD)
check("C_FindObjectsInit", lib.C_FindObjectsInit(h, None, C.c_ulong(0)), OK)
found, count = (C.c_ulong * 4)(), C.c_ulong(0)
check("C_FindObjects(NULL count)", lib.C_FindObjects(h, found, C.c_ulong(4), None), ARGUMENTS_BAD)
check("C_FindObjects(NULL handles)", lib.C_FindObjects(h, None, C.c_ulong(4), C.byref(count)), ARGUMENTS_BAD)
check("C_FindObjects", lib.C_FindObjects(h, found, C.c_ulong(4), C.byref(count)), OK)
check("found", sorted(found[:count.value]), sorted([hpub.value, hpriv.value]))
check("C_FindObjectsFinal", lib.C_FindObjectsFinal(h), OK)

check("C_CreateObject(NULL handle)", lib.C_CreateObject(h, pub, C.c_ulong(2), None), ARGUMENTS_BAD)
check("C_CopyObject(NULL handle)", lib.C_CopyObject(h, hpub, None, C.c_ulong(0), None), ARGUMENTS_BAD)
check("C_GetObjectSize(NULL)", lib.C_GetObjectSize(h, hpub, None), ARGUMENTS_BAD)
check("C_DestroyObject(no object)", lib.C_DestroyObject(h, C.c_ulong(999999)), HANDLE_INVALID)
check("C_DestroyObject", lib.C_DestroyObject(h, hpriv), OK)
check("C_Finalize", lib.C_Finalize(None), OK)
print("ok")
