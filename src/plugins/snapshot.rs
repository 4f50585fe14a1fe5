//! Linear memories that can be put back to a saved state: what lets `isolation = "fresh"` give
//! every request an instance in its just-initialised state without building a new instance.
//!
//! Building a componentize-py instance costs far more than running it: wasmtime wires thousands
//! of functions between the component's core modules (CPython is linked as shared libraries), and
//! `init` runs Python. All of an idle instance's state that a call can change lives in its linear
//! memory (the interpreter, its heap, the plugin's module state): at a call boundary the stack
//! pointer and the other mutable globals are back where they were, and the host side is checked
//! by the caller (see `host`). So a fresh policy's instance is built and initialised once, its
//! memory saved to a sealed in-memory file and mapped back from it copy-on-write, and after each
//! request every page that is no longer the file's (written since) gets the saved bytes again:
//! the next request sees byte for byte the memory the first one saw.
//!
//! This module owns the memories of the engine that runs fresh policies (a wasmtime
//! `MemoryCreator`), the saved copies, and the putting back. Memories are found per instance by
//! [`Collect`], which records the memories created while it polls an instantiation.
//!
//! Unsafe code: wasmtime's `MemoryCreator` and `LinearMemory` are unsafe traits (wasmtime's JIT
//! code relies on the reservation and its guard pages), and reserving, mapping and reading the
//! memory are raw `mmap` calls on addresses wasmtime hands to compiled code. Every use is
//! confined to this file and documented where it happens.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::fs::File;
use std::future::Future;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

use crate::error::{Error, ErrorKind, OrErr};

/// Reservation when wasmtime leaves the size to the creator: a 32-bit memory's whole range.
const DEFAULT_RESERVATION: usize = 4 << 30;
/// Saved copies skip runs of zero bytes this long (the file reads back zeros there).
const ZERO_RUN: usize = 64 << 10;
/// Written pages up to this many bytes are put back by copying and stay mapped; beyond it they
/// are dropped, so an instance's private memory stays bounded.
const KEEP_WRITTEN: usize = 4 << 20;

/// What failed while a memory was being saved.
const SAVING: &str = "saving plugin memory";

/// One linear memory: a reservation of address space, of which the first `size` bytes are
/// readable and writable and the rest (guard pages included) is inaccessible.
pub struct Region {
    base: usize,
    reserved: usize,
    /// The reservation with its guard pages.
    mapped: usize,
    size: AtomicUsize,
}

impl Region {
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Acquire)
    }
}

/// The memory wasmtime uses; unmaps the reservation when the instance is dropped.
struct Memory {
    region: Arc<Region>,
}

// SAFETY: `as_ptr` is the start of a reservation of `reserved` bytes (plus the guard wasmtime
// asked for) that stays mapped at the same address until `Memory` is dropped; `grow_to` only
// makes more of it accessible, never moves it; accessible pages start zero-filled.
unsafe impl LinearMemory for Memory {
    fn byte_size(&self) -> usize {
        self.region.size()
    }

    fn byte_capacity(&self) -> usize {
        self.region.reserved
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        let old = self.region.size();
        if new_size > self.region.reserved {
            return Err(wasmtime::format_err!(
                "memory of {new_size} bytes exceeds its reservation"
            ));
        }
        if new_size > old {
            // SAFETY: [base + old, base + new_size) lies inside the reservation, which this
            // memory owns; it held no accessible pages, so nothing the guest sees changes.
            unsafe {
                rustix::mm::mprotect(
                    (self.region.base + old) as *mut _,
                    new_size - old,
                    MprotectFlags::READ | MprotectFlags::WRITE,
                )
            }
            .map_err(|e| wasmtime::format_err!("growing memory: {e}"))?;
            self.region.size.store(new_size, Ordering::Release);
        }
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.region.base as *mut u8
    }
}

