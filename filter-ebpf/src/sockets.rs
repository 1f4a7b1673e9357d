//! Socket lookups from XDP: whether a socket of this network namespace
//! takes a packet (a server bound to its port, a connection to its source).

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_NETNS, bpf_sock, bpf_sock_tuple},
    helpers::bpf_sk_release,
    programs::XdpContext,
};
use filter_common::{
    FAMILY_V4,
    packet::{Addr, Packet},
};

/// A socket lookup helper's signature (`bpf_sk_lookup_udp`,
/// `bpf_skc_lookup_tcp`).
pub type SocketLookup =
    unsafe fn(*mut core::ffi::c_void, *mut bpf_sock_tuple, u32, u64, u64) -> *mut bpf_sock;

/// Whether `lookup` finds a socket for `p` in this namespace whose
/// state `wanted` accepts; the socket found is released.
#[inline(always)]
pub fn found(
    ctx: &XdpContext,
    p: &Packet,
    lookup: SocketLookup,
    wanted: impl Fn(u32) -> bool,
) -> bool {
    let mut tuple = MaybeUninit::<bpf_sock_tuple>::uninit();
    let size = sock_tuple(p, tuple.as_mut_ptr());
    // SAFETY: a valid context and tuple; the socket found is read,
    // then released.
    unsafe {
        let sk = lookup(
            ctx.ctx as *mut _,
            tuple.as_mut_ptr(),
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        );
        if sk.is_null() {
            return false;
        }
        let state = (*sk).state;
        bpf_sk_release(sk as *mut _);
        wanted(state)
    }
}

/// Writes the socket lookups' key for `p` (its addresses and ports as the
/// packet carries them) into `tp`, in place: a tuple returned by value is
/// spilled half-written, which the verifier refuses. Not zeroed (a
/// memset): each family's branch writes every byte of the returned size.
#[inline(always)]
fn sock_tuple(p: &Packet, tp: *mut bpf_sock_tuple) -> u32 {
    // SAFETY: field writes into the caller's tuple, no reads before them.
    let size = unsafe {
        if p.family == FAMILY_V4 {
            let t = core::ptr::addr_of_mut!((*tp).__bindgen_anon_1.ipv4);
            (*t).saddr = p.src[0] as u32;
            (*t).daddr = p.dst[0] as u32;
            (*t).sport = p.src_port.to_be();
            (*t).dport = p.dst_port.to_be();
            core::mem::size_of_val(&*t)
        } else {
            let t = core::ptr::addr_of_mut!((*tp).__bindgen_anon_1.ipv6);
            (*t).saddr = words(&p.src);
            (*t).daddr = words(&p.dst);
            (*t).sport = p.src_port.to_be();
            (*t).dport = p.dst_port.to_be();
            core::mem::size_of_val(&*t)
        }
    };
    size as u32
}

/// An IPv6 address as the socket tuple's four network-order words.
#[inline(always)]
fn words(a: &Addr) -> [u32; 4] {
    // Each word holds its bytes in memory order: its low half first on
    // this little-endian target.
    [
        a[0] as u32,
        (a[0] >> 32) as u32,
        a[1] as u32,
        (a[1] >> 32) as u32,
    ]
}
