//! The global allocator of the `ringcache` binary: mimalloc, counting the bytes it hands out, so
//! a node's `used_memory` (and what `maxmemory` bounds) is the allocator's own figure, as Redis's
//! is, rather than an estimate of what each key should cost.
//!
//! Counts live in cache-line-padded stripes, one per thread in turn, so IO threads allocating
//! at once do not fight over one counter; reading sums the stripes.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};

use mimalloc::MiMalloc;

/// mimalloc, counting (install with `#[global_allocator]`).
pub struct Counting;

const STRIPES: usize = 16;

#[repr(align(128))]
struct Stripe(AtomicIsize);

static COUNTS: [Stripe; STRIPES] = [const { Stripe(AtomicIsize::new(0)) }; STRIPES];
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialised and without a destructor: usable from inside the allocator.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn count(delta: isize) {
    let i = STRIPE
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_STRIPE.fetch_add(1, Relaxed) % STRIPES;
                s.set(i);
            }
            i
        })
        // A thread being torn down counts on the first stripe.
        .unwrap_or(0);
    COUNTS[i].0.fetch_add(delta, Relaxed);
    if !INSTALLED.load(Relaxed) {
        INSTALLED.store(true, Relaxed);
    }
}

/// Bytes allocated and not yet freed, by the allocator's size classes; `None` when [`Counting`]
/// is not the global allocator (e.g. a node run as a library inside tests).
pub fn allocated() -> Option<u64> {
    if !INSTALLED.load(Relaxed) {
        return None;
    }
    let sum: isize = COUNTS.iter().map(|s| s.0.load(Relaxed)).sum();
    Some(sum.max(0) as u64)
}

/// Returns this thread's freed pages to the OS now, instead of on the thread's next allocations:
/// mimalloc purges a page only some time after it empties, from the owning thread, so a thread
/// that goes quiet after freeing much (an IO thread whose idle connections just parked) would
/// keep the pages resident.
pub fn release_free_pages() {
    if INSTALLED.load(Relaxed) {
        // SAFETY: mi_collect takes no pointers. Forced, it visits every page of the calling
        // thread's heap and purges what the arenas hold free: callers run it rarely.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_collect(true)
        }
    }
}

/// The allocator's own report of its state (Redis's `MEMORY MALLOC-STATS`): what it has
/// reserved, committed and purged, and, in a build with `MI_STAT` set, its pages per size class.
pub fn stats_text() -> String {
    let mut out = String::new();
    if INSTALLED.load(Relaxed) {
        // SAFETY: mimalloc calls `append` synchronously, before returning, with NUL-terminated
        // messages and the `arg` given here: a live `&mut String`.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_stats_print_out(
                Some(append),
                (&mut out as *mut String).cast::<std::ffi::c_void>(),
            )
        }
    }
    out
}

#[allow(unsafe_code)]
unsafe extern "C" fn append(msg: *const std::ffi::c_char, arg: *mut std::ffi::c_void) {
    if msg.is_null() || arg.is_null() {
        return;
    }
    // SAFETY: see `stats_text`.
    let (msg, out) = unsafe { (std::ffi::CStr::from_ptr(msg), &mut *arg.cast::<String>()) };
    out.push_str(&msg.to_string_lossy());
}

/// Every mimalloc block is aligned to a word: layouts asking no more take the plain entry points,
/// whose fast path the aligned ones miss for sizes that are not a multiple of the alignment.
const WORD: usize = std::mem::size_of::<usize>();

/// A size rounded up to its (small) alignment: the aligned entry points take their fast path
/// only when the next free block happens to be aligned, which every block of such a size class
/// is (Lua's allocations, through mlua, ask 16 bytes' alignment for any size).
fn padded_size(size: usize, align: usize) -> usize {
    if align <= 16 {
        size.next_multiple_of(align)
    } else {
        size
    }
}

fn padded(layout: Layout) -> Layout {
    Layout::from_size_align(padded_size(layout.size(), layout.align()), layout.align())
        .unwrap_or(layout)
}

/// The bytes a block of `layout` at `p` counts for: its size class, computed from the size alone
/// (a few instructions, where asking mimalloc costs a call and a page lookup) when the block
/// is word-aligned, so allocating and freeing the same layout always count the same.
#[allow(unsafe_code)]
unsafe fn counted(p: *mut u8, size: usize, align: usize) -> isize {
    if align <= WORD {
        return size_class(size) as isize;
    }
    // SAFETY: asked only of a live block.
    unsafe { MiMalloc.usable_size(p) as isize }
}

/// mimalloc's size class for `size` bytes (its `mi_bin`): one word, then steps of two words up
/// to eight, then four classes per doubling (at most 12.5% rounding).
fn size_class(size: usize) -> usize {
    let words = size.div_ceil(WORD).max(1);
    if words <= 1 {
        return WORD;
    }
    if words <= 8 {
        // Two-word granularity: every block of two words or more is 16-byte aligned.
        return words.next_multiple_of(2) * WORD;
    }
    let top = usize::BITS - 1 - (words - 1).leading_zeros();
    let step = 1usize << (top - 2);
    words.next_multiple_of(step) * WORD
}

// SAFETY (for each method): the calls pass through to mimalloc with the caller's own arguments,
// which `GlobalAlloc`'s contract already makes valid (mimalloc's plain entry points return
// word-aligned blocks, all a layout of at most a word's alignment asks); `usable_size` is asked
// only of pointers mimalloc returned and that are still live.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_malloc(layout.size()).cast::<u8>()
            } else {
                MiMalloc.alloc(padded(layout))
            }
        };
        if !p.is_null() {
            count(unsafe { counted(p, layout.size(), layout.align()) });
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_zalloc(layout.size()).cast::<u8>()
            } else {
                MiMalloc.alloc_zeroed(padded(layout))
            }
        };
        if !p.is_null() {
            count(unsafe { counted(p, layout.size(), layout.align()) });
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-unsafe { counted(ptr, layout.size(), layout.align()) });
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = unsafe { counted(ptr, layout.size(), layout.align()) };
        let p = unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast::<u8>()
            } else {
                MiMalloc.realloc(ptr, layout, padded_size(new_size, layout.align()))
            }
        };
        if !p.is_null() {
            count(unsafe { counted(p, new_size, layout.align()) } - old);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    #[test]
    fn counts_what_is_held() {
        let before = allocated().unwrap_or(0);
        let held: Vec<Vec<u8>> = (0..1000).map(|_| vec![7u8; 1000]).collect();
        let during = allocated().unwrap_or(0);
        // Other test threads allocate too; a million bytes held must show.
        assert!(during >= before + 1_000_000, "{before} -> {during}");
        drop(held);
        let after = allocated().unwrap_or(0);
        assert!(after + 900_000 < during, "{during} -> {after}");
    }

    #[test]
    #[allow(unsafe_code)]
    fn size_classes_are_mimallocs() {
        for size in (1..=4096).chain([5000, 10_000, 65_536, 100_000, 1 << 20]) {
            // SAFETY: a fresh block, asked its size while live, then freed.
            let usable = unsafe {
                let p = libmimalloc_sys::mi_malloc(size);
                let n = libmimalloc_sys::mi_usable_size(p);
                libmimalloc_sys::mi_free(p);
                n
            };
            assert_eq!(size_class(size), usable, "size {size}");
        }
    }
}
