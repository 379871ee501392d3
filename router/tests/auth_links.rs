#![allow(clippy::unwrap_used)]
//! The router's links to password-protected nodes, end to end: real nodes on 127.0.0.1 port 0
//! that require a password, a router that authenticates to them for requests, control, health
//! checks and a join's migration (node to node), and a router whose password is wrong saying so.

use ringcache_client::{Client as Conn, Credentials, LinkSpec};
use ringcache_protocol::Reply;
use ringcache_router::RouterConfig;

mod support;

use support::{
    eventually, name_on, start_router, text, wait_no_change, Cluster, Node, NodeRuntime, Timeouts,
    T,
};

const PW: &str = "node-secret";

fn with_password(c: &mut ringcache_node::NodeConfig) {
    c.requirepass = Some(PW.to_string());
}

fn node_auth(password: &str) -> LinkSpec {
    LinkSpec::with_auth(Some(Credentials {
        user: None,
        password: password.to_string(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_serves_and_moves_keys_between_password_protected_nodes() {
    let ids = ["a", "b", "c"];
    let cl = Cluster::builder(&ids)
        .members(2)
        .timeouts(Timeouts::MIGRATION)
        .node_runtime(NodeRuntime::Own)
        .node_config(with_password)
        .start(|c| c.node_link = node_auth(PW))
        .await;
    // The nodes refuse anyone without the password.
    let mut bare = Conn::connect(&cl.addr("a"), T).await.unwrap();
    let refused = text(&bare.call(&["GET", "k"], T).await.unwrap());
    assert!(refused.starts_with("NOAUTH"), "{refused}");

    let mut c = Conn::connect(&cl.router.to_string(), T).await.unwrap();
    let keys: Vec<String> = (0..30)
        .map(|i| name_on(&ids, "c", &format!("k{i}:")))
        .collect();
    for k in &keys {
        assert_eq!(text(&c.call(&["SET", k, k], T).await.unwrap()), "OK");
    }
    // The join moves c's arcs node to node: the source authenticates to the target itself.
    let join = c
        .call(&["RING", "JOIN", "c", &cl.addr("c")], T)
        .await
        .unwrap();
    assert_eq!(text(&join), "OK");
    wait_no_change(cl.router).await;
    let mut on_c = Conn::open(&cl.addr("c"), T, &node_auth(PW)).await.unwrap();
    for k in &keys {
        assert_eq!(
            c.call(&["GET", k], T).await.unwrap(),
            Reply::Bulk(k.clone().into())
        );
        assert_eq!(
            on_c.call(&["EXISTS", k], T).await.unwrap(),
            Reply::Int(1),
            "{k} not on c"
        );
    }
    let nodes = text(&c.call(&["RING", "NODES"], T).await.unwrap());
    assert!(!nodes.contains("WRONGPASS"), "{nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_whose_node_password_is_wrong_says_so() {
    let tune: support::NodeTune = std::sync::Arc::new(with_password);
    let node = Node::start_tuned(0, NodeRuntime::Shared, Some(tune)).await;
    let addr = node.addr.to_string();
    let mut config = RouterConfig::with_shards("127.0.0.1:0", &[("a", &addr)]).unwrap();
    Timeouts::FAST.apply(&mut config);
    config.node_link = node_auth("not-the-password");
    let (router, _stop) = start_router(config).await;
    let mut c = Conn::connect(&router.to_string(), T).await.unwrap();
    let err = text(&c.call(&["SET", "k", "v"], T).await.unwrap());
    assert!(err.contains("refused the router's credentials"), "{err}");
    assert!(err.contains("WRONGPASS"), "{err}");
    // RING NODES names the cause, and the node was not written to.
    let nodes = eventually(T, || async {
        let mut c = Conn::connect(&router.to_string(), T).await.ok()?;
        let n = format!("{:?}", c.call(&["RING", "NODES"], T).await.ok()?);
        n.contains("refused the router's credentials").then_some(n)
    })
    .await;
    assert!(nodes.contains("WRONGPASS"), "{nodes}");
    let mut direct = Conn::open(&addr, T, &node_auth(PW)).await.unwrap();
    assert_eq!(direct.call(&["DBSIZE"], T).await.unwrap(), Reply::Int(0));
}
