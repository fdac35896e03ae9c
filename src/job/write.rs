//! The surviving records of a run, written into the store in key order.
//!
//! Two threads share the work: this one sorts, then turns each batch into
//! keys and JSON arrays of values; a writer thread hands the previous
//! batch to the store.
//! Batches go in ascending key order, so SQLite appends to its B-tree
//! rather than splitting pages all over it.

use std::sync::mpsc;

use rayon::ThreadPool;
use rayon::iter::{IntoParallelRefMutIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ingest::output::is_plain_json;
use crate::ingest::{RecordHandle, Records, UniqueRecord};
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
    /// A `String`, so that the writer takes its rows by slicing, not by
    /// checking every byte again.
    text: String,
    /// (key end, values end) offsets into `text`, per row; each key starts
    /// where the previous values end.
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
    let targets: Vec<&str> = mapping.fields().iter().map(|f| &*f.target).collect();
    // Keys of several fields are stored as JSON arrays of their values,
    // readable and unambiguous, and ordered as that text: each record's is
    // made once, in handle order. Handles come in ascending order, so a
    // handle's index among them is found by binary search.
    let multi = mapping.key_fields().len() > 1;
    let key_handles: Vec<RecordHandle> = if multi {
        records.handles().collect()
    } else {
        Vec::new()
    };
    let mut key_text = String::new();
    let mut key_bounds = vec![0];
    if multi {
        key_bounds.reserve(key_handles.len());
        for &h in &key_handles {
            write_key_array(&mut key_text, &records.get(h));
            key_bounds.push(key_text.len());
        }
    }
    let key_of = |h: RecordHandle| -> &[u8] {
        if multi {
            let i = key_handles.binary_search(&h).unwrap_or_default();
            &key_text.as_bytes()[key_bounds[i]..key_bounds[i + 1]]
        } else {
            records.get(h).key_bytes()
        }
    };
    // 32 bytes a record: the key's first 24 bytes, which decide nearly
    // every comparison without reading the key, and the record's handle.
    // Reading keys is a cache miss or two each: on the canonical job's
    // e-mails, 8 bytes leave 94% of neighbours tied, 16 bytes 19%, 24
    // bytes none, and the ties' reads were a quarter of the job.
    let mut order: Vec<([u64; 3], RecordHandle)> = Vec::with_capacity(records.len() as usize);
    order.extend(records.handles().map(|h| ([0; 3], h)));
    pool.install(|| order.par_iter_mut().for_each(|e| e.0 = prefix(key_of(e.1))));
    if let Some(w) = target.written_through {
        // What an earlier attempt wrote stays written.
        order.retain(|&(_, h)| key_of(h) > w);
    }
    // Only grouped by first byte here; each group is sorted just before
    // its rows are sent, so the writer starts after one group's sort, not
    // the whole file's, and the rest is sorted while it writes.
    pool.install(|| order.par_sort_unstable_by_key(|e| e.0[0] >> 56));
    let mut groups = Vec::new();
    let mut at = 0;
    while at < order.len() {
        let byte = order[at].0[0] >> 56;
        let end = at + order[at..].partition_point(|e| e.0[0] >> 56 == byte);
        groups.push(at..end);
        at = end;
    }
    let mut groups = groups.into_iter();
    let mut sorted_to = 0;
    let mut sort_to = |order: &mut [([u64; 3], RecordHandle)], end: usize| {
        while sorted_to < end {
            let Some(g) = groups.next() else { break };
            pool.install(|| {
                order[g.clone()].par_sort_unstable_by(|a, b| {
                    a.0.cmp(&b.0).then_with(|| key_of(a.1).cmp(key_of(b.1)))
                });
            });
            sorted_to = g.end;
        }
    };

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
                for &(key_end, values_end) in &batch.ends {
                    let key = batch.text.get(at..key_end).unwrap_or_default();
                    let values = batch.text.get(key_end..values_end).unwrap_or_default();
                    views.push(ProfileRow { key, values });
                    at = values_end;
                }
                let counts = target
                    .store
                    .write_profiles(&ProfileBatch {
                        attempt: target.attempt,
                        domain: target.domain,
                        now_ms: now(),
                        expires_ms: target.expires_ms,
                        targets: &targets,
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
        let mut sent_all = true;
        let per_batch = target.batch_rows.max(1);
        for first in (0..order.len()).step_by(per_batch) {
            if stop() {
                sent_all = false;
                break;
            }
            let end = (first + per_batch).min(order.len());
            sort_to(&mut order, end);
            let chunk = &order[first..end];
            let mut batch = recycled.try_recv().unwrap_or_else(|_| Batch {
                text: String::with_capacity(chunk.len() * 160),
                ends: Vec::with_capacity(chunk.len()),
            });
            for (&(_, h), r) in chunk
                .iter()
                .zip(records.get_each(chunk.iter().map(|e| e.1)))
            {
                // Keys are `str`s written by this crate.
                let key = if multi {
                    std::str::from_utf8(key_of(h)).unwrap_or_default()
                } else {
                    std::str::from_utf8(r.key_bytes()).unwrap_or_default()
                };
                batch.text.push_str(key);
                let key_end = batch.text.len();
                write_values(&mut batch.text, r.values());
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

/// The first 24 bytes, big-endian, so that comparing prefixes orders like
/// comparing bytes.
fn prefix(key: &[u8]) -> [u64; 3] {
    let mut b = [0u8; 24];
    let n = key.len().min(24);
    b[..n].copy_from_slice(&key[..n]);
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_be_bytes(w)
    };
    [word(0), word(1), word(2)]
}

fn write_key_array(out: &mut String, r: &UniqueRecord<'_>) {
    write_values(out, r.key_values());
}

/// Values as a JSON array of strings, as [`ProfileRow::values`] wants
/// them.
fn write_values<'a>(out: &mut String, values: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if is_plain_json(v) {
            out.push('"');
            out.push_str(v);
            out.push('"');
        } else {
            out.push_str(&serde_json::Value::from(v).to_string());
        }
    }
    out.push(']');
}
