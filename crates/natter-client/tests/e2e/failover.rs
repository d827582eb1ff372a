//! Following a cluster: the WebSocket opens where the gateway says, and requests move on to
//! another known node when the current one cannot be reached.

use std::sync::{Arc, Mutex};

use natter_client::{Client, Session};
use natter_proto::ws::ServerFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::TestServer;

/// A stand-in server that answers each request with `reply(path)` and records the paths.
async fn fake_server(
    reply: impl Fn(&str) -> String + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&paths);
    let task = tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap() == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
            let answer = reply(&path);
            seen.lock().unwrap().push(path);
            socket.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    (url, paths, task)
}

fn json_reply(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Alice's session reached through a stand-in node at `front`, with the client they share.
fn through(front: &str, alice: &natter_client::Device) -> (Client, Session) {
    let client = Client::new(front).unwrap();
    let session = Session::resume(
        client.clone(),
        alice.session().token().to_owned(),
        alice.user_id(),
        alice.device_id(),
    );
    (client, session)
}

/// A gateway answer naming the nodes with HTTP bases `nodes`, the first as the pick.
fn gateway_to(nodes: &[&str]) -> String {
    let urls: Vec<String> = nodes
        .iter()
        .map(|base| natter_client::ws_url(base))
        .collect();
    let answer = serde_json::json!({ "url": urls[0], "nodes": urls });
    json_reply(&answer.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_where_the_gateway_says_and_fails_over_to_a_known_node() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    // A node whose gateway sends clients to the real server, and which then goes away.
    let gateway = gateway_to(&[&server.url]);
    let (front, paths, front_task) = fake_server(move |_| gateway.clone()).await;
    let (client, session) = through(&front, &alice);

    let connection = session
        .connect()
        .await
        .expect("opened on the gateway's node");
    connection.close().await;
    assert_eq!(*paths.lock().unwrap(), ["/v1/gateway"]);

    front_task.abort();
    let _ = front_task.await;
    assert_eq!(session.me().await.unwrap().profile.user_id, alice.user_id());
    assert_eq!(
        client.base_url(),
        server.url,
        "the known node is now current"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_answers_with_an_error_is_not_bypassed() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let gateway = gateway_to(&[&server.url]);
    let unavailable =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (front, _paths, _task) = fake_server(move |path| match path {
        "/v1/gateway" => gateway.clone(),
        _ => unavailable.to_owned(),
    })
    .await;
    let (client, session) = through(&front, &alice);
    session.connect().await.unwrap().close().await;
    // The request reached a server, which refused it: trying it elsewhere might do it twice.
    let refused = session.me().await.unwrap_err();
    assert_eq!(refused.status(), Some(503), "{refused}");
    assert_eq!(client.base_url(), front);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_gateway_the_websocket_opens_on_the_node_itself() {
    let not_found = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (url, paths, _task) = fake_server(|_| not_found.to_owned()).await;
    let session = Session::resume(
        Client::new(&url).unwrap(),
        "token".into(),
        natter_proto::UserId(uuid::Uuid::now_v7()),
        natter_proto::DeviceId(uuid::Uuid::now_v7()),
    );
    let refused = session
        .connect()
        .await
        .err()
        .expect("nothing to connect to");
    assert_eq!(refused.status(), Some(404), "{refused}");
    assert_eq!(*paths.lock().unwrap(), ["/v1/gateway", "/v1/ws"]);
    // Asked strictly, the same server has no gateway at all.
    assert_eq!(
        Client::new(&url).unwrap().cluster_gateway().await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_node_that_cannot_be_reached_is_skipped_for_the_next() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    // A closed port: nothing listens there.
    let dead = {
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", probe.local_addr().unwrap())
    };
    let gateway = gateway_to(&[&dead, &server.url]);
    let (front, _paths, _task) = fake_server(move |_| gateway.clone()).await;
    let (_client, session) = through(&front, &alice);

    let mut connection = session.connect().await.expect("opened on the second node");
    connection
        .send_message(direct, "over-the-second-node", "a ciphertext")
        .await
        .unwrap();
    let seq = loop {
        if let ServerFrame::Ack(ack) = connection.next().await.unwrap() {
            break ack.seq;
        }
    };
    connection.close().await;
    let history = bob
        .session()
        .history(direct, None, None, None)
        .await
        .unwrap();
    assert_eq!(
        (history[0].seq, history[0].client_msg_id.as_str()),
        (seq, "over-the-second-node")
    );
}
