#![allow(clippy::unwrap_used)]
//! SLOWLOG and INFO commandstats timings on a node (or redis-server with
//! `RINGCACHE_TEST_TARGET=redis`): what is logged past `slowlog-log-slower-than`, the entry's
//! fields, long commands trimmed, secrets redacted, `slowlog-max-len`, LEN, RESET and errors.

use tests::*;

fn entry_args(entry: &Reply) -> Vec<String> {
    let fields = entry.items();
    fields[3].items().iter().map(|a| a.text()).collect()
}

#[test]
fn slowlog_records_commands_past_the_threshold() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "slowpoke"]), ok());
    // The default threshold (10 ms) logs nothing of these.
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), int(0));
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        ok()
    );
    assert_eq!(c.cmd(&["SET", "k", "v2"]), ok());
    let got = c.cmd(&["SLOWLOG", "GET", "2"]).items();
    assert_eq!(got.len(), 2);
    // Newest first: SET, then the CONFIG SET that turned logging on.
    let newest = got[0].items();
    assert_eq!(newest.len(), 6);
    assert_eq!(entry_args(&got[0]), ["SET", "k", "v2"]);
    assert_eq!(
        entry_args(&got[1]),
        ["CONFIG", "SET", "slowlog-log-slower-than", "0"]
    );
    assert!(newest[0].int() > got[1].items()[0].int(), "ids grow");
    assert!(newest[1].int() > 1_600_000_000, "a unix time");
    assert!(newest[2].int() >= 0, "microseconds");
    assert_eq!(newest[4].text(), c.local_addr().to_string());
    assert_eq!(newest[5].text(), "slowpoke");

    let long = "x".repeat(200);
    let mut many: Vec<String> = vec!["MSET".into()];
    for i in 0..20 {
        many.push(format!("k{i}"));
        many.push(if i == 0 { long.clone() } else { "v".into() });
    }
    assert_eq!(c.cmd(&many), ok());
    let args = entry_args(&c.cmd(&["SLOWLOG", "GET", "1"]).items()[0]);
    assert_eq!(args.len(), 32);
    assert_eq!(args[2], format!("{}... (72 more bytes)", "x".repeat(128)));
    assert_eq!(args[31], "... (10 more arguments)");
    assert!(c.cmd(&["AUTH", "nosuchuser", "secret"]).is_error());
    let args = entry_args(&c.cmd(&["SLOWLOG", "GET", "1"]).items()[0]);
    assert_eq!(args, ["AUTH", "(redacted)", "(redacted)"]);

    assert_eq!(c.cmd(&["CONFIG", "SET", "requirepass", "s3cret"]), ok());
    assert_eq!(c.cmd(&["CONFIG", "SET", "requirepass", ""]), ok());
    let args = entry_args(&c.cmd(&["SLOWLOG", "GET", "1"]).items()[0]);
    assert_eq!(args, ["CONFIG", "SET", "requirepass", "(redacted)"]);
    assert_eq!(c.cmd(&["CONFIG", "SET", "slowlog-max-len", "3"]), ok());
    for i in 0..5 {
        assert_eq!(c.cmd(&["SET", &format!("n{i}"), "v"]), ok());
    }
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), int(3));
    assert_eq!(c.cmd(&["SLOWLOG", "GET", "-1"]).items().len(), 3);
    assert_eq!(c.cmd(&["SLOWLOG", "GET", "0"]), arr(vec![]));
    assert_eq!(
        c.cmd(&["SLOWLOG", "GET", "-2"]),
        err("ERR count should be greater than or equal to -1")
    );
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), ok());
    // RESET itself is logged after the log is emptied.
    assert!(c.cmd(&["SLOWLOG", "LEN"]).int() <= 1);
    assert_eq!(c.cmd(&["SLOWLOG", "HELP"]).items().len(), 12);
    assert_eq!(
        c.cmd(&["SLOWLOG", "NOPE"]),
        err("ERR unknown subcommand 'NOPE'. Try SLOWLOG HELP.")
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]),
        ok()
    );
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), ok());
    assert_eq!(c.cmd(&["SET", "k", "v3"]), ok());
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), int(0));
}

