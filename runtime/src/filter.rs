//! Which calls of a monitored API are of interest at all, whatever the
//! policy: most `sendto` calls carry no address (`send` is one), most
//! sockets are not raw, most `prctl` operations change no privilege. A call
//! that is not of interest goes on as if it were not hooked: no event, no
//! decision. The same test runs in every layer.

use crate::apis::ApiId;
use crate::mem;

/// `MSG_FASTOPEN`: `sendto`/`sendmsg` on a TCP socket that connects first.
pub const MSG_FASTOPEN: u64 = 0x2000_0000;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const AF_NETLINK: u64 = 16;
const AF_PACKET: u64 = 17;
const SOCK_RAW: u64 = 3;
/// The old packet socket type (the kernel makes an `AF_INET` one a packet socket).
const SOCK_PACKET: u64 = 10;
const NETLINK_ROUTE: u64 = 0;
const MFD_NOEXEC_SEAL: u64 = 8;
/// `struct mmsghdr`: a `struct msghdr` (56 bytes) and the length sent.
const MMSGHDR: u64 = 64;
/// `sendmmsg` sends at most this many messages (`UIO_MAXIOV`).
const MAX_MMSG: u64 = 1024;

/// The `prctl` operations that change privileges or dumpability.
pub const PRCTL_PRIVILEGE: &[(u64, &[u8])] = &[
    (4, b"PR_SET_DUMPABLE"),
    (8, b"PR_SET_KEEPCAPS"),
    (24, b"PR_CAPBSET_DROP"),
    (28, b"PR_SET_SECUREBITS"),
    (35, b"PR_SET_MM"),
    (38, b"PR_SET_NO_NEW_PRIVS"),
    (47, b"PR_CAP_AMBIENT"),
    (0x5961_6d61, b"PR_SET_PTRACER"),
];

/// What the registers alone say about a call of `api` (arguments `a` in
/// system call order): `Some(true)` of interest, `Some(false)` not, `None`
/// when it depends on the program's memory ([`of_interest`] reads it).
/// Reads nothing, makes no system call: safe before a hook has its stack.
#[inline]
pub fn quick(api: ApiId, a: &[u64; 6]) -> Option<bool> {
    Some(match api {
        // Only the calls that ask for executable memory.
        ApiId::mmap | ApiId::mmap64 | ApiId::mprotect => a[2] & crate::sys::PROT_EXEC != 0,
        // A destination address (an unconnected datagram socket), or a
        // connection opened by the call itself.
        ApiId::sendto => a[4] != 0 || a[3] & MSG_FASTOPEN != 0,
        ApiId::sendmsg => return (a[2] & MSG_FASTOPEN != 0).then_some(true),
        ApiId::sendmmsg => return (a[3] & MSG_FASTOPEN != 0).then_some(true),
        ApiId::socket => raw_socket(a[0] as u32 as u64, a[1] as u32 as u64, a[2] as u32 as u64),
        ApiId::prctl => {
            let op = a[0] as u32 as u64;
            // PR_CAP_AMBIENT: only raising one (PR_CAP_AMBIENT_RAISE).
            PRCTL_PRIVILEGE.iter().any(|&(o, _)| o == op) && (op != 47 || a[1] as u32 == 2)
        }
        // `dlopen(NULL)` is the program itself: it loads nothing.
        ApiId::dlopen => a[0] != 0,
        // A file that cannot be made executable is none of `exec`'s business.
        ApiId::memfd_create => a[1] & MFD_NOEXEC_SEAL == 0,
        // Another process's memory (this one's own is `tamper`'s business).
        ApiId::process_vm_readv | ApiId::process_vm_writev => return None,
        _ => true,
    })
}

/// Whether a call of `api` with arguments `a` is of interest (see the
/// module): [`quick`], and what it leaves open read from the program's
/// memory (safely: an unreadable message counts as one without an address).
pub fn of_interest(api: ApiId, a: &[u64; 6]) -> bool {
    if let Some(known) = quick(api, a) {
        return known;
    }
    match api {
        ApiId::sendmsg => has_name(a[1]),
        ApiId::sendmmsg => first_named(a[1], a[2] as u32 as u64).is_some(),
        ApiId::process_vm_readv | ApiId::process_vm_writev => !crate::guard::is_own_process(a[0]),
        _ => true,
    }
}

/// Packet sockets (`AF_PACKET`, or the old `SOCK_PACKET` type, which the
/// kernel makes one of in `AF_INET`), raw IP sockets and netlink sockets
/// other than `NETLINK_ROUTE` (which glibc's `getaddrinfo` and `getifaddrs`
/// open to read the addresses of the interfaces).
pub fn raw_socket(domain: u64, kind: u64, protocol: u64) -> bool {
    if kind & 0xf == SOCK_PACKET {
        return true;
    }
    match domain {
        AF_PACKET => true,
        AF_INET | AF_INET6 => kind & 0xf == SOCK_RAW,
        AF_NETLINK => protocol != NETLINK_ROUTE,
        _ => false,
    }
}

