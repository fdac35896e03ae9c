//! The object port's conformance suite against `S3Objects` on moto's S3
//! server (`moto_server` from PyPI): a real S3-compatible endpoint, with
//! multipart uploads and ranged GETs.
//!
//! `moto_server` is looked for in `$SLUICE_MOTO_SERVER`, on the `PATH`, and
//! in the virtualenv `tests/boto3/venv.sh` makes. Without it the test says
//! so and passes, so that `cargo test` needs nothing installed; CI sets
//! `SLUICE_REQUIRE_MOTO=1` (after making the virtualenv), and then a
//! missing server fails the test.
#![cfg(feature = "s3")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice::objects::{S3Config, S3Objects, conformance};

fn moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = std::env::var_os("SLUICE_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sluice-boto3-venv"))
        });
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(venv.map(|v| v.join("bin")))
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
}

/// A moto server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start(exe: &PathBuf) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers(port) {
            assert!(
                moto.child.try_wait().unwrap().is_none(),
                "moto_server ended before it answered"
            );
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer in 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an HTTP server answers on `port`.
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 8];
    s.write_all(b"GET /moto-api/ HTTP/1.0\r\n\r\n").is_ok()
        && s.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.")
}

#[test]
fn s3_objects_pass_the_object_conformance_suite_on_moto() {
    let Some(exe) = moto_server() else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_MOTO").is_none(),
            "SLUICE_REQUIRE_MOTO is set and no moto_server was found"
        );
        eprintln!(
            "skipped: no moto_server (. tests/boto3/venv.sh makes one, or set SLUICE_MOTO_SERVER)"
        );
        return;
    };
    let moto = Moto::start(&exe);
    let objects = S3Objects::new(S3Config {
        endpoint: moto.url.clone(),
        region: "us-east-1".into(),
        access_key_id: "moto-key".into(),
        secret_access_key: "moto-secret".into(),
    })
    .unwrap();
    conformance::all(&objects);
}
