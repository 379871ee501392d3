#![allow(clippy::unwrap_used)]
//! The router's own ACL users (its `aclfile`): AUTH, every request checked before it is routed
//! (commands, keys, channels) with Redis's NOPERM errors, and the ACL command answered by the
//! router about its users.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use ringcache_protocol::codec::ClientCodec;
use ringcache_protocol::{Protocol, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

mod support;

use support::{Cluster, T};

struct Client {
    sock: TcpStream,
    buf: BytesMut,
    codec: ClientCodec,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            sock: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            codec: ClientCodec::new(Protocol::Resp2),
        }
    }

    async fn cmd(&mut self, args: &[&str]) -> Reply {
        let mut out = BytesMut::new();
        ringcache_protocol::resp::encode_request(&mut out, args.iter());
        self.sock.write_all(&out).await.unwrap();
        let deadline = Instant::now() + T;
        loop {
            if let Some(r) = self.codec.decode(&mut self.buf).unwrap() {
                return r.reply;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.sock.read_buf(&mut self.buf))
                .await
                .expect("reply timed out")
                .unwrap();
            assert!(n > 0, "connection closed");
        }
    }
}

impl Client {
    /// The next reply, or `None` once the router closed the connection.
    async fn next(&mut self) -> Option<Reply> {
        let deadline = Instant::now() + T;
        loop {
            if let Some(r) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(r.reply);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.sock.read_buf(&mut self.buf))
                .await
                .expect("no reply and not closed")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }
}

fn ok() -> Reply {
    Reply::StatusOwned("OK".into())
}

