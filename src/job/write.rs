//! The surviving records of a run, written into the store in key order.
//!
//! Two threads share the work: this one sorts, then turns each batch into
//! keys and JSON; a writer thread hands the previous batch to the store.
//! Batches go in ascending key order, so SQLite appends to its B-tree
//! rather than splitting pages all over it.

use std::sync::mpsc;

use rayon::ThreadPool;
use rayon::slice::ParallelSliceMut;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ingest::output::{JsonShape, write_json_str};
use crate::ingest::{Records, UniqueRecord};
use crate::store::{Attempt, ProfileBatch, ProfileRow, ProfileStore, StoreError};

/// Where and how to write.
pub(super) struct Target<'a> {
    pub(super) store: &'a dyn ProfileStore,
    /// The attempt writing: its job's counters move with each batch.
    pub(super) attempt: Attempt<'a>,
    pub(super) domain: &'a str,
    pub(super) expires_ms: i64,
    pub(super) batch_rows: usize,
    /// Keys up to and including this one were written by an earlier
    /// attempt.
    pub(super) written_through: Option<&'a [u8]>,
}

/// Why writing ended early.
#[derive(Debug)]
pub(super) enum Halt {
    Stopped,
    Store(StoreError),
}

/// One batch, built here and written there.
struct Batch {
    text: Vec<u8>,
    /// (key end, fields end) offsets into `text`, per row; each key starts
    /// where the previous fields end.
    ends: Vec<(usize, usize)>,
}

/// Writes `records`, calling `stop` between batches. Ends with why it
/// halted, if it did, and how many records the batches it committed
/// wrote.
pub(super) fn write(
    records: &Records,
    pool: &ThreadPool,
    target: &Target<'_>,
    now: &(dyn Fn() -> i64 + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<u64, (Halt, u64)> {
    let written = AtomicU64::new(0);
    let result = write_batches(records, pool, target, now, stop, &written);
    let n = written.into_inner();
    result.map(|()| n).map_err(|h| (h, n))
}

fn write_batches(
    records: &Records,
    pool: &ThreadPool,
    target: &Target<'_>,
    now: &(dyn Fn() -> i64 + Sync),
    stop: &(dyn Fn() -> bool + Sync),
    written: &AtomicU64,
) -> Result<(), Halt> {
    let mapping = records.mapping();
    let multi = mapping.key_fields().len() > 1;
    // Keys of several fields are stored as JSON arrays of their values,
    // readable and unambiguous.
    // `Records::iter` visits records in the same order every time, so the
    // i-th key written here belongs to the i-th record below.
    let mut key_text = Vec::new();
    let mut key_bounds = vec![0];
    if multi {
        key_bounds.reserve(records.len() as usize);
        for r in records.iter() {
            write_key_array(&mut key_text, &r);
            key_bounds.push(key_text.len());
        }
    }
    let mut rows: Vec<(u64, &[u8], UniqueRecord<'_>)> = Vec::with_capacity(records.len() as usize);
    for (i, r) in records.iter().enumerate() {
        let key = if multi {
            &key_text[key_bounds[i]..key_bounds[i + 1]]
        } else {
            r.key_bytes()
        };
        rows.push((prefix(key), key, r));
    }
    pool.install(|| rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1))));
    let start = match target.written_through {
        Some(w) => rows.partition_point(|r| r.1 <= w),
        None => 0,
    };
    let rows = &rows[start..];
    let shape = JsonShape::new(mapping);

    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Batch>(1);
        // Written batches come back to be filled again: fresh buffers
        // would cost a page fault every 4 KiB (a tenth of the job).
        let (give_back, recycled) = mpsc::channel::<Batch>();
        let writer = s.spawn(move || -> Result<(), Halt> {
            for mut batch in rx {
                if stop() {
                    return Err(Halt::Stopped);
                }
                let mut views = Vec::with_capacity(batch.ends.len());
                let mut at = 0;
                for &(key_end, fields_end) in &batch.ends {
                    // Keys and values are `str`s written by this crate.
                    let key = std::str::from_utf8(&batch.text[at..key_end]).unwrap_or_default();
                    let fields =
                        std::str::from_utf8(&batch.text[key_end..fields_end]).unwrap_or_default();
                    views.push(ProfileRow { key, fields });
                    at = fields_end;
                }
                let counts = target
                    .store
                    .write_profiles(&ProfileBatch {
                        attempt: target.attempt,
                        domain: target.domain,
                        now_ms: now(),
                        expires_ms: target.expires_ms,
                        rows: &views,
                    })
                    .map_err(Halt::Store)?;
                written.fetch_add(counts.created + counts.updated, Ordering::Relaxed);
                drop(views);
                batch.text.clear();
                batch.ends.clear();
                let _ = give_back.send(batch);
            }
            Ok(())
        });
        let mut values = Vec::new();
        let mut sent_all = true;
        for chunk in rows.chunks(target.batch_rows.max(1)) {
            if stop() {
                sent_all = false;
                break;
            }
            let mut batch = recycled.try_recv().unwrap_or_else(|_| Batch {
                text: Vec::with_capacity(chunk.len() * 320),
                ends: Vec::with_capacity(chunk.len()),
            });
            for (_, key, r) in chunk {
                batch.text.extend_from_slice(key);
                let key_end = batch.text.len();
                values.clear();
                values.extend(r.values());
                shape.write(&mut batch.text, &values);
                batch.ends.push((key_end, batch.text.len()));
            }
            if tx.send(batch).is_err() {
                break; // the writer stopped; its result says why
            }
        }
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match written {
            Ok(()) if !sent_all => Err(Halt::Stopped),
            other => other,
        }
    })
}

/// The first eight bytes, big-endian, so that comparing prefixes orders
/// like comparing bytes.
fn prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

fn write_key_array(out: &mut Vec<u8>, r: &UniqueRecord<'_>) {
    out.push(b'[');
    for (i, v) in r.key_values().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, v);
    }
    out.push(b']');
}