impl Memory {
    /// Reserve `reserved` bytes plus `guard`, the first `minimum` of them accessible.
    fn reserve(minimum: usize, reserved: usize, guard: usize) -> Result<Memory, Error> {
        let total = reserved
            .checked_add(guard)
            .ok_or_else(|| Error::new(ErrorKind::Plugin, "memory reservation overflows"))?;
        // SAFETY: a new anonymous mapping at an address the kernel picks; nothing else refers to
        // it until it is handed to wasmtime.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                total,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .or_err(ErrorKind::Plugin, "reserving memory")?;
        let mut memory = Memory {
            region: Arc::new(Region {
                base: base as usize,
                reserved,
                mapped: total,
                size: AtomicUsize::new(0),
            }),
        };
        memory
            .grow_to(minimum)
            .or_err_with(ErrorKind::Plugin, || format!("memory of {minimum} bytes"))?;
        Ok(memory)
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: the reservation was mapped by `new_memory` and the instance using it is gone.
        let _ = unsafe { rustix::mm::munmap(self.region.base as *mut _, self.region.mapped) };
    }
}

/// Creates the memories of the fresh-isolation engine.
pub struct Creator;

// SAFETY: see `Memory`: the reservation covers `reserved_size_in_bytes` plus the guard and is
// inaccessible beyond the memory's size.
unsafe impl MemoryCreator for Creator {
    fn new_memory(
        &self,
        ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        if ty.is_shared() || ty.is_64() {
            return Err("fresh isolation supports 32-bit, unshared memories only".into());
        }
        let reserved = reserved_size_in_bytes.unwrap_or_else(|| {
            maximum
                .unwrap_or(DEFAULT_RESERVATION)
                .max(DEFAULT_RESERVATION)
        });
        // wasmtime's trait takes the reason as text.
        let memory =
            Memory::reserve(minimum, reserved, guard_size_in_bytes).map_err(|e| e.to_string())?;
        let region = memory.region.clone();
        CREATED.with(|created| {
            if let Some(list) = created.borrow_mut().as_mut() {
                list.push(region);
            }
        });
        Ok(Box::new(memory))
    }
}

thread_local! {
    /// Memories created by the instantiation being polled on this thread, if one is collecting.
    static CREATED: RefCell<Option<Vec<Arc<Region>>>> = const { RefCell::new(None) };
}

/// Polls an instantiation and records the memories it creates. Memories are created during a
/// poll of the instantiation on the polling thread (wasmtime's fibers run inside that poll), so
/// what is created while this future is polled is this instance's, even when other
/// instantiations interleave with it at their yields.
pub struct Collect<F> {
    inner: Pin<Box<F>>,
    regions: Vec<Arc<Region>>,
}

impl<F: Future> Collect<F> {
    pub fn new(inner: F) -> Collect<F> {
        Collect {
            inner: Box::pin(inner),
            regions: Vec::new(),
        }
    }
}

