//! Keeping the node's resident memory near `maxmemory`, not only the bytes it has allocated.
//!
//! `maxmemory` bounds what the allocator hands out (`used_memory`, as in Redis). Under a write
//! load that keeps evicting, the allocator's pages fill with holes: keys evicted at random leave
//! pages partly used, and bucket tables reallocated as buckets grow and shrink leave blocks of
//! sizes few others ask for. RSS then drifted 12–15% above `maxmemory` at 29 MB while
//! `used_memory` stayed at it. A guard samples the heap's resident bytes four times a second
//! and acts in three ways:
//!
//! - While the heap exceeds the bytes allocated by more than [`FRAGMENTATION_PER_MILLE`], it
//!   has the buckets' tables moved, a step of buckets a sample on an IO thread in turn, to fresh
//!   allocations: the tables left behind when most buckets grew past a size (a bucket of 10 keys
//!   in a page of 146 table blocks, the others freed) keep most pages of that size resident but
//!   mostly empty; moved, they fill the fuller pages while the old ones empty and go back to the
//!   OS. Entries need no moving: the keys written next fill their holes.
//! - Once a second it purges the allocator's free pages (mimalloc purges only when a thread
//!   next collects).
//! - While the heap grows past `maxmemory` plus [`ALLOWANCE_PER_MILLE`], it reserves that growth
//!   out of `maxmemory` for eviction: fewer keys, whose freed blocks the next writes reuse instead
//!   of new pages. The reserve is given back slowly once the heap is well under the allowance,
//!   and never exceeds a quarter of `maxmemory`.
//!
//! Evicting policies with a `maxmemory` only: under `noeviction`, OOM errors follow
//! `used_memory` exactly as Redis's do.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use ringcache_protocol::hash::BUCKETS;

use super::{lock, Keyspace};

/// Heap beyond the bytes allocated, per mille of them, that starts moving tables.
pub const FRAGMENTATION_PER_MILLE: u64 = 50;
/// Buckets whose tables one sample moves: a sweep of all takes 32 samples (8 s), in steps short
/// enough not to hold up the IO thread that runs them for long.
const RELOCATE_STEP: usize = 512;
/// Samples to wait after a sweep before the next may start (10 s): what one sweep did not
/// recover is the entries' holes, which writes fill, not tables.
const SWEEP_PAUSE: u32 = 40;
/// Samples between purges of the allocator's free pages (1 s, its own purge delay).
const PURGE_EVERY: u64 = 4;
/// Samples after a sweep during which the threads that held the moved tables are asked to
/// free the pages the move emptied, and growth is not reserved: the move's own transient.
const SETTLE: u32 = 8;

/// Heap growth allowed over `maxmemory`, per mille: 5% keeps the sampled RSS under the 10%
/// promised with room for what grows between samples and what a reserve takes to act.
pub const ALLOWANCE_PER_MILLE: u64 = 50;
/// Below this (per mille over `maxmemory`) the reserve is given back.
const RELEASE_PER_MILLE: u64 = 30;
/// Most of `maxmemory` reserved (or given back) at one sample, per mille: a burst of growth
/// turns into a few samples of extra eviction rather than one command evicting thousands of keys.
const STEP_PER_MILLE: u64 = 5;
const RELEASE_STEP_PER_MILLE: u64 = 2;

#[derive(Debug, Default)]
pub(super) struct RssGuard {
    /// Bytes taken off `maxmemory` for eviction.
    reserve: AtomicU64,
    /// Samples taken (the guard purges every [`PURGE_EVERY`]th).
    samples: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The process's anonymous resident bytes at the first sample: the fixed base (code,
    /// runtime, empty keyspace) the heap is measured above.
    base: Option<u64>,
    /// Heap bytes at the previous sample.
    last: u64,
    /// Growth past the allowance not yet reserved.
    owed: u64,
    /// Bytes allocated at the first sample (with `base`: what the heap is compared with).
    used_base: Option<u64>,
    /// The next bucket whose table a sweep moves, while one runs.
    sweep: Option<usize>,
    /// Samples left before another sweep may start.
    pause: u32,
    /// Samples left in which the move's emptied pages are being given back.
    settling: u32,
}