#[test]
fn commandstats_count_time() {
    let s = start_target(&[]);
    let mut c = s.raw();
    for i in 0..200 {
        assert_eq!(c.cmd(&["RPUSH", "l", &i.to_string()]), int(i + 1));
    }
    for _ in 0..50 {
        assert_eq!(c.cmd(&["LRANGE", "l", "0", "-1"]).items().len(), 200);
    }
    let info = c.cmd(&["INFO", "commandstats"]).text();
    let line = info
        .lines()
        .find(|l| l.starts_with("cmdstat_lrange:"))
        .unwrap_or_else(|| panic!("no lrange line in {info}"));
    let field = |name: &str| -> f64 {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(field("calls"), 50.0);
    assert!(field("usec") > 0.0, "{line}");
    let per_call = field("usec") / 50.0;
    assert!((field("usec_per_call") - per_call).abs() < 0.01, "{line}");
}

#[test]
fn commandstats_count_a_transactions_commands() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["CONFIG", "RESETSTAT"]), ok());
    assert_eq!(c.cmd(&["MULTI"]), ok());
    for cmd in [
        &["SET", "foo", "bar"][..],
        &["GEOADD", "geo", "0", "0", "m"],
        &["EXPIRE", "geo", "0"],
        &["INCR", "foo"],
    ] {
        assert_eq!(c.cmd(cmd), status("QUEUED"));
    }
    assert_eq!(c.cmd(&["EXEC"]).items().len(), 4);
    let info = c.cmd(&["INFO", "commandstats"]).text();
    for name in ["multi", "exec", "set", "geoadd", "expire"] {
        assert!(
            info.contains(&format!("cmdstat_{name}:calls=1,")),
            "{name} counted once: {info}"
        );
    }
    // A command that fails inside the transaction counts as failed.
    assert!(
        info.lines()
            .any(|l| l.starts_with("cmdstat_incr:calls=1,") && l.ends_with("failed_calls=1")),
        "{info}"
    );
}

/// The `latency_percentiles_usec_<name>` line of INFO latencystats, as (percentile, µs) pairs.
fn latency_line(c: &mut Raw, name: &str) -> Option<Vec<(String, f64)>> {
    let info = c.cmd(&["INFO", "latencystats"]).text();
    let prefix = format!("latency_percentiles_usec_{name}:");
    let line = info.lines().find_map(|l| l.strip_prefix(prefix.as_str()))?;
    Some(
        line.split(',')
            .map(|kv| {
                let (p, v) = kv.split_once('=').unwrap();
                (p.to_string(), v.parse::<f64>().unwrap())
            })
            .collect(),
    )
}

