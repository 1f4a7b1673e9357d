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
    #[cfg(test)]
    if let Some(rc) = fake::call(cmd, (attr as *mut T).cast(), size_of::<T>()) {
        return if rc < 0 {
            Err(std::io::Error::from_raw_os_error(-rc))
        } else {
            Ok(())
        };
    }
    // SAFETY: attr is a live, writable struct of the size passed; the
    // caller vouches for the pointers inside it.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The seam at `bpf(2)` (aya's `sys/fake.rs` is the model): a test puts
/// a function of (command, attributes) in the kernel's place for its own
/// thread, so that what this file builds around the call runs without
/// root or a kernel that has the command.
#[cfg(test)]
pub(crate) mod fake {
    use std::cell::RefCell;

    type Kernel = Box<dyn FnMut(libc::c_long, *mut u8, usize) -> i32>;

    thread_local! {
        static KERNEL: RefCell<Option<Kernel>> = const { RefCell::new(None) };
    }

    /// Answers this thread's `bpf(2)` calls with `kernel` (0 or a negated
    /// errno) until the guard drops.
    pub(crate) fn kernel(
        kernel: impl FnMut(libc::c_long, *mut u8, usize) -> i32 + 'static,
    ) -> impl Drop {
        struct Restore;
        impl Drop for Restore {
            fn drop(&mut self) {
                KERNEL.with(|k| k.borrow_mut().take());
            }
        }
        KERNEL.with(|k| *k.borrow_mut() = Some(Box::new(kernel)));
        Restore
    }

    pub(super) fn call(cmd: libc::c_long, attr: *mut u8, size: usize) -> Option<i32> {
        KERNEL.with(|k| k.borrow_mut().as_mut().map(|f| f(cmd, attr, size)))
    }
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

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd as _, FromRawFd as _, OwnedFd};

    use super::*;

    /// Any descriptor: the fake kernel never looks at it.
    fn some_fd() -> std::fs::File {
        std::fs::File::open("/dev/null").unwrap()
    }

    /// The batch attributes the fake kernel was handed.
    fn batch<'a>(
        cmd: libc::c_long,
        attr: *mut u8,
        size: usize,
        want: libc::c_long,
    ) -> &'a mut BatchAttr {
        assert_eq!(cmd, want, "bpf command");
        assert_eq!(size, size_of::<BatchAttr>());
        // SAFETY: the caller's BatchAttr, live for the call.
        unsafe { &mut *attr.cast::<BatchAttr>() }
    }

    #[test]
    fn a_read_to_the_end_of_the_map_returns_what_the_kernel_copied() {
        let _k = fake::kernel(|cmd, attr, size| {
            let a = batch(cmd, attr, size, BPF_MAP_LOOKUP_BATCH);
            assert_eq!(a.count, 4, "asks for every entry");
            let values = a.values as *mut u64;
            for i in 0..3 {
                // SAFETY: the caller's buffer of 4 values.
                unsafe { values.add(i).write(10 + i as u64) };
            }
            a.count = 3;
            // The end of the map reached: ENOENT, with what was copied.
            -libc::ENOENT
        });
        let mut values = [0u64; 4];
        // SAFETY: room for 4 one-word values.
        let got = unsafe { map_read_all(some_fd().as_fd(), &mut values, 4) }.unwrap();
        assert_eq!(got, 3);
        assert_eq!(values, [10, 11, 12, 0]);
    }

    #[test]
    fn a_refused_read_is_an_error() {
        let _k = fake::kernel(|_, _, _| -libc::EPERM);
        let mut values = [0u64; 2];
        // SAFETY: room for 2 one-word values.
        let e = unsafe { map_read_all(some_fd().as_fd(), &mut values, 2) }.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn a_batch_write_hands_every_key_and_value_and_fails_when_cut_short() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let record = seen.clone();
        let _k = fake::kernel(move |cmd, attr, size| {
            let a = batch(cmd, attr, size, BPF_MAP_UPDATE_BATCH);
            let n = a.count as usize;
            // SAFETY: the caller's key and value arrays of `count`.
            let (keys, values) = unsafe {
                (
                    std::slice::from_raw_parts(a.keys as *const u32, n),
                    std::slice::from_raw_parts(a.values as *const u16, n),
                )
            };
            record.borrow_mut().push((keys.to_vec(), values.to_vec()));
            // Takes all but the last of a batch of three.
            if n == 3 {
                a.count = 2;
            }
            0
        });
        map_update_batch(some_fd().as_fd(), &[7, 9], &[70u16, 90]).unwrap();
        let e = map_update_batch(some_fd().as_fd(), &[1, 2, 3], &[1u16, 2, 3]).unwrap_err();
        assert_eq!(e.to_string(), "the kernel took 2 of 3 entries");
        // Nothing to write: no call at all.
        map_update_batch::<u16>(some_fd().as_fd(), &[], &[]).unwrap();
        assert_eq!(
            *seen.borrow(),
            [(vec![7, 9], vec![70, 90]), (vec![1, 2, 3], vec![1, 2, 3])]
        );
    }

    #[test]
    fn what_is_written_through_a_mapping_reads_back() {
        // A memfd stands in for an mmapable array: the same mmap calls,
        // no BPF.
        // SAFETY: a fresh fd, owned below.
        let fd = unsafe { libc::memfd_create(c"mapped".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh fd of ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        std::fs::File::from(fd.try_clone().unwrap())
            .set_len(4096)
            .unwrap();
        write_mapped(fd.as_fd(), &[1u64, 2, 3]).unwrap();
        let m = SharedMapping::new(fd.as_fd(), 4096).unwrap();
        assert_eq!([m.u64_at(0), m.u64_at(2), m.u64_at(3)], [1, 3, 0]);
    }
}
