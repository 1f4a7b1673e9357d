//! The program's global data: what the loader fixes (the settings, the
//! guarded ports), the generation's copy of the open requests (which the
//! recorder and a reload's seeder write), and the flags the controller
//! flips while the program runs. Each is read with a load from an address
//! the verifier knows, where a map lookup takes a dozen instructions and a
//! round trip of its key through the stack.
//!
//! The compiler sees only the zeros below; the loader, the controller and
//! the other programs write the real values (filter_common::GLOBAL_*),
//! hence the volatile reads.

use filter_common::{Config, GUARD_TABLE_LEN, UDP_PORTS};

#[unsafe(no_mangle)]
static LOADED_CONFIG: Config = unsafe { core::mem::zeroed() };

#[unsafe(no_mangle)]
static GUARD_PORTS: [u8; GUARD_TABLE_LEN] = [0; GUARD_TABLE_LEN];

// filter_common::GLOBAL_DOOR_MASK and GLOBAL_FRAG_CACHE_MASK: the loader
// writes them with the maps' sizes; 0 (every source in slot 0) until then.
#[unsafe(no_mangle)]
static DOOR_MASK: u32 = 0;

#[unsafe(no_mangle)]
static FRAG_CACHE_MASK: u32 = 0;

// filter_common::OPEN_UNTIL_SECTION.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".bss.open")]
static mut OPEN_UNTIL: [u64; UDP_PORTS] = [0; UDP_PORTS];

// Each flag in a data section of its own: one writer each, so that no
// controller's write of one can undo another's write of the other.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.mode")]
static mut MODE: u32 = 0;

#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.capture")]
static mut CAPTURING: u32 = 0;

#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.bans")]
static mut BAN_BITS: u32 = 0;

// filter_common::SHARED_FLAG.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.shared")]
static mut REQUESTS_SHARED: u32 = 0;

// filter_common::VIRTUAL_CLOCK_SECTION.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.clock")]
static mut VIRTUAL_NOW: u64 = 0;

/// The settings the program was loaded with, monitor mode aside (see
/// [`monitor_flag`]). Read-only to the program and frozen: the verifier
/// knows each field as a constant and removes the steps it turns off.
#[inline(always)]
pub fn config() -> &'static Config {
    // A volatile read of the address, so that every field is a load.
    // SAFETY: the address of a static, read from a local.
    unsafe { &*core::ptr::read_volatile(&(&raw const LOADED_CONFIG)) }
}

/// The loaded settings' flags (as [`config`]'s; the early verdict reads
/// them one by one, where the pointer would be held across it).
#[inline(always)]
pub fn flags() -> u32 {
    // SAFETY: a field of a static.
    unsafe { core::ptr::read_volatile(&raw const LOADED_CONFIG.flags) }
}

/// The loaded settings' fragment memory, in ns.
#[inline(always)]
pub fn frag_track_ns() -> u64 {
    // SAFETY: a field of a static.
    unsafe { core::ptr::read_volatile(&raw const LOADED_CONFIG.frag_track_ns) }
}

/// Whether the port whose two bytes, as they lie in the packet, read
/// `wire` as a native u16 is guarded ([`filter_common::GLOBAL_GUARD_PORTS`]).
#[inline(always)]
pub fn guarded_wire(wire: u16) -> bool {
    guard_slot_wire(wire) != 0
}

/// The guard table's byte for such a port: 0 when it is not guarded, else
/// its slot of length counters ([`filter_common::GUARD_SLOTS`]).
#[inline(always)]
pub fn guard_slot_wire(wire: u16) -> u8 {
    // SAFETY: a u16 index into a static array of 65536 bytes.
    unsafe { core::ptr::read_volatile(&GUARD_PORTS[wire as usize]) }
}

/// CONFIG_MONITOR while the filter only counts what it would drop, else 0
/// (`filterctl mode`).
#[inline(always)]
pub fn monitor_flag() -> u32 {
    // SAFETY: an aligned u32 that the controller may rewrite at any time;
    // one load sees either value.
    unsafe { core::ptr::read_volatile(&raw const MODE) }
}