#[test]
fn latency_tracking_percentiles_and_histograms() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["CONFIG", "RESETSTAT"]), ok());
    for i in 0..200 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), ok());
    }
    let line = latency_line(&mut c, "set").expect("a latencystats line for set");
    let names: Vec<&str> = line.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["p50", "p99", "p99.9"]);
    assert!(line.windows(2).all(|w| w[0].1 <= w[1].1), "{line:?}");
    // A container's calls count under the subcommand, as Redis counts them.
    assert_eq!(c.cmd(&["CONFIG", "GET", "maxmemory"]).items().len(), 2);
    assert!(latency_line(&mut c, "config|get").is_some());
    let stats = c.cmd(&["INFO", "commandstats"]).text();
    assert!(stats.contains("cmdstat_config|get:calls=1,"), "{stats}");

    // LATENCY HISTOGRAM: calls, and cumulative counts by µs rising to them.
    let h = c.cmd(&["LATENCY", "HISTOGRAM", "set", "nosuch"]).pairs();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].0, "set");
    let fields = h[0].1.pairs();
    assert_eq!(fields[0], ("calls".to_string(), int(200)));
    assert_eq!(fields[1].0, "histogram_usec");
    let points: Vec<i64> = fields[1].1.items().iter().map(ReplyExt::int).collect();
    assert!(
        !points.is_empty() && points.len().is_multiple_of(2),
        "{points:?}"
    );
    let counts: Vec<i64> = points.iter().skip(1).step_by(2).copied().collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{points:?}");
    assert_eq!(counts.last(), Some(&200));
    // Named commands come in the order asked.
    assert_eq!(c.cmd(&["GET", "k0"]), bulk("v"));
    for order in [["set", "get"], ["get", "set"]] {
        let h = c.cmd(&["LATENCY", "HISTOGRAM", order[0], order[1]]).pairs();
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, order);
    }
    let config = c.cmd(&["LATENCY", "HISTOGRAM", "CONFIG"]).pairs();
    assert!(config.iter().any(|(n, _)| n == "config|get"), "{config:?}");
    assert!(
        config.iter().all(|(n, _)| n.starts_with("config|")),
        "{config:?}"
    );

    // The percentiles shown, and tracking off.
    assert_eq!(
        c.cmd(&[
            "CONFIG",
            "SET",
            "latency-tracking-info-percentiles",
            "50 99.99"
        ]),
        ok()
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "latency-tracking-info-percentiles"]),
        Reply::Array(vec![
            bulk("latency-tracking-info-percentiles"),
            bulk("50 99.99")
        ])
    );
    let line = latency_line(&mut c, "set").unwrap();
    assert_eq!(
        line.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["p50", "p99.99"]
    );
    let refused = c.cmd(&["CONFIG", "SET", "latency-tracking-info-percentiles", "101"]);
    assert!(refused.is_error(), "{refused:?}");
    assert_eq!(c.cmd(&["CONFIG", "SET", "latency-tracking", "no"]), ok());
    assert_eq!(c.cmd(&["SET", "k0", "w"]), ok());
    let h = c.cmd(&["LATENCY", "HISTOGRAM", "set"]).pairs();
    assert_eq!(h[0].1.pairs()[0], ("calls".to_string(), int(200)));
    assert_eq!(c.cmd(&["CONFIG", "SET", "latency-tracking", "yes"]), ok());

    // The latency monitor is off by default: no events, nothing to reset.
    assert_eq!(c.cmd(&["LATENCY", "LATEST"]), Reply::Array(vec![]));
    assert_eq!(
        c.cmd(&["LATENCY", "HISTORY", "command"]),
        Reply::Array(vec![])
    );
    assert_eq!(c.cmd(&["LATENCY", "RESET"]), int(0));
    let doctor = c.cmd(&["LATENCY", "DOCTOR"]).text();
    assert!(doctor.starts_with("I'm sorry, Dave"), "{doctor}");
    assert_eq!(
        c.cmd(&["LATENCY", "HISTORY"]),
        wrong_args("latency|history")
    );
    assert_eq!(
        c.cmd(&["LATENCY", "NOPE"]),
        err("ERR unknown subcommand 'NOPE'. Try LATENCY HELP.")
    );
    let help = c.cmd(&["LATENCY", "HELP"]).strings();
    assert!(help[0].starts_with("LATENCY <subcommand>"), "{help:?}");
}

/// Every SLOWLOG entry's arguments, newest first.
fn logged_args(c: &mut Raw) -> Vec<Vec<String>> {
    c.cmd(&["SLOWLOG", "GET", "-1"])
        .items()
        .iter()
        .map(entry_args)
        .collect()
}

/// A blocking command served after it waited is in SLOWLOG, as Redis logs it when it runs
/// again; one that timed out is not.
#[test]
fn a_served_blocking_command_is_logged() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        ok()
    );
    let mut blocked = s.raw();
    blocked.send_cmd(&["BLPOP", "l", "0"]);
    assert!(blocked
        .read(std::time::Duration::from_millis(100))
        .is_none());
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), ok());
    assert_eq!(c.cmd(&["LPUSH", "l", "x"]), int(1));
    assert_eq!(blocked.reply(), arr(vec![bulk("l"), bulk("x")]));
    let logged = logged_args(&mut c);
    assert!(
        logged.contains(&vec!["BLPOP".to_string(), "l".into(), "0".into()]),
        "{logged:?}"
    );

    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), ok());
    assert_eq!(blocked.cmd(&["BLPOP", "empty", "0.05"]), nil());
    let logged = logged_args(&mut c);
    assert!(logged.iter().all(|a| a[0] != "BLPOP"), "{logged:?}");
}
