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

// SAFETY (for each method): the calls pass through to mimalloc with the caller's own arguments,
// which `GlobalAlloc`'s contract already makes valid; `usable_size` is asked only of pointers
// mimalloc returned and that are still live.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() {
            count(unsafe { MiMalloc.usable_size(p) } as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            count(unsafe { MiMalloc.usable_size(p) } as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(unsafe { MiMalloc.usable_size(ptr) } as isize));
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = unsafe { MiMalloc.usable_size(ptr) } as isize;
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(unsafe { MiMalloc.usable_size(p) } as isize - old);
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
}
