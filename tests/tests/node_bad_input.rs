#![allow(clippy::unwrap_used)]
//! Limits and hostile input, over raw sockets: every case gets Redis's error (and a closed
//! connection where Redis closes), and the server survives: PING from a fresh client still works.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tests::*;

const CLOSE: Duration = Duration::from_secs(5);

/// Sends `input` on a fresh connection and expects exactly `reply` (bytes), then a close.
fn expect_error_and_close(s: &Proc, input: &[u8], reply: &str) {
    let mut c = s.raw();
    // The server may close before it read everything we send.
    let _ = c.try_send(input);
    let got = c.read_reply(CLOSE);
    assert_eq!(
        got.as_deref().map(String::from_utf8_lossy),
        Some(reply.into()),
        "input {:?}",
        String::from_utf8_lossy(&input[..input.len().min(60)])
    );
    assert!(c.is_closed(CLOSE), "connection left open after {reply:?}");
    assert_eq!(c.pending(), "", "bytes after the error");
}

#[test]
fn protocol_errors_close_the_connection() {
    let mut s = start_target(&[]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"*3000000000\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*abc\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$2000000000\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$536870913\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$blabla\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$-1\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\nfoo\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got 'f'\r\n",
        ),
        (
            b"*2\r\n$4\r\nECHO\r\n:1\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"SET k \"a\r\n".to_vec(),
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            b"ECHO \"a\"b\r\n".to_vec(),
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            b"ECHO 'abc\r\n".to_vec(),
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (input, reply) in &cases {
        expect_error_and_close(&s, input, reply);
    }
    // Commands before the bad frame, in the same write, are answered first.
    let mut c = s.raw();
    let _ = c.try_send(b"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$x\r\nPING\r\n");
    assert_eq!(c.read_reply(CLOSE).unwrap(), b"+PONG\r\n");
    assert_eq!(c.read_reply(CLOSE).unwrap(), b"+PONG\r\n");
    assert_eq!(
        c.read_reply(CLOSE).unwrap(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(c.is_closed(CLOSE));
    s.assert_alive();
}

#[test]
fn empty_and_negative_multibulk_are_ignored() {
    let mut s = start_target(&[]);
    let mut c = s.raw();
    c.send(b"*-10\r\n");
    c.send(b"PING\r\n");
    assert_eq!(c.read_reply(CLOSE).unwrap(), b"+PONG\r\n");
    c.send(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(c.read_reply(CLOSE).unwrap(), b"+PONG\r\n");
    assert_eq!(c.cmd(&["ECHO", "next"]), bulk("next"));
    // Zero-length arguments are fine.
    assert_eq!(
        c.cmd(&[""]),
        err("ERR unknown command '', with args beginning with: ")
    );
    s.assert_alive();
}

#[test]
fn too_big_lines() {
    let mut s = start_target(&[]);
    let mut inline = vec![b'a'; 70 * 1024];
    expect_error_and_close(
        &s,
        &inline,
        "-ERR Protocol error: too big inline request\r\n",
    );
    inline.insert(0, b'*');
    inline[1..].fill(b'1');
    expect_error_and_close(
        &s,
        &inline,
        "-ERR Protocol error: too big mbulk count string\r\n",
    );
    let mut bulk_hdr = b"*1\r\n$".to_vec();
    bulk_hdr.extend_from_slice(&vec![b'1'; 70 * 1024]);
    expect_error_and_close(
        &s,
        &bulk_hdr,
        "-ERR Protocol error: too big bulk count string\r\n",
    );
    // A long inline command that does end in a newline is fine.
    let mut c = s.raw();
    let arg = "x".repeat(60 * 1024);
    c.send(format!("ECHO {arg}\r\n").as_bytes());
    assert_eq!(c.reply(), bulk(&arg));
    s.assert_alive();
}

#[test]
fn nul_and_garbage_bytes() {
    let mut s = start_target(&[]);
    let mut c = s.raw();
    c.send(b"\x00\x00\x00\r\nPING\r\n");
    if is_redis() {
        // Redis looks for the inline newline with strchr(), which stops at the NUL: the line
        // never completes (until the 64 KB inline limit), so nothing is answered.
        assert_eq!(c.read_reply(Duration::from_millis(300)), None);
        assert!(!c.is_closed(Duration::from_millis(100)));
    } else {
        // Ours may answer the NUL line with an error, or skip it, or close; any reply is an
        // error or the PONG.
        for _ in 0..2 {
            match c.read(Duration::from_secs(2)) {
                Some(r) if r.reply == status("PONG") => break,
                Some(r) => assert!(r.reply.is_error(), "{:?}", r.reply),
                None => break,
            }
        }
    }
    drop(c);
    s.assert_alive();

    // Random junk, biased towards RESP syntax, each on its own connection, then EOF: the server
    // answers or closes, and never dies.
    let tokens: [&[u8]; 16] = [
        b"*",
        b"$",
        b"\r\n",
        b"\n",
        b"-1",
        b"3",
        b"0",
        b"99999999999",
        b"PING",
        b"SET",
        b"\x00",
        b"\"",
        b"'",
        b" ",
        b"\xff",
        b"ECHO",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for _ in 0..60 {
        let mut blob = Vec::new();
        for _ in 0..rng.gen_range(1..40) {
            if rng.gen_bool(0.3) {
                blob.push(rng.gen());
            } else {
                blob.extend_from_slice(tokens[rng.gen_range(0..tokens.len())]);
            }
        }
        let mut c = s.raw();
        let _ = c.try_send(&blob);
        c.shutdown_write();
        assert!(
            c.is_closed(CLOSE),
            "server kept a half-closed connection open after {:?}",
            String::from_utf8_lossy(&blob)
        );
    }
    s.assert_alive();
}

#[test]
fn partial_frames_then_disconnect() {
    let mut s = start_target(&[]);
    for partial in [
        &b"*2\r\n$3\r\nGET"[..],
        b"*2\r\n$3\r\nGET\r\n$100\r\nabc",
        b"*1000000\r\n",
        b"*1\r\n$536870912\r\nxyz",
        b"PIN",
        b"*",
        b"$",
    ] {
        let mut c = s.raw();
        c.send(partial);
        drop(c);
    }
    // Many connections each announcing a maximal bulk must not make the server reserve it all.
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut c = s.raw();
        c.send(b"*2\r\n$3\r\nSET\r\n$536870912\r\n");
        c.send(&[b'x'; 1024]);
        conns.push(c);
    }
    let mut probe = s.raw();
    assert_eq!(probe.cmd(&["PING"]), status("PONG"));
    let rss = s.rss_kib().unwrap();
    assert!(
        rss < 300 * 1024,
        "RSS {rss} KiB with 20 announced 512 MB bulks"
    );
    drop(conns);
    s.assert_alive();
}

#[test]
fn http_requests_are_dropped_silently() {
    let mut s = start_target(&[]);
    for input in [
        &b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"Host: x\r\n",
    ] {
        let mut c = s.raw();
        let _ = c.try_send(input);
        assert!(c.is_closed(CLOSE), "{:?}", String::from_utf8_lossy(input));
        if input.starts_with(b"GET") {
            // `GET / HTTP/1.1` is a (wrong-arity) GET command first; then `Host:` closes at
            // once, and Redis drops the pending error reply with the connection.
            let p = c.pending();
            assert!(
                p.is_empty() || p == "-ERR wrong number of arguments for 'get' command\r\n",
                "{p:?}"
            );
        } else {
            assert_eq!(
                c.pending(),
                "",
                "no reply to {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
    s.assert_alive();
}

#[test]
fn unauthenticated_limits() {
    let mut s = start_target(&["--requirepass", "pw"]);
    expect_error_and_close(
        &s,
        b"*11\r\n",
        "-ERR Protocol error: unauthenticated multibulk length\r\n",
    );
    expect_error_and_close(
        &s,
        b"*1\r\n$20000\r\n",
        "-ERR Protocol error: unauthenticated bulk length\r\n",
    );
    expect_error_and_close(
        &s,
        b"*2\r\n$4\r\nAUTH\r\n$16385\r\n",
        "-ERR Protocol error: unauthenticated bulk length\r\n",
    );
    // At the limits: accepted (and answered with NOAUTH).
    let mut c = s.raw();
    // (A command of the right arity: arity errors come before NOAUTH.)
    let mut args: Vec<String> = vec!["DEL".into()];
    args.extend((0..9).map(|i| i.to_string()));
    assert_eq!(c.cmd(&args), err("NOAUTH Authentication required."));
    assert_eq!(
        c.cmd(&["ECHO", &"x".repeat(16384)]),
        err("NOAUTH Authentication required.")
    );
    // After AUTH the limits are Redis's normal ones.
    assert_eq!(c.cmd(&["AUTH", "pw"]), ok());
    let mut mset = vec!["MSET".to_string()];
    for i in 0..10 {
        mset.push(format!("k{i}"));
        mset.push("x".repeat(20_000));
    }
    assert_eq!(c.cmd(&mset), ok());
    assert_eq!(c.cmd(&["STRLEN", "k9"]), int(20_000));
    s.assert_alive_with_auth("pw");
}

trait AliveWithAuth {
    fn assert_alive_with_auth(&mut self, pw: &str);
}

impl AliveWithAuth for Proc {
    fn assert_alive_with_auth(&mut self, pw: &str) {
        assert!(self.is_alive(), "server exited:\n{}", self.log_tail());
        let mut c = self.raw();
        assert_eq!(c.cmd(&["AUTH", pw]), ok());
        assert_eq!(c.cmd(&["PING"]), status("PONG"));
    }
}

#[test]
fn maxclients() {
    let mut s = start_target(&["--maxclients", "2"]);
    let mut a = s.raw();
    let mut b = s.raw();
    assert_eq!(a.cmd(&["PING"]), status("PONG"));
    assert_eq!(b.cmd(&["PING"]), status("PONG"));
    // The third connection is told, without asking, and closed.
    let mut third = s.raw();
    assert_eq!(
        third.read_reply(CLOSE).as_deref(),
        Some(&b"-ERR max number of clients reached\r\n"[..])
    );
    assert!(third.is_closed(CLOSE));
    assert_eq!(a.cmd(&["PING"]), status("PONG"));
    drop(b);
    // The freed slot is usable again.
    let mut again: Option<Raw> = None;
    assert_eventually!(
        {
            let mut c = s.raw();
            c.send_cmd(&["PING"]);
            let r = c.read(CLOSE).map(|r| r.reply);
            let ok = r == Some(status("PONG"));
            if ok {
                again = Some(c);
            }
            ok
        },
        Duration::from_secs(10)
    );
    assert_eq!(again.unwrap().cmd(&["ECHO", "x"]), bulk("x"));
    drop(a);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    drop(c);
    assert!(s.is_alive());
}

#[test]
fn idle_timeout() {
    let mut s = start_target(&["--timeout", "1"]);
    let mut idle = s.raw();
    let mut busy = s.raw();
    assert_eq!(idle.cmd(&["PING"]), status("PONG"));
    let start = Instant::now();
    // The busy client is never idle for long, so it must survive.
    for _ in 0..12 {
        assert_eq!(busy.cmd(&["PING"]), status("PONG"));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        idle.is_closed(Duration::from_secs(5)),
        "idle client not closed"
    );
    assert!(start.elapsed() < Duration::from_secs(8));
    assert_eq!(idle.pending(), "", "a timeout closes without a reply");
    assert_eq!(busy.cmd(&["PING"]), status("PONG"));
    s.assert_alive();
}

#[test]
fn split_writes_give_the_same_replies() {
    let mut s = start_target(&[]);
    let mut c = s.raw();
    let corpus: Vec<Vec<u8>> = vec![
        encode(&["PING"]),
        encode(&["SET", "key", "value"]),
        encode(&["GET", "key"]),
        encode(&["HSET", "h", "field", "v"]),
        encode(&["MGET", "key", "missing"]),
        encode(&[&b"ECHO"[..], b"bin\x00\r\n\xffdata"]),
        encode(&["FOO", "bar"]),
        encode(&["GET"]),
        b"PING\r\n".to_vec(),
        b"ECHO \"hello world\"\r\n".to_vec(),
        b"*2\r\n$4\r\nECHO\r\n$12\r\n0123456789ab\r\n".to_vec(),
    ];
    for cmd in &corpus {
        c.send(cmd);
        let _first = c.read_reply(CMD_TIMEOUT).unwrap();
        c.send(cmd);
        let expected = c.read_reply(CMD_TIMEOUT).unwrap();
        for split in 1..cmd.len() {
            c.send(&cmd[..split]);
            std::thread::sleep(Duration::from_millis(2));
            c.send(&cmd[split..]);
            let got = c.read_reply(CMD_TIMEOUT).unwrap_or_else(|| {
                panic!(
                    "no reply to {:?} split at {split}",
                    String::from_utf8_lossy(cmd)
                )
            });
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected),
                "{:?} split at {split}",
                String::from_utf8_lossy(cmd)
            );
        }
    }
    // The whole corpus pipelined, one byte per write.
    let all: Vec<u8> = corpus.concat();
    let mut expected = Vec::new();
    c.send(&all);
    for _ in &corpus {
        expected.push(c.read_reply(CMD_TIMEOUT).unwrap());
    }
    for b in &all {
        c.send(std::slice::from_ref(b));
    }
    for e in &expected {
        assert_eq!(c.read_reply(CMD_TIMEOUT).as_ref(), Some(e));
    }
    s.assert_alive();
}

#[test]
fn unread_pipelined_replies_stay_bounded() {
    // Redis buffers replies for normal clients without limit by default; give it a limit so it
    // takes the "disconnect the slow reader" path. Our node must bound memory on its own
    // (backpressure or disconnect), with no configuration.
    let extra: &[&str] = if is_redis() {
        &["--client-output-buffer-limit", "normal 64mb 16mb 10"]
    } else {
        &[]
    };
    let mut s = start_target(extra);
    let value = "v".repeat(1 << 20);
    let mut setter = s.raw();
    assert_eq!(setter.cmd(&["SET", "big", &value]), ok());
    drop(setter);
    let rss_before = s.rss_kib().unwrap();

    // 1000 GETs of 1 MiB = 1 GiB of replies that are never read.
    let mut slow = s.raw();
    slow.stream()
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let get = encode(&["GET", "big"]);
    let batch: Vec<u8> = get.iter().copied().cycle().take(get.len() * 50).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..20 {
        if slow.try_send(&batch).is_err() || Instant::now() > deadline {
            break; // blocked by backpressure, or disconnected: both are bounded.
        }
    }

    let mut other = s.raw();
    let mut max_rss = 0;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(other.cmd(&["PING"]), status("PONG"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "PING took {:?}",
            t.elapsed()
        );
        max_rss = max_rss.max(s.rss_kib().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        max_rss < 300 * 1024,
        "RSS grew to {max_rss} KiB (from {rss_before} KiB) with unread replies"
    );
    // The slow client either still works (backpressure) or was disconnected.
    match slow.read(Duration::from_secs(5)) {
        Some(r) => assert_eq!(r.reply, bulk(&value)),
        None => assert!(
            slow.is_closed(Duration::from_secs(5)),
            "slow client neither served nor closed"
        ),
    }
    drop(slow);
    s.assert_alive();
}