fn err(s: &str) -> Reply {
    Reply::Error(s.into())
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn text(r: &Reply) -> String {
    support::text(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_checks_its_own_users() {
    let dir = std::env::temp_dir().join(format!("ringcache-router-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("router.acl");
    std::fs::write(
        &path,
        "user default on >adminpw ~* &* +@all\nuser app on >apppw ~app:* &app:* +@read +@write +publish +acl|whoami\n",
    )
    .unwrap();
    let p = path.clone();
    let cluster = Cluster::builder(&["a", "b"])
        .start(move |c| c.aclfile = Some(p))
        .await;
    let mut c = Client::connect(cluster.router).await;
    assert_eq!(
        c.cmd(&["GET", "app:1"]).await,
        err("NOAUTH Authentication required.")
    );
    assert_eq!(
        c.cmd(&["AUTH", "app", "wrong"]).await,
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(c.cmd(&["AUTH", "app", "apppw"]).await, ok());
    assert_eq!(c.cmd(&["SET", "app:1", "v"]).await, ok());
    assert_eq!(c.cmd(&["GET", "app:1"]).await, bulk("v"));
    assert_eq!(
        c.cmd(&["GET", "other"]).await,
        err("NOPERM this user has no permissions to access one of the keys used as arguments")
    );
    assert_eq!(
        c.cmd(&["MGET", "app:1", "other"]).await,
        err("NOPERM this user has no permissions to access one of the keys used as arguments")
    );
    assert_eq!(
        c.cmd(&["CLIENT", "LIST"]).await,
        err("NOPERM this user has no permissions to run the 'client|list' command")
    );
    assert_eq!(
        c.cmd(&["PUBLISH", "news", "x"]).await,
        err("NOPERM this user has no permissions to access one of the channels used as arguments")
    );
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]).await, bulk("app"));

    // The router's users, not the nodes' (whose only user is `default`).
    let mut admin = Client::connect(cluster.router).await;
    assert_eq!(admin.cmd(&["AUTH", "adminpw"]).await, ok());
    let Reply::Array(users) = admin.cmd(&["ACL", "USERS"]).await else {
        panic!("ACL USERS is an array");
    };
    assert_eq!(users, vec![bulk("app"), bulk("default")]);
    let Reply::Array(log) = admin.cmd(&["ACL", "LOG", "1"]).await else {
        panic!("ACL LOG is an array");
    };
    let entry = text(&Reply::Array(log));
    assert!(
        entry.contains("channel") && entry.contains("news"),
        "{entry}"
    );
    let list = text(&admin.cmd(&["CLIENT", "LIST"]).await);
    assert!(list.contains(" user=app "), "{list}");
    // INFO counts the router's refusals, not the nodes'.
    let stats = text(&admin.cmd(&["INFO", "stats"]).await);
    let denied = [
        "acl_access_denied_auth:1\r\n",
        "acl_access_denied_cmd:1\r\n",
        "acl_access_denied_key:2\r\n",
        "acl_access_denied_channel:1\r\n",
    ];
    assert!(
        denied.iter().all(|l| stats.contains(l)),
        "{denied:?} in {stats}"
    );

    // ACL LOAD re-reads the file: app loses SET.
    std::fs::write(
        &path,
        "user default on >adminpw ~* &* +@all\nuser app on >apppw ~app:* +@read\n",
    )
    .unwrap();
    assert_eq!(admin.cmd(&["ACL", "LOAD"]).await, ok());
    assert_eq!(
        c.cmd(&["SET", "app:1", "w"]).await,
        err("NOPERM this user has no permissions to run the 'set' command")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// ACL SETUSER on the router narrowing a user's channels disconnects only that user's
/// subscribers the new rules refuse; `acllog-max-len` is the router's own setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_channels_disconnect_refused_subscribers() {
    let cluster = Cluster::builder(&["a", "b"]).start(|_| {}).await;
    let mut admin = Client::connect(cluster.router).await;
    let setuser = |channels: &'static str| {
        [
            "ACL",
            "SETUSER",
            "sub",
            "on",
            ">pw",
            "+@all",
            "~*",
            "resetchannels",
            channels,
        ]
    };
    assert_eq!(admin.cmd(&setuser("&news.*")).await, ok());
    assert_eq!(admin.cmd(&["ACL", "SETUSER", "sub", "&sports"]).await, ok());
    let mut subscribers = Vec::new();
    for (cmd, name) in [("SUBSCRIBE", "news.1"), ("SUBSCRIBE", "sports")] {
        let mut c = Client::connect(cluster.router).await;
        assert_eq!(c.cmd(&["AUTH", "sub", "pw"]).await, ok());
        let Reply::Array(confirm) = c.cmd(&[cmd, name]).await else {
            panic!("{cmd} confirms with an array");
        };
        assert_eq!(confirm.len(), 3);
        subscribers.push(c);
    }
    assert_eq!(admin.cmd(&setuser("&news.*")).await, ok());
    let mut sports = subscribers.pop().unwrap();
    let mut news = subscribers.pop().unwrap();
    assert_eq!(
        sports.next().await,
        None,
        "the sports subscriber is cut off"
    );
    assert_eq!(
        admin.cmd(&["PUBLISH", "news.1", "hello"]).await,
        Reply::Int(1)
    );
    assert_eq!(
        news.next().await,
        Some(Reply::Array(vec![
            bulk("message"),
            bulk("news.1"),
            bulk("hello")
        ]))
    );

    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "acllog-max-len", "1"]).await,
        ok()
    );
    let Reply::Array(got) = admin.cmd(&["CONFIG", "GET", "acllog-max-len"]).await else {
        panic!("CONFIG GET answers an array in RESP2");
    };
    assert_eq!(got, vec![bulk("acllog-max-len"), bulk("1")]);
    let mut c = Client::connect(cluster.router).await;
    assert_eq!(c.cmd(&["AUTH", "sub", "pw"]).await, ok());
    for channel in ["x", "y"] {
        assert!(matches!(
            c.cmd(&["PUBLISH", channel, "m"]).await,
            Reply::Error(_)
        ));
    }
    let Reply::Array(log) = admin.cmd(&["ACL", "LOG"]).await else {
        panic!("ACL LOG is an array");
    };
    assert_eq!(log.len(), 1);
}
