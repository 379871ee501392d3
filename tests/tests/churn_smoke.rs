#![allow(clippy::unwrap_used)]
//! The churn harness end to end, briefly and without membership changes: the built `churn`
//! binary runs a load through a 2-shard cluster and must report no lost write, no stale read,
//! and some successful operations.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The whole run (start, 8 s of load, final check) must finish within this.
const RUN_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn churn_without_changes_loses_nothing() {
    let ringcache = tests::ringcache_bin();
    let mut child = Command::new(env!("CARGO_BIN_EXE_churn"))
        .args([
            "--duration",
            "8s",
            "--seed",
            "7",
            "--shards",
            "2",
            "--schedule",
            "none",
            "--keys",
            "2000",
            "--rate",
            "2000",
            "--workers",
            "4",
        ])
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
    let text = output.join("\n");
    assert!(status.success(), "churn exited with {status}:\n{text}");

    let result = output
        .iter()
        .find_map(|l| l.strip_prefix("churn-result "))
        .unwrap_or_else(|| panic!("no churn-result line:\n{text}"));
    let fields: HashMap<&str, &str> = result
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let num = |k: &str| -> u64 {
        fields
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in {result}"))
            .parse()
            .unwrap_or_else(|e| panic!("{k} in {result}: {e}"))
    };
    assert!(num("ops_ok") > 0, "no successful operation:\n{text}");
    for k in [
        "lost_graceful",
        "lost_crash",
        "stale_graceful",
        "stale_crash",
        "resurrected_graceful",
        "other_graceful",
        "unreadable",
        "events",
    ] {
        assert_eq!(num(k), 0, "{k} should be 0:\n{text}");
    }
    assert_eq!(fields.get("verdict"), Some(&"pass"), "{text}");
    // The per-second progress line is there.
    assert!(
        output.iter().any(|l| l.starts_with("t=1s reads ")),
        "no per-second line:\n{text}"
    );
}
