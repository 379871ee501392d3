//! The open-file limit a server needs for its `maxclients`, raised at start as Redis raises it:
//! one descriptor per client plus a reserve for listeners, backends and files. Where the hard
//! limit will not allow it, `maxclients` is lowered to fit, with a warning naming both figures.

/// Descriptors kept beyond clients (Redis's CONFIG_MIN_RESERVED_FDS is 32; the router also holds
/// its backend connections).
const RESERVED: u64 = 64;

/// Raises the soft open-file limit to fit `max_clients`; the number of clients that fit.
pub fn fit(max_clients: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let want = max_clients as u64 + RESERVED;
    let lim = getrlimit(Resource::Nofile);
    let current = lim.current.unwrap_or(u64::MAX);
    if current >= want {
        return max_clients;
    }
    let hard = lim.maximum.unwrap_or(u64::MAX);
    let target = want.min(hard);
    let raised = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: lim.maximum,
        },
    )
    .map(|()| target)
    .unwrap_or(current);
    if raised >= want {
        return max_clients;
    }
    let fits = raised.saturating_sub(RESERVED).max(1) as usize;
    tracing::warn!(
        max_clients,
        open_file_limit = raised,
        lowered_to = fits,
        "the open-file limit cannot hold max_clients; serving fewer clients (raise it with ulimit -n)"
    );
    fits
}
