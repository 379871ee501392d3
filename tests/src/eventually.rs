//! [`assert_eventually!`](crate::assert_eventually): polls a condition until it holds, bounded.

/// Polls `cond` (every 10 ms) until it holds, failing the test after `timeout` (a `Duration`).
/// The loop is bounded both in time and in iterations.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $timeout:expr $(,)?) => {
        $crate::assert_eventually!($cond, $timeout, "condition `{}` never held", stringify!($cond))
    };
    ($cond:expr, $timeout:expr, $($msg:tt)+) => {{
        let timeout: ::std::time::Duration = $timeout;
        let deadline = ::std::time::Instant::now() + timeout;
        let mut polls: u64 = 0;
        loop {
            if $cond {
                break;
            }
            polls += 1;
            if ::std::time::Instant::now() >= deadline || polls > 1_000_000 {
                panic!("after {:?}: {}", timeout, format!($($msg)+));
            }
            ::std::thread::sleep(::std::time::Duration::from_millis(10));
        }
    }};
}