/// What a sample asks of the caller.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Buckets whose tables to move now ([`Keyspace::relocate_tables`]).
    pub relocate: Option<std::ops::Range<usize>>,
    /// Whether the threads that serve commands should free the pages a move emptied
    /// (`ringcache_alloc::release_free_pages` on each: mimalloc's gentler collect skips full
    /// pages, the very ones whose tables moved).
    pub collect: bool,
}

fn per_mille(n: u64, pm: u64) -> u64 {
    n / 1000 * pm
}

impl RssGuard {
    pub(super) fn reserve(&self) -> u64 {
        self.reserve.load(Relaxed)
    }

    /// One sample: `anon` is the process's anonymous resident bytes now and `used` the bytes
    /// allocated; `maxmemory` 0 (or a policy that does not evict) turns the guard off.
    fn sample(&self, anon: u64, used: u64, maxmemory: u64) -> Work {
        let mut st = lock(&self.state);
        let base = *st.base.get_or_insert(anon);
        st.used_base.get_or_insert(used);
        let heap = anon.saturating_sub(base);
        let relocate = self.sweep_step(&mut st, heap, used, maxmemory);
        st.settling = if relocate.is_some() {
            SETTLE
        } else {
            st.settling.saturating_sub(1)
        };
        let work = Work {
            collect: st.settling > 0,
            relocate,
        };
        let reserve = self.reserve.load(Relaxed);
        if maxmemory == 0 {
            st.last = heap;
            st.owed = 0;
            self.reserve.store(0, Relaxed);
            return work;
        }
        let allowance = maxmemory + per_mille(maxmemory, ALLOWANCE_PER_MILLE);
        if heap > allowance && !work.collect {
            // Only growth is owed: a heap that stays high without growing holds its holes,
            // which the keys written next fill.
            st.owed += heap.saturating_sub(st.last.max(allowance));
        } else {
            st.owed = 0;
        }
        let new = if st.owed > 0 {
            let step = st.owed.min(per_mille(maxmemory, STEP_PER_MILLE).max(1));
            st.owed -= step;
            (reserve + step).min(maxmemory / 4)
        } else if heap < maxmemory + per_mille(maxmemory, RELEASE_PER_MILLE) {
            reserve.saturating_sub(per_mille(maxmemory, RELEASE_STEP_PER_MILLE).max(1))
        } else {
            reserve
        };
        st.last = heap;
        self.reserve.store(new, Relaxed);
        work
    }

    /// Starts a sweep when the heap holds much more than is allocated, and names its next step.
    fn sweep_step(
        &self,
        st: &mut State,
        heap: u64,
        used: u64,
        maxmemory: u64,
    ) -> Option<std::ops::Range<usize>> {
        st.pause = st.pause.saturating_sub(1);
        if st.sweep.is_none() && maxmemory > 0 && st.pause == 0 {
            let allocated = used.saturating_sub(st.used_base.unwrap_or(0));
            if heap > allocated + per_mille(allocated, FRAGMENTATION_PER_MILLE) {
                st.sweep = Some(0);
            }
        }
        let from = st.sweep?;
        let to = (from + RELOCATE_STEP).min(BUCKETS);
        if to == BUCKETS {
            st.sweep = None;
            st.pause = SWEEP_PAUSE;
        } else {
            st.sweep = Some(to);
        }
        Some(from..to)
    }
}

impl Keyspace {
    /// Feeds the guard one sample of the process's anonymous resident bytes (see the module's
    /// note), in a process whose allocator counts (`used_memory` is the allocator's), where RSS
    /// is the node's own. Returns what the caller should do now: move tables, on a thread that
    /// serves commands (so the moved tables land in the fuller pages of a heap the tables
    /// already live in, not in a heap whose pages nothing refills once the tables there move
    /// again), and free pages.
    pub fn guard_rss(&self, anon_resident: u64) -> Work {
        let ev = self.eviction();
        let Some(used) = ringcache_alloc::allocated() else {
            return Work::default();
        };
        // 0 turns the guard off: `noeviction`'s OOM errors follow `used_memory` alone.
        let maxmemory = if ev.policy == super::Policy::NoEviction {
            0
        } else {
            ev.maxmemory
        };
        let work = self.rss_guard.sample(anon_resident, used, maxmemory);
        let n = self.rss_guard.samples.fetch_add(1, Relaxed);
        if maxmemory > 0 && n.is_multiple_of(PURGE_EVERY) {
            // Pages the allocator has freed stay resident until purged, and it purges only
            // when some thread next collects: once writes stop, none may. Forced, the collect
            // purges program-wide; this thread's own heap is small. (At 29 MB under load, runs
            // with a purge every sample, every fourth and none were within noise of each other.)
            ringcache_alloc::release_free_pages();
        }
        work
    }

