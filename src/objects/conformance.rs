//! What every object backend must do, as one set of checks each backend's
//! tests call (the local and in-memory ones in their unit tests, S3 against
//! moto's server in `tests/s3_objects.rs`; a backend of yours can call
//! [`all`] from its tests too).

use std::io::{Read, Write};

use super::{ObjectAttributes, ObjectErrorKind, Objects, get, put};

/// Runs every check on a backend with no buckets yet (it makes the bucket
/// `bkt`).
///
/// # Panics
///
/// When the backend does something else than the port says: these are
/// tests.
pub fn all(objects: &dyn Objects) {
    buckets(objects);
    bucket_lifecycle(objects);
    put_get_list_delete(objects);
    ranges(objects);
    big_objects_stream(objects);
    unfinished_writes_leave_nothing(objects);
    names_are_checked(objects);
    adopted_files_become_objects_or_stay(objects);
}

fn buckets(o: &dyn Objects) {
    assert!(!o.bucket_exists("bkt").unwrap());
    let e = o.list("bkt", "").unwrap_err();
    assert_eq!(e.kind, ObjectErrorKind::NoSuchBucket);
    let e = put(o, "bkt", "k", b"x", &ObjectAttributes::default()).unwrap_err();
    assert_eq!(e.kind, ObjectErrorKind::NoSuchBucket);
    o.create_bucket("bkt").unwrap();
    assert!(o.bucket_exists("bkt").unwrap());
    assert_eq!(
        o.create_bucket("bkt").unwrap_err().kind,
        ObjectErrorKind::BucketExists
    );
    assert_eq!(
        o.create_bucket("Bad_Name").unwrap_err().kind,
        ObjectErrorKind::BadName
    );
    assert!(!o.bucket_exists("Bad_Name").unwrap());
}

fn bucket_lifecycle(o: &dyn Objects) {
    o.create_bucket("bkt-gone").unwrap();
    let listed = o.list_buckets().unwrap();
    let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    assert!(
        names.contains(&"bkt") && names.contains(&"bkt-gone"),
        "{names:?}"
    );
    assert!(names.windows(2).all(|w| w[0] < w[1]), "by name: {names:?}");
    assert!(listed.iter().all(|b| b.created_ms.is_some()), "{listed:?}");
    put(o, "bkt-gone", "in/k", b"x", &ObjectAttributes::default()).unwrap();
    assert_eq!(
        o.delete_bucket("bkt-gone").unwrap_err().kind,
        ObjectErrorKind::BucketNotEmpty
    );
    o.delete("bkt-gone", "in/k").unwrap();
    o.delete_bucket("bkt-gone").unwrap();
    assert!(!o.bucket_exists("bkt-gone").unwrap());
    let names: Vec<String> = o
        .list_buckets()
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(!names.iter().any(|n| n == "bkt-gone"), "{names:?}");
    assert_eq!(
        o.delete_bucket("bkt-gone").unwrap_err().kind,
        ObjectErrorKind::NoSuchBucket
    );
}

fn put_get_list_delete(o: &dyn Objects) {
    let a = ObjectAttributes::default();
    put(o, "bkt", "in/a.csv", b"abc", &a).unwrap();
    put(o, "bkt", "in/sub/b.csv", b"de", &a).unwrap();
    put(o, "bkt", "other.csv", b"f", &a).unwrap();
    put(o, "bkt", "inside.csv", b"g", &a).unwrap();
    let keys = |p: &str| -> Vec<(String, u64)> {
        o.list("bkt", p)
            .unwrap()
            .into_iter()
            .map(|i| (i.key, i.size))
            .collect()
    };
    assert_eq!(
        keys("in/"),
        [("in/a.csv".into(), 3), ("in/sub/b.csv".into(), 2)]
    );
    assert_eq!(keys("").len(), 4);
    assert_eq!(keys("in").len(), 3, "a prefix is a string prefix");
    assert!(keys("nothing").is_empty());
    assert_eq!(get(o, "bkt", "in/a.csv").unwrap(), b"abc");
    let h = o.head("bkt", "in/a.csv").unwrap();
    assert_eq!((h.key.as_str(), h.size), ("in/a.csv", 3));
    assert_eq!(
        o.head("bkt", "missing").unwrap_err().kind,
        ObjectErrorKind::NoSuchKey
    );
    assert_eq!(
        o.read("bkt", "missing", 0..1).err().unwrap().kind,
        ObjectErrorKind::NoSuchKey
    );
    // A new version replaces the old one whole, and has another tag.
    put(o, "bkt", "in/a.csv", b"a longer text", &a).unwrap();
    assert_eq!(get(o, "bkt", "in/a.csv").unwrap(), b"a longer text");
    let h2 = o.head("bkt", "in/a.csv").unwrap();
    assert_eq!(h2.size, 13);
    assert_ne!(h.etag, h2.etag);
    o.delete("bkt", "in/a.csv").unwrap();
    o.delete("bkt", "in/a.csv").unwrap();
    assert_eq!(keys("in/"), [("in/sub/b.csv".into(), 2)]);
}

