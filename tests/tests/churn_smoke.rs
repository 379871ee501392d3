#![allow(clippy::unwrap_used)]
//! The churn harness end to end, briefly and without membership changes: the built `churn`
//! binary runs a load through a 2-shard cluster and must report no lost write, no stale read,
//! and some successful operations; with two routers, the load must go through both.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A whole run (start, 8 s of load, final check) must finish within this.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// Runs the churn binary with `args` (bounded by [`RUN_LIMIT`]); its exit status and output lines.
fn run_churn(args: &[&str]) -> (std::process::ExitStatus, Vec<String>) {
    let ringcache = tests::ringcache_bin();
    let mut child = Command::new(env!("CARGO_BIN_EXE_churn"))
        .args(args)
        .env("RINGCACHE_BIN", &ringcache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the churn binary");
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let deadline = Instant::now() + RUN_LIMIT;
    let mut output = Vec::new();
    let status = loop {
        while let Ok(line) = rx.try_recv() {
            output.push(line);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "churn did not finish within {RUN_LIMIT:?}; output:\n{}",
                output.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The reader threads end at EOF; collect what is left (bounded).
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        output.push(line);
    }
    (status, output)
}

/// The `churn-result` line's `key=value` fields.
fn result_fields(output: &[String]) -> HashMap<String, String> {
    let text = output.join("\n");
    let result = output
        .iter()
        .find_map(|l| l.strip_prefix("churn-result "))
        .unwrap_or_else(|| panic!("no churn-result line:\n{text}"));
    result
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(fields: &HashMap<String, String>, k: &str) -> u64 {
    fields
        .get(k)
        .unwrap_or_else(|| panic!("no {k} in {fields:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{k} in {fields:?}: {e}"))
}

/// A run over 2 shards with no membership change (seed 7, 4 workers), `keys` keys at `rate`
/// requests per second through `routers` routers: it must exit 0 with a `pass` verdict. Its
/// output as one text, as lines, and the `churn-result` fields.
fn run_unchanged(
    duration: &str,
    keys: &str,
    rate: &str,
    routers: &str,
) -> (String, Vec<String>, HashMap<String, String>) {
    let (status, output) = run_churn(&[
        "--duration",
        duration,
        "--seed",
        "7",
        "--shards",
        "2",
        "--schedule",
        "none",
        "--keys",
        keys,
        "--rate",
        rate,
        "--workers",
        "4",
        "--routers",
        routers,
    ]);
    let text = output.join("\n");
    assert!(status.success(), "churn exited with {status}:\n{text}");
    let fields = result_fields(&output);
    assert_eq!(
        fields.get("verdict").map(String::as_str),
        Some("pass"),
        "{text}"
    );
    (text, output, fields)
}

#[test]
fn churn_without_changes_loses_nothing() {
    let (text, output, fields) = run_unchanged("8s", "2000", "2000", "1");
    assert!(
        num(&fields, "ops_ok") > 0,
        "no successful operation:\n{text}"
    );
    for k in [
        "lost_graceful",
        "lost_crash",
        "stale_graceful",
        "stale_crash",
        "resurrected_graceful",
        "other_graceful",
        "unreadable",
        "events",
        "stale_router_errors",
    ] {
        assert_eq!(num(&fields, k), 0, "{k} should be 0:\n{text}");
    }
    assert_eq!(num(&fields, "routers"), 1, "{text}");
    // The per-second progress line is there.
    assert!(
        output.iter().any(|l| l.starts_with("t=1s reads ")),
        "no per-second line:\n{text}"
    );
}

/// Two routers, no change: the load goes through both, and neither answers by an old ring.
#[test]
fn churn_spreads_the_load_over_two_routers() {
    let (text, output, fields) = run_unchanged("5s", "1000", "1000", "2");
    assert_eq!(num(&fields, "routers"), 2, "{text}");
    assert_eq!(num(&fields, "stale_router_errors"), 0, "{text}");
    // `load per router: router N requests, … ; router2 N requests, …`: both took some.
    let line = output
        .iter()
        .find_map(|l| l.trim().strip_prefix("load per router: "))
        .unwrap_or_else(|| panic!("no per-router load line:\n{text}"));
    let per: Vec<u64> = line
        .split("; ")
        .map(|part| {
            part.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad per-router figure {part:?}"))
        })
        .collect();
    assert_eq!(per.len(), 2, "{line}");
    assert!(per.iter().all(|n| *n > 0), "a router took no load: {line}");
}

/// `--tls --auth`: a short graceful run (a join and a leave) with every listener and link over
/// TLS and authenticated loses nothing.
#[test]
fn churn_over_tls_with_auth_loses_nothing_in_graceful_changes() {
    let (status, output) = run_churn(&[
        "--tls",
        "--auth",
        "--duration",
        "12s",
        "--seed",
        "7",
        "--shards",
        "2",
        "--schedule",
        "graceful",
        "--keys",
        "1000",
        "--rate",
        "1000",
        "--workers",
        "4",
    ]);
    let text = output.join("\n");
    assert!(status.success(), "churn exited with {status}:\n{text}");
    assert!(text.contains("TLS everywhere"), "{text}");
    assert!(text.contains("auth on"), "{text}");
    let fields = result_fields(&output);
    assert_eq!(
        fields.get("verdict").map(String::as_str),
        Some("pass"),
        "{text}"
    );
    assert_eq!(num(&fields, "lost_graceful"), 0, "{text}");
    // The last change may be skipped when the load ends first; the others must have run.
    assert!(
        num(&fields, "events") > num(&fields, "events_failed"),
        "no change ran:\n{text}"
    );
    assert!(
        text.contains("join ") && text.contains(": ok: "),
        "no join ran:\n{text}"
    );
}

/// `--split`: two live raises of a route's split (0 → 20% → 50%) under the load through two
/// routers; each moves about the share the split grew by, only from the route's pool to the
/// split's, and nothing is lost or stale.
#[test]
fn churn_with_live_split_changes_loses_nothing() {
    let (status, output) = run_churn(&[
        "--split",
        "--duration",
        "12s",
        "--seed",
        "7",
        "--shards",
        "2",
        "--schedule",
        "none",
        "--keys",
        "2000",
        "--rate",
        "1500",
        "--workers",
        "4",
        "--routers",
        "2",
    ]);
    let text = output.join("\n");
    assert!(status.success(), "churn exited with {status}:\n{text}");
    let fields = result_fields(&output);
    assert_eq!(
        fields.get("verdict").map(String::as_str),
        Some("pass"),
        "{text}"
    );
    for k in [
        "lost_graceful",
        "stale_graceful",
        "stale_router_errors_graceful",
    ] {
        assert_eq!(num(&fields, k), 0, "{k} should be 0:\n{text}");
    }
    assert_eq!(num(&fields, "events"), 2, "{text}");
    assert_eq!(num(&fields, "events_failed"), 0, "{text}");
    assert!(text.contains("split 0% -> 20%"), "{text}");
}