    /// Moves the tables of the buckets in `range` to fresh allocations made by this thread.
    pub fn relocate_tables(&self, range: std::ops::Range<usize>) {
        for b in range {
            self.lock_bucket(b).relocate();
        }
    }

    /// Bytes of `maxmemory` the guard holds back from keys now (INFO's
    /// `maxmemory_rss_reserve`).
    pub fn rss_reserve(&self) -> u64 {
        self.rss_guard.reserve()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn growth_past_the_allowance_is_reserved_and_given_back_when_the_heap_falls() {
        let g = RssGuard::default();
        let max = 100 * MB;
        g.sample(10 * MB, 10 * MB, max); // the base
        g.sample(10 * MB + 100 * MB, 10 * MB + 100 * MB, max);
        assert_eq!(g.reserve(), 0, "at maxmemory: nothing reserved");
        // 110 MB of heap: 2.5 MB past the allowance, reserved half a percent a sample.
        g.sample(10 * MB + 110 * MB, 10 * MB + 110 * MB, max);
        let first = g.reserve();
        assert_eq!(first, per_mille(max, STEP_PER_MILLE));
        for _ in 0..10 {
            g.sample(10 * MB + 110 * MB, 10 * MB + 110 * MB, max);
        }
        let owed = 110 * MB - (max + per_mille(max, ALLOWANCE_PER_MILLE));
        assert_eq!(
            g.reserve(),
            owed,
            "the growth reserved, no more while the heap holds"
        );
        // The heap falls under the release mark: the reserve goes back bit by bit.
        g.sample(10 * MB + 101 * MB, 10 * MB + 101 * MB, max);
        assert_eq!(g.reserve(), owed - per_mille(max, RELEASE_STEP_PER_MILLE));
        for _ in 0..1000 {
            g.sample(10 * MB + 101 * MB, 10 * MB + 101 * MB, max);
        }
        assert_eq!(g.reserve(), 0);
    }

    #[test]
    fn the_reserve_is_bounded_and_off_without_maxmemory() {
        let g = RssGuard::default();
        let max = 100 * MB;
        g.sample(0, 0, max);
        for i in 0..2000 {
            g.sample(200 * MB + i * MB, 200 * MB + i * MB, max);
        }
        assert_eq!(g.reserve(), max / 4);
        g.sample(400 * MB, 400 * MB, 0);
        assert_eq!(g.reserve(), 0);
    }

    #[test]
    fn a_fragmented_heap_sweeps_every_bucket_once_then_pauses() {
        let g = RssGuard::default();
        let max = 100 * MB;
        assert_eq!(g.sample(0, 0, max), Work::default(), "the base");
        // 50 MB allocated, 51 MB resident: within the fragmentation allowed.
        assert_eq!(g.sample(51 * MB, 50 * MB, max), Work::default());
        // 60 MB resident: a sweep, step by step, over every bucket once.
        let mut next = 0;
        loop {
            let w = g.sample(60 * MB, 50 * MB, max);
            assert!(w.collect);
            let Some(r) = w.relocate else { break };
            assert_eq!(r.start, next);
            next = r.end;
        }
        assert_eq!(next, BUCKETS);
        // The pause counts from the sweep's last step, which the loop's last sample followed.
        for i in 2..SWEEP_PAUSE {
            let w = g.sample(60 * MB, 50 * MB, max);
            assert_eq!(w.relocate, None, "pausing");
            assert_eq!(w.collect, i < SETTLE, "settling for {SETTLE} samples");
        }
        assert_eq!(
            g.sample(60 * MB, 50 * MB, max).relocate,
            Some(0..RELOCATE_STEP)
        );
        // No sweep without maxmemory.
        let off = RssGuard::default();
        off.sample(0, 0, 0);
        assert_eq!(off.sample(60 * MB, 50 * MB, 0), Work::default());
    }
}
