# Checks what neither pkcs11-tool nor github.com/miekg/pkcs11 reach, from
# C's side: C_GetInterfaceList, C_GetInterface, that every entry of both
# function lists is set, CK_C_INITIALIZE_ARGS as C lays it out, and NULL
# pointers. Run by TestFromC as: python3 fromc.py MODULE (with
# $CRYPTECH_HSM set); prints "ok" or fails.
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
# functions still missing (C_GetOperationState 16, C_LoginUser 70,
# C_MessageVerifyFinal 91), C_Finalize (1).
check("3.0 C_Initialize", call(v3, 0, C.c_void_p(None)), OK)
check("3.0 C_GetInterfaceList", call(v3, 68, C.c_void_p(None), C.pointer(n)), OK)
for i in (16, 70, 91):
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
check("C_Finalize", lib.C_Finalize(None), OK)
print("ok")