/// Whether another interface's recorder writes the LOCAL_PORTS this
/// program reads ([`filter_common::SHARED_FLAG`]): then a port that
/// [`open_until`] finds closed may still be open there.
#[inline(always)]
pub fn requests_shared() -> bool {
    // SAFETY: as in monitor_flag.
    unsafe { core::ptr::read_volatile(&raw const REQUESTS_SHARED) != 0 }
}

/// The time a test run was given ([`filter_common::CONFIG_VIRTUAL_CLOCK`]).
#[inline(always)]
pub fn virtual_now() -> u64 {
    // SAFETY: an aligned u64 that only the controller writes, between runs.
    unsafe { core::ptr::read_volatile(&raw const VIRTUAL_NOW) }
}

/// DOOR's slots less one (a power of two less one), as loaded.
#[inline(always)]
pub fn door_mask() -> u32 {
    // SAFETY: a read-only static.
    unsafe { core::ptr::read_volatile(&raw const DOOR_MASK) }
}

/// FRAG_CACHE's slots less one, as loaded.
#[inline(always)]
pub fn frag_cache_mask() -> u32 {
    // SAFETY: a read-only static.
    unsafe { core::ptr::read_volatile(&raw const FRAG_CACHE_MASK) }
}

/// Whether a capture may run: then the drop path looks at its settings.
/// Set by `filterctl capture` (every second while it runs, so that a
/// generation loaded meanwhile catches up) and cleared when it stops.
#[inline(always)]
pub fn capturing() -> bool {
    // SAFETY: as in monitor_flag.
    unsafe { core::ptr::read_volatile(&raw const CAPTURING) != 0 }
}

/// This generation's copy of the BAN_FLAG state map (BAN_ANY, BAN_WIDE),
/// for the early verdict: the loader copies it in at load and again after
/// the switch (for bans the previous generation set meanwhile), `filterctl
/// ban` and the program set bits in both. Until a bit arrives, a banned
/// source's unasked replies are dropped as unsolicited rather than as
/// banned; the full path reads the shared flag.
#[inline(always)]
pub fn ban_bits() -> u32 {
    // SAFETY: as in monitor_flag.
    unsafe { core::ptr::read_volatile(&raw const BAN_BITS) }
}

/// Adds `bits` to [`ban_bits`]. A plain read-modify-write: a bit lost to
/// another CPU's write at the same instant costs what a lost hint bit
/// costs (see env.rs, set_ban): a counter, not a verdict.
#[inline(always)]
pub fn add_ban_bits(bits: u32) {
    // SAFETY: as in monitor_flag; an aligned u32 store.
    unsafe { core::ptr::write_volatile(&raw mut BAN_BITS, ban_bits() | bits) }
}

/// Until when a request sent from local `port` may be answered: this
/// generation's copy of LOCAL_PORTS' `until` (see
/// [`filter_common::OPEN_UNTIL_SECTION`]); 0 if none was ever sent.
#[inline(always)]
pub fn open_until(port: u16) -> u64 {
    // SAFETY: a u16 index into a static array of 65536 u64s, which the
    // egress program and a reload may rewrite at any time; one aligned
    // load sees either value.
    unsafe { core::ptr::read_volatile(&raw const OPEN_UNTIL[port as usize]) }
}

/// Moves [`open_until`] of `port` on to `until` if that is later. A plain
/// read-modify-write, as LOCAL_PORTS' (see requests.rs).
#[inline(always)]
pub fn extend_open(port: u16, until: u64) {
    // SAFETY: as in open_until; an aligned u64 store.
    unsafe {
        let slot = &raw mut OPEN_UNTIL[port as usize];
        if core::ptr::read_volatile(slot) < until {
            core::ptr::write_volatile(slot, until);
        }
    }
}