impl<F: Future> Future for Collect<F> {
    type Output = (F::Output, Vec<Arc<Region>>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let outer = CREATED.with(|c| c.borrow_mut().replace(Vec::new()));
        let polled = this.inner.as_mut().poll(cx);
        let mine = CREATED.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
        this.regions.extend(mine.unwrap_or_default());
        match polled {
            Poll::Ready(output) => Poll::Ready((output, std::mem::take(&mut this.regions))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A memory's saved state: its size and a sealed file holding its bytes.
pub struct Saved {
    region: Arc<Region>,
    size: usize,
    file: File,
    /// A read-only shared mapping of `file`: where written pages are copied back from.
    source: usize,
    /// The written ranges found by the last restore (kept to reuse its allocation).
    written: Vec<written::PageRegion>,
}

impl Drop for Saved {
    fn drop(&mut self) {
        if self.size > 0 {
            // SAFETY: `source` was mapped by `take` with this length and is used by nothing else.
            let _ = unsafe { rustix::mm::munmap(self.source as *mut _, self.size) };
        }
    }
}

impl Saved {
    /// Save `region` as it is now and map it back from the copy, so the saved pages are shared
    /// with the file until written. Call only while no call runs in the instance.
    pub fn take(region: Arc<Region>) -> Result<Saved, Error> {
        let size = region.size();
        let fd = rustix::fs::memfd_create(
            "edgewarden-plugin-memory",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .or_err(ErrorKind::Plugin, SAVING)?;
        let file = File::from(fd);
        file.set_len(size as u64)
            .or_err(ErrorKind::Plugin, SAVING)?;
        // SAFETY: [base, base + size) is the memory's accessible part, mapped for as long as
        // `region`'s instance lives, and no call runs in the instance, so nothing writes to it.
        let bytes = unsafe { std::slice::from_raw_parts(region.base as *const u8, size) };
        for (i, chunk) in bytes.chunks(ZERO_RUN).enumerate() {
            if chunk.iter().any(|&b| b != 0) {
                file.write_all_at(chunk, (i * ZERO_RUN) as u64)
                    .or_err(ErrorKind::Plugin, SAVING)?;
            }
        }
        rustix::fs::fcntl_add_seals(
            &file,
            SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
        )
        .or_err(ErrorKind::Plugin, "sealing saved plugin memory")?;
        let source = if size == 0 {
            0
        } else {
            // SAFETY: a new read-only mapping of the sealed file at an address the kernel picks.
            unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    size,
                    ProtFlags::READ,
                    MapFlags::SHARED,
                    file.as_fd(),
                    0,
                )
            }
            .or_err(ErrorKind::Plugin, "mapping saved plugin memory")? as usize
        };
        let saved = Saved {
            region,
            size,
            file,
            source,
            written: Vec::new(),
        };
        saved.map()?;
        Ok(saved)
    }

    /// Put the memory back to its saved state. `false` when it cannot be (the memory grew since:
    /// the instance must not be reused).
    ///
    /// Only pages the instance has written are put back (pages still backed by the saved file
    /// are already right), by copying the saved bytes over them: they stay mapped and writable,
    /// so the next call does not fault on them again. When more than [`KEEP_WRITTEN`] bytes have
    /// been written they are dropped instead (they read back from the file). Where the kernel
    /// cannot report written pages, the whole memory is mapped again.
    pub fn restore(&mut self) -> Result<bool, Error> {
        if self.region.size() != self.size {
            return Ok(false);
        }
        if self.size == 0 {
            return Ok(true);
        }
        match written::put_back(self.region.base, self.source, self.size, &mut self.written) {
            Ok(()) => Ok(true),
            Err(_) => {
                self.map()?;
                Ok(true)
            }
        }
    }

    fn map(&self) -> Result<(), Error> {
        if self.size == 0 {
            return Ok(());
        }
        // SAFETY: replaces the memory's accessible part, at the same address and with the same
        // protection, by a private copy-on-write mapping of the saved bytes. No call runs in the
        // instance, and wasmtime keeps no copy of the contents.
        unsafe {
            rustix::mm::mmap(
                self.region.base as *mut _,
                self.size,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED,
                self.file.as_fd(),
                0,
            )
        }
        .or_err(ErrorKind::Plugin, "restoring plugin memory")?;
        Ok(())
    }
}

/// Finding the pages of a memory that differ from the file it maps, with Linux's `PAGEMAP_SCAN`
/// (6.7 and later) on `/proc/self/pagemap`, and giving them the file's bytes again.
mod written {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::sync::OnceLock;

    use rustix::mm::Advice;

    use crate::error::{Error, ErrorKind, OrErr};

    /// `_IOWR('f', 16, struct pm_scan_arg)`, from `linux/fs.h`.
    const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;
    const PAGE_IS_PRESENT: u64 = 1 << 3;
    const PAGE_IS_FILE: u64 = 1 << 2;
    const PAGE_IS_SWAPPED: u64 = 1 << 4;
    const PAGE_IS_PFNZERO: u64 = 1 << 5;
    /// Regions reported per scan; a memory with more goes round again from where it stopped.
    const REGIONS: usize = 256;

    /// `struct pm_scan_arg` of `linux/fs.h`.
    #[repr(C)]
    struct ScanArg {
        size: u64,
        flags: u64,
        start: u64,
        end: u64,
        walk_end: u64,
        vec: u64,
        vec_len: u64,
        max_pages: u64,
        category_inverted: u64,
        category_mask: u64,
        category_anyof_mask: u64,
        return_mask: u64,
    }

    /// `struct page_region` of `linux/fs.h`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub(super) struct PageRegion {
        pub(super) start: u64,
        pub(super) end: u64,
        categories: u64,
    }

    fn pagemap() -> Option<&'static File> {
        static PAGEMAP: OnceLock<Option<File>> = OnceLock::new();
        PAGEMAP
            .get_or_init(|| File::open("/proc/self/pagemap").ok())
            .as_ref()
    }

    /// Put back every page of [base, base + len) that is no longer the mapped file's: written
    /// (copied on write: present and anonymous, or swapped out), from `source`, the file's bytes.
    /// Errors when the kernel cannot scan or drop; the caller then maps the file again.
    /// `written` is scratch space for the scan.
    pub fn put_back(
        base: usize,
        source: usize,
        len: usize,
        written: &mut Vec<PageRegion>,
    ) -> Result<(), Error> {
        scan(base, len, written)?;
        let total: u64 = written.iter().map(|r| r.end - r.start).sum();
        let copy = total <= super::KEEP_WRITTEN as u64;
        for region in written.iter() {
            let offset = region.start as usize - base;
            let bytes = (region.end - region.start) as usize;
            if copy {
                // SAFETY: the kernel reports ranges inside [base, base + len), the memory's
                // accessible part, and `source` maps the saved bytes of the same length. No call
                // runs in the instance.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        (source + offset) as *const u8,
                        region.start as *mut u8,
                        bytes,
                    )
                };
            } else {
                // SAFETY: as above; dropping a written copy makes the page read back from the
                // sealed file, which is the saved state.
                unsafe {
                    rustix::mm::madvise(region.start as *mut _, bytes, Advice::LinuxDontNeed)
                }
                .or_err(ErrorKind::Plugin, "dropping written pages")?;
            }
        }
        Ok(())
    }

    /// The written ranges of [base, base + len), into `written` (cleared first).
    pub(super) fn scan(
        base: usize,
        len: usize,
        written: &mut Vec<PageRegion>,
    ) -> Result<(), Error> {
        written.clear();
        let pagemap =
            pagemap().ok_or_else(|| Error::new(ErrorKind::Plugin, "no /proc/self/pagemap"))?;
        let end = (base + len) as u64;
        let mut from = base as u64;
        let mut regions = [PageRegion::default(); REGIONS];
        while from < end {
            let mut arg = ScanArg {
                size: std::mem::size_of::<ScanArg>() as u64,
                flags: 0,
                start: from,
                end,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: REGIONS as u64,
                max_pages: 0,
                // Interesting: neither file-backed nor the zero page, and present or swapped.
                category_inverted: PAGE_IS_FILE | PAGE_IS_PFNZERO,
                category_mask: PAGE_IS_FILE | PAGE_IS_PFNZERO,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: 0,
            };
            // SAFETY: `arg` and `regions` are valid for the call and sized as the kernel's
            // structures; the kernel only writes `walk_end` and at most `vec_len` regions.
            let found = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
            if found < 0 {
                return Err(Error::because(
                    ErrorKind::Plugin,
                    "PAGEMAP_SCAN",
                    std::io::Error::last_os_error(),
                ));
            }
            written.extend_from_slice(&regions[..found as usize]);
            if arg.walk_end <= from {
                return Err(Error::new(
                    ErrorKind::Plugin,
                    "PAGEMAP_SCAN made no progress",
                ));
            }
            from = arg.walk_end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;
    const SIZE: usize = 8 << 20;

    fn memory() -> Memory {
        Memory::reserve(SIZE, 2 * SIZE, 1 << 16).expect("reserve")
    }

    fn bytes(region: &Region) -> &[u8] {
        // SAFETY: the test owns the memory; it is written only through `write`, never while
        // this slice is in use.
        unsafe { std::slice::from_raw_parts(region.base as *const u8, region.size()) }
    }

    fn write(region: &Region, offset: usize, value: u8) {
        assert!(offset < region.size());
        // SAFETY: inside the memory's accessible part, which the test owns.
        unsafe { ((region.base + offset) as *mut u8).write(value) };
    }

    /// The first half patterned page by page, the second half zero (skipped when saving).
    fn patterned(region: &Region) -> Vec<u8> {
        for i in 0..SIZE / 2 {
            write(region, i, ((i / PAGE) as u8) ^ (i as u8) ^ 0x5a);
        }
        bytes(region).to_vec()
    }

    fn write_pages(region: &Region, pages: impl IntoIterator<Item = usize>, value: u8) {
        for page in pages {
            write(region, page * PAGE + 17, value);
        }
    }

    #[test]
    fn restoring_puts_back_every_page_written_since_the_save() {
        let memory = memory();
        let region = memory.region.clone();
        let expected = patterned(&region);
        let mut saved = Saved::take(region.clone()).expect("save");
        assert_eq!(bytes(&region), &expected[..], "saving changes nothing");

        // Pages with data and pages that were zero; then again, over pages already copied once.
        for (round, pages) in [vec![3, 100, 1500, 2047], vec![3, 4, 1024, 1999]]
            .into_iter()
            .enumerate()
        {
            write_pages(&region, pages, 0xff - round as u8);
            assert_ne!(bytes(&region), &expected[..]);
            assert!(saved.restore().expect("restore"));
            assert_eq!(bytes(&region), &expected[..], "round {round}");
        }

        // More than KEEP_WRITTEN bytes written: dropped instead of copied, same result.
        write_pages(&region, 0..(6 << 20) / PAGE, 1);
        assert!(saved.restore().expect("restore"));
        assert_eq!(bytes(&region), &expected[..], "after a large write");
        write_pages(&region, [5, 6], 2);
        assert!(saved.restore().expect("restore"));
        assert_eq!(
            bytes(&region),
            &expected[..],
            "after a large write and a small one"
        );
    }

    #[test]
    fn the_kernel_reports_exactly_the_written_pages() {
        let memory = memory();
        let region = memory.region.clone();
        patterned(&region);
        let _saved = Saved::take(region.clone()).expect("save");
        // Read every page: read pages are the file's and must not be reported.
        let sum: u64 = bytes(&region).iter().step_by(PAGE).map(|&b| b as u64).sum();
        assert!(sum > 0);
        write_pages(&region, [7, 8, 1600], 9);
        let mut written = Vec::new();
        written::scan(region.base, SIZE, &mut written).expect("PAGEMAP_SCAN (Linux 6.7 or later)");
        let pages: Vec<(usize, usize)> = written
            .iter()
            .map(|r| {
                (
                    (r.start as usize - region.base) / PAGE,
                    (r.end - r.start) as usize / PAGE,
                )
            })
            .collect();
        assert_eq!(pages, vec![(7, 2), (1600, 1)]);
    }

    #[test]
    fn mapping_the_saved_file_again_also_restores() {
        let memory = memory();
        let region = memory.region.clone();
        let expected = patterned(&region);
        let saved = Saved::take(region.clone()).expect("save");
        write_pages(&region, [1, 2000], 3);
        saved.map().expect("map");
        assert_eq!(bytes(&region), &expected[..]);
    }

    #[test]
    fn a_memory_that_grew_is_not_restored() {
        let mut memory = memory();
        let region = memory.region.clone();
        patterned(&region);
        let mut saved = Saved::take(region.clone()).expect("save");
        memory.grow_to(SIZE + (64 << 10)).expect("grow");
        assert!(!saved.restore().expect("restore"));
    }
}
