//! `sluice serve`'s front door, over raw HTTP: throttling, body limits and
//! refusals that come before any operation runs. (The whole flow with the
//! real AWS clients is tests/boto3/.)

use std::time::Duration;

use sluice::server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(
    dir: &std::path::Path,
    max_requests: usize,
    max_body: usize,
) -> std::net::SocketAddr {
    start_with(ServerConfig {
        data_dir: dir.to_owned(),
        max_requests,
        max_body_bytes: max_body,
        ..ServerConfig::default()
    })
    .await
}

async fn start_with(config: ServerConfig) -> std::net::SocketAddr {
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: Some(1),
        ..config
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    assert!(server.credentials_file().unwrap().is_file());
    tokio::spawn(server.run(std::future::pending()));
    addr
}

/// Sends `raw` and reads the whole answer (the server closes after it).
async fn exchange(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Headers that pass the checks made before a body is read (a key the
/// server knows, dated now) but whose signature is not checked yet: what a
/// client with a key sends.
fn keyed_headers(dir: &std::path::Path) -> String {
    let creds = std::fs::read_to_string(dir.join("credentials")).unwrap();
    let key = creds
        .lines()
        .find_map(|l| l.strip_prefix("aws_access_key_id = "))
        .unwrap();
    let now = sluice::time::amz_date((sluice::job::system_clock())());
    format!(
        "X-Amz-Date: {now}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={key}/{}/us-east-1/profile/\
         aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\n",
        &now[..8]
    )
}

/// A request under a key id (headers that pass, a signature that will
/// not) whose body has begun to arrive and stops: it holds its slot.
async fn slow_body(addr: std::net::SocketAddr, keyed: &str) -> TcpStream {
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        format!("POST /domains/d HTTP/1.1\r\nHost: x\r\n{keyed}Content-Length: 10\r\n\r\n{{")
            .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow
}

/// Sends the rest of a [`slow_body`]; its answer.
async fn finish_slow_body(slow: &mut TcpStream) -> String {
    slow.write_all(b"\"a\":1}   \r\n").await.unwrap();
    let mut out = vec![0; 4096];
    let n = slow.read(&mut out).await.unwrap();
    String::from_utf8_lossy(&out[..n]).into_owned()
}

fn status(resp: &str) -> &str {
    resp.split(' ').nth(1).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_too_many_is_throttled_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), 1, 1 << 20).await;
    // The first request (by a known key) holds the only slot while its
    // body trickles in.
    let keyed = keyed_headers(dir.path());
    let mut slow = slow_body(addr, &keyed).await;
    let resp = exchange(
        addr,
        "GET /domains HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), "429", "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-amzn-errortype: throttlingexception")
    );
    assert!(resp.to_ascii_lowercase().contains("x-amzn-requestid: "));
    // The slow one, once whole, is refused: its signature is not one.
    let resp = finish_slow_body(&mut slow).await;
    assert_eq!(status(&resp), "403", "{resp}");
    assert!(resp.contains("InvalidSignatureException"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_and_unsigned_or_forged_calls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), 8, 64).await;
    let body = "x".repeat(100);
    let keyed = keyed_headers(dir.path());
    let resp = exchange(
        addr,
        &format!(
            "POST /domains/d HTTP/1.1\r\nHost: x\r\n{keyed}Content-Length: 100\r\nConnection: close\r\n\r\n{body}"
        ),
    )
    .await;
    assert_eq!(status(&resp), "400", "{resp}");
    assert!(resp.contains("BadRequestException"));

    // Unsigned, with a body that never comes: refused from the headers,
    // at once, not after waiting for the body.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /domains/d HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{")
        .await
        .unwrap();
    let (resp, took) = until_closed(&mut s).await;
    assert_eq!(status(&resp), "403", "{resp}");
    assert!(
        resp.contains("MissingAuthenticationTokenException"),
        "{resp}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Two Authorization headers: refused.
    let resp = exchange(
        addr,
        &format!(
            "GET /domains HTTP/1.1\r\nHost: x\r\n{keyed}Authorization: AWS4-HMAC-SHA256 x\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status(&resp), "400", "{resp}");
    assert!(resp.contains("more than one Authorization"), "{resp}");

    let resp = exchange(
        addr,
        "GET /domains HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Amz-Date: 20261122T000000Z\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIANOBODY/20261122/us-east-1/profile/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=00\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), "403", "{resp}");
    assert!(resp.contains("UnrecognizedClientException"));

    let resp = exchange(
        addr,
        "GET /domains HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic eDp5\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), "400", "{resp}");
    assert!(resp.contains("IncompleteSignatureException"));

    // An upload URL that was never signed.
    let resp = exchange(
        addr,
        "PUT /uploads/000000000000/d/0123456789abcdef0123456789abcdef?X-Sluice-Expires=9999999999&\
         X-Sluice-Signature=00 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\na",
    )
    .await;
    assert_eq!(status(&resp), "403", "{resp}");
    assert!(resp.contains("<Code>SignatureDoesNotMatch</Code>"));
}

/// Reads until the server closes the connection; what it sent, and how
/// long that took.
async fn until_closed(s: &mut TcpStream) -> (String, Duration) {
    let t = std::time::Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_free_their_slot() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_with(ServerConfig {
        data_dir: dir.path().to_owned(),
        max_requests: 1,
        max_connections: 3,
        request_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    })
    .await;

    // Headers that never finish: the connection is closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /domains HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (_, took) = until_closed(&mut s).await;
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A body that never finishes holds the only request slot for the
    // timeout, then is answered 408, and the slot serves others again.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let keyed = keyed_headers(dir.path());
    s.write_all(
        format!("POST /domains/d HTTP/1.1\r\nHost: x\r\n{keyed}Content-Length: 10\r\n\r\n{{")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (resp, _) = until_closed(&mut s).await;
    assert_eq!(status(&resp), "408", "{resp}");
    assert!(resp.contains("RequestTimeoutException"), "{resp}");
    let resp = exchange(
        addr,
        "GET /domains HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), "403", "{resp}");

    // An idle keep-alive connection is closed after the timeout too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /domains HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (resp, took) = until_closed(&mut s).await;
    assert_eq!(status(&resp), "403", "{resp}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Past max_connections, a connection is closed as it is accepted,
    // and the open ones are still served.
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /domains HTTP/1.1\r\n").await.unwrap();
        open.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /domains HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (resp, took) = until_closed(&mut extra).await;
    assert_eq!(resp, "");
    assert!(took < Duration::from_millis(900), "{took:?}");
    open[0]
        .write_all(b"Host: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (resp, _) = until_closed(&mut open[0]).await;
    assert_eq!(status(&resp), "403", "{resp}");
}

/// A client sending slow bodies under a key id (headers that pass, a
/// signature that will not) holds at most a quarter of the request slots;
/// the others still serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holds_a_quarter_of_the_slots_with_unverified_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), 4, 1 << 20).await;
    let keyed = keyed_headers(dir.path());
    let mut slow = slow_body(addr, &keyed).await;
    // Its second body-bearing request is throttled, though slots are free.
    let resp = exchange(
        addr,
        &format!(
            "POST /domains/e HTTP/1.1\r\nHost: x\r\n{keyed}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        ),
    )
    .await;
    assert_eq!(status(&resp), "429", "{resp}");
    assert!(resp.contains("from one client"), "{resp}");
    // Once the first is whole (and refused), the client may again.
    assert_eq!(status(&finish_slow_body(&mut slow).await), "403");
    let resp = exchange(
        addr,
        &format!(
            "POST /domains/e HTTP/1.1\r\nHost: x\r\n{keyed}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        ),
    )
    .await;
    assert_eq!(status(&resp), "403", "{resp}");
}
