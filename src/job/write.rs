//! The surviving records of a run, written into the store in key order.
//!
//! Two threads share the work: this one sorts, then turns each batch into
//! keys and JSON arrays of values; a writer thread hands the previous
//! batch to the store.
//! Batches go in ascending key order, so SQLite appends to its B-tree
//! rather than splitting pages all over it.

use std::sync::mpsc;

use rayon::ThreadPool;
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use rayon::slice::{ParallelSlice, ParallelSliceMut};

use std::sync::atomic::{AtomicU64, Ordering};

use super::terms::TermPlan;
use crate::ingest::output::write_json_bytes;
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

/// Rows whose search terms one task of the pool works out.
const TERM_CHUNK: usize = 8192;

/// A record's place in the write order: its key's first 24 bytes,
/// big-endian, and its handle.
type Entry = ([u64; 3], RecordHandle);

/// One batch, built here and written there.
struct Batch {
    /// Keys and values, copied from the records as bytes and checked as
    /// UTF-8 here, once for the batch: checking each of the many short
    /// values as it was read took a fifth of this thread's time. A
    /// `String`, so that the writer takes its rows by slicing.
    text: String,
    /// (key end, values end) offsets into `text`, per row; each key starts
    /// where the previous values end.
    ends: Vec<(usize, usize)>,
    /// The rows' search terms, one after another.
    terms: Vec<i64>,
    /// Where each row's terms end in `terms`.
    term_ends: Vec<usize>,
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
    let mut key_text = Vec::new();
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
            &key_text[key_bounds[i]..key_bounds[i + 1]]
        } else {
            records.get(h).key_bytes()
        }
    };
    // 32 bytes a record: the key's first 24 bytes, which decide nearly
    // every comparison without reading the key, and the record's handle.
    // Reading keys is a cache miss or two each: on the canonical job's
    // e-mails, 8 bytes leave 94% of neighbours tied, 16 bytes 19%, 24
    // bytes none, and the ties' reads were a quarter of the job.
    //
    // The workers walk the dedup shards at once, reading records a group
    // at a time, each shard's into a vector of its exact size, grouped by
    // the key's first two bytes. Rows of the same first two bytes are
    // gathered from every shard and sorted just before they are sent, so
    // the writer starts after one such bucket's sort, not the whole
    // file's, and the rest is sorted while it writes; a bucket is small
    // (on the canonical job at most about 2% of the rows). Built by the
    // job thread alone, the canonical job's 245 MB of order took 0.85 s,
    // mostly the kernel handing over fresh pages; a vector per bucket,
    // growing, went past the memory target, and so did buckets of one byte.
    let bucket_of = |e: &Entry| e.0[0] >> 48;
    let parts: Vec<Vec<Entry>> = pool.install(|| {
        records
            .handle_parts()
            .into_par_iter()
            .map(|(len, handles)| {
                let mut part = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                for (h, r) in handles.clone().zip(records.get_each(handles)) {
                    // A record already read: its own key, not read again.
                    let key = if multi { key_of(h) } else { r.key_bytes() };
                    // What an earlier attempt wrote stays written.
                    if target.written_through.is_none_or(|w| key > w) {
                        part.push((prefix(key), h));
                    }
                }
                part.sort_unstable_by_key(bucket_of);
                part
            })
            .collect()
    });
    let mut taken = vec![0; parts.len()];
    // The next bucket, sorted by key: the rows whose keys start with the
    // smallest two bytes not yet taken; none when all are taken.
    let next_bucket = || -> Option<Vec<Entry>> {
        let b = parts
            .iter()
            .zip(&taken)
            .filter_map(|(part, &at)| part.get(at).map(bucket_of))
            .min()?;
        let ends: Vec<usize> = parts
            .iter()
            .zip(&taken)
            .map(|(part, &at)| at + part[at..].partition_point(|e| bucket_of(e) <= b))
            .collect();
        let len = ends.iter().zip(&taken).map(|(end, at)| end - at).sum();
        let mut bucket = Vec::with_capacity(len);
        for ((part, at), end) in parts.iter().zip(&mut taken).zip(ends) {
            bucket.extend_from_slice(&part[*at..end]);
            *at = end;
        }
        pool.install(|| {
            bucket.par_sort_unstable_by(|a, b| {
                a.0.cmp(&b.0).then_with(|| key_of(a.1).cmp(key_of(b.1)))
            });
        });
        Some(bucket)
    };
    // Every handle to write, in key order, a bucket at a time.
    let mut ordered = std::iter::from_fn(next_bucket).flatten().map(|(_, h)| h);

    std::thread::scope(|s| {
        // A rendezvous: one batch is written while the next is built and waits,
        // and no third holds memory (the writer is the slower of the two).
        let (tx, rx) = mpsc::sync_channel::<Batch>(0);
        // Written batches come back to be filled again: fresh buffers
        // would cost a page fault every 4 KiB (a tenth of the job).
        let (give_back, recycled) = mpsc::channel::<Batch>();
        let writer = s.spawn(move || -> Result<(), Halt> {
            for mut batch in rx {
                if stop() {
                    return Err(Halt::Stopped);
                }
                let mut views = Vec::with_capacity(batch.ends.len());
                let (mut at, mut term_at) = (0, 0);
                for (&(key_end, values_end), &term_end) in batch.ends.iter().zip(&batch.term_ends) {
                    let key = batch.text.get(at..key_end).unwrap_or_default();
                    let values = batch.text.get(key_end..values_end).unwrap_or_default();
                    let terms = batch.terms.get(term_at..term_end).unwrap_or_default();
                    views.push(ProfileRow { key, values, terms });
                    at = values_end;
                    term_at = term_end;
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
                batch.terms.clear();
                batch.term_ends.clear();
                let _ = give_back.send(batch);
            }
            Ok(())
        });
        let per_batch = target.batch_rows.max(1);
        let n_targets = mapping.fields().len();
        let plan = TermPlan::of(mapping);
        // Encodes and sends one batch; false when the writer has stopped
        // (its result says why).
        let send = |handles: &[RecordHandle]| -> Result<bool, Halt> {
            let (mut text, mut ends, mut terms, mut term_ends) = match recycled.try_recv() {
                Ok(b) => (b.text.into_bytes(), b.ends, b.terms, b.term_ends),
                Err(_) => (
                    Vec::with_capacity(handles.len() * 160),
                    Vec::with_capacity(handles.len()),
                    Vec::with_capacity(handles.len() * 4),
                    Vec::with_capacity(handles.len()),
                ),
            };
            // The rows' text here, their search terms on the pool's threads
            // at the same time (on this thread they made the writer wait:
            // ~3 s of the canonical job).
            let encode = || {
                for (&h, r) in handles
                    .iter()
                    .zip(records.get_each(handles.iter().copied()))
                {
                    let key = if multi { key_of(h) } else { r.key_bytes() };
                    text.extend_from_slice(key);
                    let key_end = text.len();
                    write_values(&mut text, r.value_bytes());
                    ends.push((key_end, text.len()));
                }
            };
            let index = || -> Vec<(Vec<i64>, Vec<usize>)> {
                handles
                    .par_chunks(TERM_CHUNK)
                    .map(|chunk| {
                        let mut terms = Vec::with_capacity(chunk.len() * 4);
                        let mut ends = Vec::with_capacity(chunk.len());
                        let mut values = Vec::with_capacity(n_targets);
                        for r in records.get_each(chunk.iter().copied()) {
                            values.clear();
                            values.extend(r.value_bytes());
                            plan.push(&values, &mut terms);
                            ends.push(terms.len());
                        }
                        (terms, ends)
                    })
                    .collect()
            };
            let ((), chunks) = pool.install(|| rayon::join(encode, index));
            for (chunk_terms, chunk_ends) in chunks {
                let base = terms.len();
                terms.extend_from_slice(&chunk_terms);
                term_ends.extend(chunk_ends.iter().map(|e| e + base));
            }
            // Keys and values are `str`s written by this crate, so this
            // does not fail; if it did, the row is named.
            let text = String::from_utf8(text).map_err(|e| {
                let bad = e.utf8_error().valid_up_to();
                let row = ends.partition_point(|&(_, end)| end <= bad);
                let start = row.checked_sub(1).map_or(0, |r| ends[r].1);
                let key_end = ends.get(row).map_or(start, |&(k, _)| k);
                let key = e.as_bytes().get(start..key_end).unwrap_or_default();
                Halt::Store(StoreError::BadValues {
                    key: String::from_utf8_lossy(key).into_owned(),
                    targets: n_targets,
                })
            })?;
            Ok(tx
                .send(Batch {
                    text,
                    ends,
                    terms,
                    term_ends,
                })
                .is_ok())
        };
        let mut sent_all = true;
        let mut unsent = None;
        let mut pending: Vec<RecordHandle> = Vec::with_capacity(per_batch);
        loop {
            pending.clear();
            pending.extend(ordered.by_ref().take(per_batch));
            if pending.is_empty() {
                break;
            }
            if stop() {
                sent_all = false;
                break;
            }
            match send(&pending) {
                Ok(true) => {}
                Ok(false) => break, // the writer stopped; its result says why
                Err(halt) => {
                    unsent = Some(halt);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (written, unsent) {
            (Err(halt), _) | (Ok(()), Some(halt)) => Err(halt),
            (Ok(()), None) if !sent_all => Err(Halt::Stopped),
            (Ok(()), None) => Ok(()),
        }
    })
}

/// The first 24 bytes, big-endian, so that comparing prefixes orders like
/// comparing bytes.
pub(super) fn prefix(key: &[u8]) -> [u64; 3] {
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

pub(super) fn write_key_array(out: &mut Vec<u8>, r: &UniqueRecord<'_>) {
    write_values(out, r.key_values().map(str::as_bytes));
}

/// Values as a JSON array of strings, as [`ProfileRow::values`] wants
/// them.
pub(super) fn write_values<'a>(out: &mut Vec<u8>, values: impl Iterator<Item = &'a [u8]>) {
    out.push(b'[');
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_bytes(out, v);
    }
    out.push(b']');
}
