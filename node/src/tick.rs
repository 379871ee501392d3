//! Replies written at the end of an IO thread's tick, as Redis writes its replies just before it
//! sleeps: a client reading many connections (a benchmark, a proxy) then wakes once for a burst
//! of replies instead of once a reply, and the IO thread polls its sockets once a tick.
//!
//! An IO thread's runtime calls [`before_park`] when it has run every ready task; a connection
//! that has replies awaits [`end_of_tick`] first. Elsewhere (a node run on a shared runtime, as in
//! tests) the wait is a no-op.

use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};

thread_local! {
    static HOOKED: Cell<bool> = const { Cell::new(false) };
    static WAITING: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
    static AT_PARK: RefCell<Vec<Box<dyn FnOnce()>>> = const { RefCell::new(Vec::new()) };
}

/// Marks the calling thread as one whose runtime calls [`before_park`].
pub fn hook_this_thread() {
    HOOKED.set(true);
}

/// The runtime's hook before it sleeps: work deferred to the end of the tick runs (scripts
/// handed to the script thread in one batch), and the connections waiting to write run now (the
/// runtime runs them instead of sleeping, since it finds tasks ready).
pub fn before_park() {
    let deferred = AT_PARK.with_borrow_mut(std::mem::take);
    deferred.into_iter().for_each(|f| f());
    WAITING.with_borrow_mut(|w| w.drain(..).for_each(Waker::wake));
}

/// Whether this thread's runtime calls [`before_park`] (an IO thread).
pub fn is_hooked() -> bool {
    HOOKED.get()
}

/// Runs `f` at the end of this IO thread's tick (see [`before_park`]); call only where
/// [`is_hooked`].
pub fn at_park(f: impl FnOnce() + 'static) {
    AT_PARK.with_borrow_mut(|v| v.push(Box::new(f)));
}

/// Resolves once this thread's other ready connections have run their requests.
pub async fn end_of_tick() {
    if !HOOKED.get() {
        return;
    }
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if queued {
            return Poll::Ready(());
        }
        queued = true;
        WAITING.with_borrow_mut(|w| w.push(cx.waker().clone()));
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn push(log: &Mutex<Vec<&'static str>>, what: &'static str) {
        log.lock().expect("log").push(what);
    }

    #[test]
    fn a_waiting_reply_goes_after_the_other_ready_tasks() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .on_thread_park(before_park)
            .build()
            .expect("runtime");
        hook_this_thread();
        let log = Arc::new(Mutex::new(Vec::new()));
        rt.block_on(async {
            let (la, lb) = (log.clone(), log.clone());
            let a = tokio::spawn(async move {
                push(&la, "a runs");
                end_of_tick().await;
                push(&la, "a writes");
            });
            let b = tokio::spawn(async move { push(&lb, "b runs") });
            a.await.expect("a");
            b.await.expect("b");
        });
        assert_eq!(*log.lock().expect("log"), ["a runs", "b runs", "a writes"]);
    }

    #[test]
    fn without_the_hook_the_wait_is_nothing() {
        // A fresh thread: not hooked, so the wait must not depend on a park hook.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            rt.block_on(end_of_tick());
        })
        .join()
        .expect("thread");
    }
}
