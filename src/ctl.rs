//! `ringcache ctl join|leave|status|cancel|split|route`: membership changes, split percents and
//! routes through a router's `RING` admin commands. Join, leave and cancel then follow `RING STATUS` every
//! 200 ms with a progress bar on stderr until the keys have moved, and print a summary; split
//! follows `RING ROUTES` likewise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use ringcache_client::admin::{status_field, Admin, RingChange};

#[derive(clap::Args)]
pub struct CtlArgs {
    /// The router's client address.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:7000",
        value_name = "HOST:PORT"
    )]
    router: String,
    /// The router's password (`requirepass` in its config), if it has one; better from the
    /// environment, which `ps` does not show.
    #[arg(
        long,
        global = true,
        env = "RINGCACHE_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// The pool to change or show (a `[[pool]]` of the router's config; default: `default`).
    #[arg(long, global = true, value_name = "NAME")]
    pool: Option<String>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(clap::Subcommand)]
enum CtlCommand {
    /// Add a shard: only the arcs it takes move, then its keys are streamed in the background.
    Join {
        /// The new shard's id.
        id: String,
        /// Its primary, HOST:PORT (an empty node).
        primary: String,
        /// Its replicas, HOST:PORT each.
        replicas: Vec<String>,
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Return once the new epoch is in effect, without waiting for the keys to move.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove a shard: its arcs move to their new owners, then the router drops it.
    Leave {
        id: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Print the ring and the progress of a change (RING STATUS).
    Status,
    /// Stop the change in progress and move back what it moved.
    Cancel {
        #[arg(long)]
        no_wait: bool,
    },
    /// Send PERCENT of the keys of the route on PREFIX to its split's pool (RING SPLIT): only
    /// the keys changing side move, in the background.
    Split {
        prefix: String,
        percent: u8,
        #[arg(long)]
        no_wait: bool,
    },
    /// Add or remove a key-prefix route on this router (RING ROUTE), where no key changes pool.
    Route {
        #[command(subcommand)]
        change: RouteChange,
    },
}

#[derive(clap::Subcommand)]
enum RouteChange {
    /// Route keys starting with PREFIX to POOL (the pool they are in now), optionally with a
    /// split to another pool at 0% (raise it with `ctl split` to move keys there).
    Add {
        prefix: String,
        pool: String,
        #[arg(long, value_name = "POOL")]
        split: Option<String>,
    },
    /// Remove the route on PREFIX (its keys must go to the same pool without it).
    Del { prefix: String },
}

const TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(200);

pub async fn run(args: CtlArgs) -> Result<()> {
    let mut admin = Admin::connect(&args.router, args.password.as_deref(), TIMEOUT)
        .await
        .map_err(|e| anyhow!("cannot reach the router: {e}"))?;
    admin.pool = args.pool;
    let (change, wait) = match args.command {
        CtlCommand::Status => {
            print!("{}", admin.status().await?.text);
            return Ok(());
        }
        CtlCommand::Join {
            id,
            primary,
            replicas,
            weight,
            no_wait,
        } => (
            RingChange::Join {
                id,
                primary,
                replicas,
                weight,
            },
            !no_wait,
        ),
        CtlCommand::Leave { id, no_wait } => (RingChange::Leave { id }, !no_wait),
        CtlCommand::Cancel { no_wait } => (RingChange::Cancel, !no_wait),
        CtlCommand::Split {
            prefix,
            percent,
            no_wait,
        } => return split(&mut admin, &prefix, percent, !no_wait).await,
        CtlCommand::Route { change } => {
            let mut args = vec!["RING".to_string(), "ROUTE".to_string()];
            match change {
                RouteChange::Add {
                    prefix,
                    pool,
                    split,
                } => {
                    args.extend(["ADD".to_string(), prefix, pool]);
                    if let Some(s) = split {
                        args.extend(["SPLIT".to_string(), s]);
                    }
                }
                RouteChange::Del { prefix } => args.extend(["DEL".to_string(), prefix]),
            }
            admin.command(&args, "RING ROUTE").await?;
            let verb = if args[2] == "ADD" { "added" } else { "removed" };
            println!("route '{}' {verb}", args[3]);
            return Ok(());
        }
    };
    let what = change.describe();
    let started = Instant::now();
    admin.start(&change).await?;
    eprintln!(
        "{what}: new epoch in effect after {:.1}s; moving keys",
        started.elapsed().as_secs_f64()
    );
    if !wait {
        return Ok(());
    }
    let tty = std::io::stderr().is_terminal();
    let mut last_print = Instant::now();
    let done = admin
        .follow(POLL, |st| {
            // On a terminal the bar redraws in place; in a log, one line a second.
            if tty {
                eprint!("\r{}", progress_line(&st.text));
                let _ = std::io::stderr().flush();
            } else if last_print.elapsed() >= Duration::from_secs(1) {
                eprintln!("{}", progress_line(&st.text));
                last_print = Instant::now();
            }
        })
        .await?;
    if tty {
        eprint!("\r{:width$}\r", "", width = 100);
    }
    println!("{}", summary(&done.text).0);
    Ok(change.outcome(&done)?)
}

/// `RING SPLIT <prefix> <percent>`, then (with `wait`) `RING ROUTES` until no key of the split
/// is left to move.
async fn split(admin: &mut Admin, prefix: &str, percent: u8, wait: bool) -> Result<()> {
    let started = Instant::now();
    let pct = percent.to_string();
    admin
        .command(&["RING", "SPLIT", prefix, pct.as_str()], "RING SPLIT")
        .await?;
    eprintln!(
        "split '{prefix}' to {percent}%: in effect after {:.1}s; moving keys",
        started.elapsed().as_secs_f64()
    );
    if !wait {
        return Ok(());
    }
    loop {
        let routes = admin.command(&["RING", "ROUTES"], "RING ROUTES").await?;
        let ringcache_protocol::Reply::Array(routes) = routes else {
            return Err(anyhow!("RING ROUTES: not a list"));
        };
        let field =
            |r: &ringcache_protocol::Reply, name: &str| ringcache_client::admin::map_field(r, name);
        let route = routes
            .iter()
            .find(|r| field(r, "prefix").is_some_and(|p| p.as_bytes() == prefix.as_bytes()))
            .ok_or_else(|| anyhow!("RING ROUTES lists no route '{prefix}'"))?;
        match field(route, "split_moving_from") {
            None => {
                println!(
                    "split '{prefix}' at {percent}%: every key changing side moved in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Some(from) => eprintln!(
                "moving from {from}%: {} arcs left",
                field(route, "split_arcs_left").unwrap_or_default()
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn num(text: &str, name: &str) -> Option<f64> {
    status_field(text, name)?.parse().ok()
}

/// `change [#######.............] 35%  arcs 540/1536  keys 12,345 (~23,000 left)  8,200 keys/s  ETA 3s`
fn progress_line(text: &str) -> String {
    const WIDTH: usize = 24;
    let change = status_field(text, "change").unwrap_or("change");
    let keys = num(text, "keys_moved").unwrap_or(0.0);
    let left = num(text, "keys_remaining");
    let (arcs, arcs_total) = (
        num(text, "arcs_done").unwrap_or(0.0),
        num(text, "arcs_total").unwrap_or(0.0),
    );
    // Keys are the better measure when the remaining count is known; arcs otherwise.
    let fraction = match left {
        Some(l) if keys + l > 0.0 => keys / (keys + l),
        _ if arcs_total > 0.0 => arcs / arcs_total,
        _ => 0.0,
    }
    .clamp(0.0, 1.0);
    let filled = (fraction * WIDTH as f64).round() as usize;
    let mut line = format!(
        "{change} [{}{}] {:>3.0}%  arcs {arcs:.0}/{arcs_total:.0}  keys {}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        fraction * 100.0,
        thousands(keys as u64),
    );
    if let Some(l) = left {
        line.push_str(&format!(" (~{} left)", thousands(l as u64)));
    }
    if let Some(rate) = num(text, "rate_keys_per_sec") {
        line.push_str(&format!("  {} keys/s", thousands(rate as u64)));
    }
    if let Some(eta) = num(text, "eta_s") {
        line.push_str(&format!("  ETA {eta:.0}s"));
    }
    if let Some(state) = status_field(text, "state").filter(|s| *s != "moving") {
        line.push_str(&format!("  ({state})"));
    }
    line
}

/// The finished change's one-line summary, and how it ended (`done`, `cancelled`, `failed`).
fn summary(text: &str) -> (String, String) {
    let change = status_field(text, "last_change").unwrap_or("change");
    let state = status_field(text, "last_state").unwrap_or("unknown");
    let keys = num(text, "last_keys_moved").unwrap_or(0.0) as u64;
    let bytes = num(text, "last_bytes_moved").unwrap_or(0.0) as u64;
    let secs = num(text, "last_elapsed_s").unwrap_or(0.0);
    let arcs = status_field(text, "last_arcs_total").unwrap_or("?");
    let rate = num(text, "last_rate_keys_per_sec").unwrap_or(0.0) as u64;
    let epoch = status_field(text, "epoch").unwrap_or("?");
    let mut line = format!(
        "{change}: {state} in {secs:.1}s, epoch {epoch}: {} keys ({}) moved in the background over {arcs} arcs, {} keys/s",
        thousands(keys),
        human_bytes(bytes),
        thousands(rate),
    );
    if let Some(e) = status_field(text, "last_last_error") {
        line.push_str(&format!(" (last error: {e})"));
    }
    (line, state.to_string())
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(b: u64) -> String {
    match b {
        0..=9_999 => format!("{b} B"),
        10_000..=999_999 => format!("{:.1} KB", b as f64 / 1e3),
        _ => format!("{:.1} MB", b as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOVING: &str = "# Ring\r\nepoch:5\r\nmigrating:1\r\n\r\n# Migration\r\nchange:join d\r\nstate:moving\r\narcs_done:768\r\narcs_total:1536\r\nkeys_moved:1000\r\nkeys_remaining:3000\r\nrate_keys_per_sec:2000\r\neta_s:1.5\r\n";

    #[test]
    fn progress_bar_uses_keys_when_known() {
        let line = progress_line(MOVING);
        assert!(
            line.starts_with("join d [######.................."),
            "{line}"
        );
        assert!(line.contains(" 25%"), "{line}");
        assert!(line.contains("arcs 768/1536"), "{line}");
        assert!(line.contains("keys 1,000 (~3,000 left)"), "{line}");
        assert!(line.contains("2,000 keys/s  ETA 2s"), "{line}");
        let unknown = MOVING.replace("keys_remaining:3000", "keys_remaining:unknown");
        assert!(progress_line(&unknown).contains(" 50%"));
    }

    #[test]
    fn summary_reports_the_outcome() {
        let done = "epoch:5\r\nmigrating:0\r\nlast_change:join d\r\nlast_state:done\r\nlast_keys_moved:123456\r\nlast_bytes_moved:12345678\r\nlast_elapsed_s:3.2\r\nlast_arcs_total:1536\r\nlast_rate_keys_per_sec:38580\r\n";
        let (line, state) = summary(done);
        assert_eq!(state, "done");
        assert_eq!(line, "join d: done in 3.2s, epoch 5: 123,456 keys (12.3 MB) moved in the background over 1536 arcs, 38,580 keys/s");
        let (_, state) = summary(&done.replace("last_state:done", "last_state:failed"));
        assert_eq!(state, "failed");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
