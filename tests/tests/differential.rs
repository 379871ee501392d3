#![allow(clippy::unwrap_used)]
//! A node and `redis-server` 7 receive the same seeded random commands of every data type over a
//! small keyspace, in RESP2 and then RESP3; every reply must match (orders Redis leaves open are
//! compared sorted, random picks by their count). On a mismatch the seed, the command and the
//! commands before it are printed: `RINGCACHE_DIFF_SEED=<seed>` replays the run, and
//! `RINGCACHE_DIFF_COMMANDS` sets how many commands each protocol gets.

use tests::differential::{normalize, Cmd, Family, Gen};
use tests::*;

const DEFAULT_COMMANDS: usize = 15_000;
const BATCH: usize = 200;

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Sends `cmds` pipelined and reads every reply.
fn run_batch(c: &mut Raw, cmds: &[Cmd]) -> Vec<Reply> {
    let mut bytes = Vec::new();
    for cmd in cmds {
        bytes.extend(encode(&cmd.args));
    }
    c.send(&bytes);
    cmds.iter().map(|_| c.reply()).collect()
}

fn compare_run(seed: u64, n: usize, families: &[Family], resp3: bool) {
    let node = start_node(&[]);
    let redis = start_redis(&[]);
    let (mut a, mut b) = (node.raw(), redis.raw());
    if resp3 {
        assert!(!a.hello3(&[]).is_error());
        assert!(!b.hello3(&[]).is_error());
    }
    let mut generator = Gen::new(seed, families);
    let mut history: Vec<Cmd> = Vec::new();
    let mut done = 0;
    while done < n {
        let cmds: Vec<Cmd> = (0..BATCH.min(n - done))
            .map(|_| generator.command())
            .collect();
        let ours = run_batch(&mut a, &cmds);
        let theirs = run_batch(&mut b, &cmds);
        for (i, cmd) in cmds.iter().enumerate() {
            let pairs = cmd.args[0] == "HGETALL";
            let (x, y) = (
                normalize(&ours[i], cmd.compare, pairs),
                normalize(&theirs[i], cmd.compare, pairs),
            );
            if x != y {
                // The commands that touched this command's keys, most recent last.
                let keys: Vec<&String> = cmd.args[1..]
                    .iter()
                    .filter(|a| a.starts_with("{t}"))
                    .collect();
                let mut before: Vec<String> = history
                    .iter()
                    .filter(|c| c.args.iter().any(|a| keys.contains(&a)))
                    .map(|c| c.args.join(" "))
                    .collect();
                before.drain(..before.len().saturating_sub(25));
                let all: Vec<String> = history.iter().map(|c| c.args.join(" ")).collect();
                let trace = scratch_dir("differential").join("commands.txt");
                let _ = std::fs::write(&trace, all.join("\n"));
                panic!(
                    "seed {seed} ({}) command #{}: {}\n  node:  {:?}\n  redis: {:?}\nthe commands before it on its keys:\n  {}\nevery command before it: {}",
                    if resp3 { "RESP3" } else { "RESP2" },
                    done + i,
                    cmd.args.join(" "),
                    ours[i],
                    theirs[i],
                    before.join("\n  "),
                    trace.display()
                );
            }
            history.push(cmd.clone());
        }
        done += cmds.len();
    }
    // The final states agree too, key by key.
    let mut keys = a.cmd(&["KEYS", "*"]).sorted();
    keys.dedup();
    assert_eq!(
        keys,
        b.cmd(&["KEYS", "*"]).sorted(),
        "seed {seed}: key sets differ"
    );
    for k in &keys {
        assert_eq!(
            a.cmd(&["TYPE", k]),
            b.cmd(&["TYPE", k]),
            "seed {seed}: TYPE {k}"
        );
    }
}

#[test]
fn a_node_answers_random_commands_as_redis_does() {
    let seed = env_num("RINGCACHE_DIFF_SEED").unwrap_or_else(rand::random);
    let n = env_num("RINGCACHE_DIFF_COMMANDS").map_or(DEFAULT_COMMANDS, |n| n as usize);
    let families = Family::ALL;
    println!("differential seed {seed}, {n} commands per protocol");
    compare_run(seed, n, &families, false);
    compare_run(seed.wrapping_add(1), n, &families, true);
}