/// The first of the `n` messages (at most `UIO_MAXIOV`) of the `struct
/// mmsghdr` array at `vec` that names a destination: their names and
/// lengths gathered 16 messages per system call (a batch of 1024 costs 64
/// reads, not 1024); an unreadable message ends the search, as it ends the
/// kernel's sending.
#[inline(never)]
pub fn first_named(vec: u64, n: u64) -> Option<u64> {
    let n = n.min(MAX_MMSG);
    const AT_ONCE: usize = 16;
    const FIELDS: usize = 12; // msg_name (8 bytes), msg_namelen (4)
    let mut done = 0u64;
    while done < n {
        let k = ((n - done) as usize).min(AT_ONCE);
        let mut remote = [[0u64; 2]; AT_ONCE];
        for (j, r) in remote.iter_mut().enumerate().take(k) {
            *r = [vec.wrapping_add((done + j as u64) * MMSGHDR), FIELDS as u64];
        }
        let mut got = [0u8; AT_ONCE * FIELDS];
        let read = match crate::sys::read_own_gather(&remote[..k], &mut got[..k * FIELDS]) {
            Ok(read) => read,
            Err(e) if e == crate::sys::EFAULT => 0,
            // (process_vm_readv refused: one message at a time, the slow
            // way, up to the first unreadable one.)
            Err(_) => {
                return (done..n)
                    .map(|i| (i, name_of(vec.wrapping_add(i * MMSGHDR))))
                    .take_while(|(_, m)| m.is_some())
                    .find(|(_, m)| *m == Some(true))
                    .map(|(i, _)| i)
            }
        };
        let whole = read / FIELDS;
        let named = got.chunks_exact(FIELDS).take(whole).position(|f| {
            let name = u64::from_le_bytes([f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]]);
            name != 0 && u32::from_le_bytes([f[8], f[9], f[10], f[11]]) != 0
        });
        if let Some(j) = named {
            return Some(done + j as u64);
        }
        if whole < k {
            return None;
        }
        done += k as u64;
    }
    None
}

/// Whether the `struct msghdr` at `msg` names a destination (`msg_name`
/// and `msg_namelen` both set, as the kernel takes them); an unreadable
/// one names none.
fn has_name(msg: u64) -> bool {
    name_of(msg) == Some(true)
}

/// Whether the `struct msghdr` at `msg` names a destination; None when it
/// cannot be read.
fn name_of(msg: u64) -> Option<bool> {
    let mut head = [0u8; 12];
    if mem::read(msg, &mut head) != head.len() {
        return None;
    }
    let name = u64::from_le_bytes([head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7]]);
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    Some(name != 0 && len != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_decide_what_they_can() {
        assert_eq!(quick(ApiId::sendto, &[3, 0, 1, 0, 0, 0]), Some(false)); // send()
        assert_eq!(quick(ApiId::sendto, &[3, 0, 1, 0, 0x1000, 16]), Some(true));
        assert_eq!(quick(ApiId::sendto, &[3, 0, 1, MSG_FASTOPEN, 0, 0]), Some(true));
        assert_eq!(quick(ApiId::sendmsg, &[3, 0x1000, 0, 0, 0, 0]), None);
        assert_eq!(quick(ApiId::socket, &[AF_PACKET, 3, 0x300, 0, 0, 0]), Some(true));
        assert_eq!(quick(ApiId::socket, &[AF_INET, 2 | 0x80000, 0, 0, 0, 0]), Some(false)); // UDP
        assert_eq!(quick(ApiId::socket, &[AF_INET, 3, 1, 0, 0, 0]), Some(true)); // raw ICMP
        assert_eq!(quick(ApiId::socket, &[AF_NETLINK, 3, NETLINK_ROUTE, 0, 0, 0]), Some(false));
        assert_eq!(quick(ApiId::socket, &[AF_NETLINK, 3, 9, 0, 0, 0]), Some(true)); // audit
        assert_eq!(quick(ApiId::prctl, &[15, 0, 0, 0, 0, 0]), Some(false)); // PR_SET_NAME
        assert_eq!(quick(ApiId::prctl, &[4, 0, 0, 0, 0, 0]), Some(true));
        assert_eq!(quick(ApiId::prctl, &[47, 2, 12, 0, 0, 0]), Some(true));
        assert_eq!(quick(ApiId::prctl, &[47, 1, 12, 0, 0, 0]), Some(false)); // IS_SET
        assert_eq!(quick(ApiId::mmap, &[0, 4096, 1, 0x22, 0, 0]), Some(false));
        assert_eq!(quick(ApiId::memfd_create, &[0, 1, 0, 0, 0, 0]), Some(true));
        assert_eq!(quick(ApiId::memfd_create, &[0, 9, 0, 0, 0, 0]), Some(false));
        assert_eq!(quick(ApiId::setuid, &[0; 6]), Some(true));
        assert_eq!(quick(ApiId::socket, &[AF_INET, SOCK_PACKET, 0x300, 0, 0, 0]), Some(true));
        // What the registers decide, the whole test decides the same way
        // (every layer calls `of_interest`).
        for &api in ApiId::ALL {
            for a in [[0; 6], [u64::MAX; 6], [0, 0, 0, 0, 0, 0x2000_0000], [17, 3, 0, 0, 0, 0], [0, 8, 0, 0, 0, 0]] {
                if let Some(known) = quick(api, &a) {
                    assert_eq!(of_interest(api, &a), known, "{}", api.name());
                }
            }
        }
        assert!(of_interest(ApiId::rename, &[0; 6]) && !of_interest(ApiId::memfd_create, &[0, 8, 0, 0, 0, 0]));
    }
}
