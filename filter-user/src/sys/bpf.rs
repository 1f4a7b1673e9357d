//! BPF map memory read whole: an mmapable array's values mapped read-only,
//! and an array read in one batch lookup through `bpf(2)`.

/// A read-only shared mapping of a file descriptor's memory (an mmapable
/// BPF array's values), unmapped on drop.
pub(crate) struct SharedMapping {
    ptr: *const u64,
    len: usize,
}

// SAFETY: the mapping is read-only and only read with volatile loads.
unsafe impl Send for SharedMapping {}

impl SharedMapping {
    /// Maps the first `len` bytes (a multiple of 8) of `fd` read-only.
    pub(crate) fn new(
        fd: std::os::fd::BorrowedFd<'_>,
        len: usize,
    ) -> std::io::Result<SharedMapping> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a fresh mapping at an address the kernel picks; the fd
        // is open for the duration of the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedMapping {
            ptr: ptr as *const u64,
            len,
        })
    }

    /// The `i`th u64, as the kernel last wrote it (other CPUs keep
    /// writing: each aligned 8-byte load is whole, but two are not a
    /// snapshot).
    pub(crate) fn u64_at(&self, i: usize) -> u64 {
        assert!(
            i < self.len / 8,
            "u64 {i} outside a {}-byte mapping",
            self.len
        );
        // SAFETY: inside the mapping, aligned (mmap returns page-aligned).
        unsafe { std::ptr::read_volatile(self.ptr.add(i)) }
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: ptr and len are what mmap returned and took.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// `bpf(2)` with the attributes `attr` (a `#[repr(C)]` union member).
///
/// # Safety
/// The pointers in `attr` must point at live buffers of the sizes the
/// command writes through them.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<()> {
    // SAFETY: attr is a live, writable struct of the size passed; the
    // caller vouches for the pointers inside it.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The `bpf(2)` attributes of the batch commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Reads every value of the BPF array `fd` (u32 keys) in one call, where
/// element by element takes a call each (65536 of them: 20 ms), and into
/// the heap, where aya's by-value reads would put a large value on the
/// stack. Returns how many entries the kernel copied.
///
/// # Safety
/// `values` must hold at least `entries` of the map's values: the kernel
/// writes the map's value size for each entry it copies.
pub(crate) unsafe fn map_read_all(
    fd: std::os::fd::BorrowedFd<'_>,
    values: &mut [u64],
    entries: usize,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd as _;
    let mut keys = vec![0u32; entries];
    let mut next = 0u32;
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: &mut next as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: entries as u32,
        map_fd: fd.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: live buffers: `entries` keys, and values that the caller
    // sizes to `entries` of the map's values (this function's contract).
    match unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) } {
        // ENOENT: the batch reached the map's end, which reading all of it
        // does.
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
        _ => Ok(attr.count as usize),
    }
}

/// Writes `values` (laid out as the map's values) at the start of the
/// mmapable BPF array `fd`, in one copy where element by element takes a
/// call each (a 4 MB array: half a million of them).
pub(crate) fn write_mapped<T: Copy>(
    fd: std::os::fd::BorrowedFd<'_>,
    values: &[T],
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let len = std::mem::size_of_val(values);
    if len == 0 {
        return Ok(());
    }
    // SAFETY: a fresh mapping at an address the kernel picks; the fd is
    // open for the duration of the call.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `len` bytes mapped writable just above, page-aligned; the
    // source is a live slice of that length; unmapped right after.
    unsafe {
        std::ptr::copy_nonoverlapping(values.as_ptr(), ptr as *mut T, values.len());
        libc::munmap(ptr, len);
    }
    Ok(())
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// Writes `keys[i]` -> `values[i]` into the BPF map `fd` (a hash or an
/// array, not per-CPU; u32 keys, values of the map's value size) in one
/// call (kernel 5.6 and later), where one by one takes a call each.
pub(crate) fn map_update_batch<V: Copy>(
    fd: std::os::fd::BorrowedFd<'_>,
    keys: &[u32],
    values: &[V],
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    assert_eq!(keys.len(), values.len(), "a value per key");
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: keys.len() as u32,
        map_fd: fd.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: live buffers of `count` keys and values, which the kernel
    // only reads; the caller's map takes u32 keys and values of V's size.
    unsafe { bpf(BPF_MAP_UPDATE_BATCH, &mut attr) }?;
    if attr.count as usize != keys.len() {
        return Err(std::io::Error::other(format!(
            "the kernel took {} of {} entries",
            attr.count,
            keys.len()
        )));
    }
    Ok(())
}