fn ranges(o: &dyn Objects) {
    let body: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let mut w = o.write("bkt", "big", &ObjectAttributes::default()).unwrap();
    for chunk in body.chunks(7777) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.finish().unwrap().size, body.len() as u64);
    for (start, end) in [(0, 10), (5, 70_000), (299_990, 400_000), (400_000, 500_000)] {
        let mut got = Vec::new();
        o.read("bkt", "big", start..end)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        let s = (start as usize).min(body.len());
        let e = (end as usize).min(body.len());
        assert_eq!(got, body[s..e], "{start}..{end}");
    }
}

/// An object of several multipart parts, written in small chunks, reads
/// back whole and in ranges across part boundaries.
fn big_objects_stream(o: &dyn Objects) {
    let len = 2 * super::PART_BYTES + 12_345;
    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut w = o
        .write("bkt", "parts", &ObjectAttributes::default())
        .unwrap();
    for chunk in body.chunks(65_536) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.finish().unwrap().size, len as u64);
    assert_eq!(o.head("bkt", "parts").unwrap().size, len as u64);
    let part = super::PART_BYTES as u64;
    for (start, end) in [
        (0, len as u64),
        (part - 3, part + 3),
        (part - 1_000_000, 2 * part + 5),
        (len as u64 - 1, len as u64 + 9),
    ] {
        let mut got = Vec::new();
        o.read("bkt", "parts", start..end)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        let e = (end as usize).min(len);
        assert!(got == body[start as usize..e], "{start}..{end}");
    }
    o.delete("bkt", "parts").unwrap();
    // A large write dropped unfinished (its parts sent) leaves nothing.
    let mut w = o
        .write("bkt", "parts", &ObjectAttributes::default())
        .unwrap();
    for chunk in body[..super::PART_BYTES + 1].chunks(65_536) {
        w.write_all(chunk).unwrap();
    }
    drop(w);
    assert_eq!(
        o.head("bkt", "parts").unwrap_err().kind,
        ObjectErrorKind::NoSuchKey
    );
}

fn unfinished_writes_leave_nothing(o: &dyn Objects) {
    let mut w = o
        .write("bkt", "half", &ObjectAttributes::default())
        .unwrap();
    w.write_all(b"some bytes").unwrap();
    drop(w);
    assert_eq!(
        o.head("bkt", "half").unwrap_err().kind,
        ObjectErrorKind::NoSuchKey
    );
    assert!(o.list("bkt", "half").unwrap().is_empty());
}

/// A file is either moved in as the object, whole, or left as it was.
fn adopted_files_become_objects_or_stay(o: &dyn Objects) {
    let dir = std::env::temp_dir().join(format!(
        "sluice-adopt-{}-{}",
        std::process::id(),
        crate::crypto::to_hex(&crate::crypto::random::<6>())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("whole");
    std::fs::write(&file, b"adopted bytes").unwrap();
    let attributes = ObjectAttributes::default();
    match o.adopt("bkt", "adopted/k", &file, &attributes).unwrap() {
        Some(info) => {
            assert_eq!(info.size, 13);
            assert!(!file.exists(), "a moved file is not left behind");
            assert_eq!(get(o, "bkt", "adopted/k").unwrap(), b"adopted bytes");
            o.delete("bkt", "adopted/k").unwrap();
        }
        None => {
            assert_eq!(std::fs::read(&file).unwrap(), b"adopted bytes");
            assert_eq!(
                o.head("bkt", "adopted/k").unwrap_err().kind,
                ObjectErrorKind::NoSuchKey
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn names_are_checked(o: &dyn Objects) {
    for key in ["", "a\nb"] {
        let e = put(o, "bkt", key, b"x", &ObjectAttributes::default()).unwrap_err();
        assert_eq!(e.kind, ObjectErrorKind::BadName, "{key:?}");
    }
    // S3 keys a file system or a client may not hold as they are: kept
    // exactly, or refused as a bad name, never kept as another key.
    for key in [
        "/x.csv",
        "a//b",
        "dir/",
        "../x",
        "a/../b",
        "./a",
        "%41",
        ".sluice-part-1",
    ] {
        match put(o, "bkt", key, key.as_bytes(), &ObjectAttributes::default()) {
            Ok(_) => {
                assert_eq!(get(o, "bkt", key).unwrap(), key.as_bytes(), "{key:?}");
                let listed = o.list("bkt", key).unwrap();
                assert_eq!(listed.len(), 1, "{key:?}: {listed:?}");
                assert_eq!(listed[0].key, key);
                o.delete("bkt", key).unwrap();
                assert_eq!(
                    o.head("bkt", key).unwrap_err().kind,
                    ObjectErrorKind::NoSuchKey
                );
            }
            Err(e) => assert_eq!(e.kind, ObjectErrorKind::BadName, "{key:?}: {e}"),
        }
    }
    let long = "k".repeat(super::MAX_KEY_BYTES + 1);
    let e = o.head("bkt", &long).unwrap_err();
    assert_eq!(e.kind, ObjectErrorKind::BadName);
}
