/*!
Last-row-wins deduplication in sharded hash tables.

# Design

Every kept row has an *ordinal*, `piece << 32 | row-in-piece`, that grows
with its place in the input whatever the piece size. For each normalized
key the table keeps the row with the greatest ordinal, so the result does
not depend on which worker finishes first or how many there are.

Workers insert whole pieces: the rows of a piece are grouped by shard with
a counting sort, and each shard is locked once per piece. With 256 shards
two to eight workers rarely meet on a lock.

Memory is the unique records and little else:

* A table entry is 16 bytes: the ordinal, the record's location and 32 bits
  of its hash. The table's hash is derived from those 32 bits, so growing a
  table never touches the records, and a probe reads a record only when 32
  hash bits already match.
* Records are stored once, `[varint key len][varint rest len][key][rest]`,
  in 64 KiB blocks per shard (records over 16 KiB get an allocation of their
  own). A newer row overwrites the older one in place when it fits; when it
  does not, the old bytes become garbage, and a shard whose garbage exceeds
  half its live bytes is compacted.
*/

use std::sync::Mutex;

use hashbrown::HashTable;

const SHARDS: usize = 256;
const BLOCK: usize = 64 * 1024;
/// Records longer than this get their own allocation.
const LARGE_RECORD: usize = BLOCK / 4;
/// `loc` values with this bit set index `Shard::large`.
const LARGE_BIT: u32 = 1 << 31;
/// Shards are not compacted below this much garbage.
const MIN_GARBAGE: u64 = 4 * BLOCK as u64;

/// One row of a parsed piece, encoded in the piece's arena.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PieceRow {
    /// Hash of the key bytes.
    pub(crate) hash: u64,
    /// Index of the row within its piece.
    pub(crate) row: u32,
    /// Range of the encoded record in the arena.
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Range of the key within the arena.
    pub(crate) key_start: usize,
    pub(crate) key_end: usize,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    ordinal: u64,
    loc: u32,
    h32: u32,
}

/// The table hash of an entry: 32 stored bits spread over 64.
#[inline]
fn table_hash(h32: u32) -> u64 {
    u64::from(h32).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[inline]
fn shard_of(hash: u64) -> usize {
    (hash >> 40) as usize % SHARDS
}

/// The unique records of one run did not fit the location space of a shard.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CapacityExceeded;

#[derive(Default)]
struct Shard {
    table: HashTable<Entry>,
    blocks: Vec<Vec<u8>>,
    large: Vec<Box<[u8]>>,
    free_large: Vec<u32>,
    live: u64,
    garbage: u64,
}

/// Writes `v` as LEB128.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 value; returns it and the bytes it took.
#[inline]
pub(crate) fn get_varint(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return (v, i + 1);
        }
    }
    (v, b.len().min(10))
}

/// Splits a stored record into key and rest.
#[inline]
fn split_record(b: &[u8]) -> (&[u8], &[u8]) {
    let (klen, a) = get_varint(b);
    let (rlen, c) = get_varint(&b[a..]);
    let key_start = a + c;
    let key_end = key_start + klen as usize;
    (&b[key_start..key_end], &b[key_end..key_end + rlen as usize])
}

/// Total stored length of the record at the start of `b`.
#[inline]
fn record_len(b: &[u8]) -> usize {
    let (klen, a) = get_varint(b);
    let (rlen, c) = get_varint(&b[a..]);
    a + c + klen as usize + rlen as usize
}

impl Shard {
    #[inline]
    fn bytes_at(&self, loc: u32) -> &[u8] {
        if loc & LARGE_BIT != 0 {
            &self.large[(loc & !LARGE_BIT) as usize]
        } else {
            let loc = loc as usize;
            &self.blocks[loc / BLOCK][loc % BLOCK..]
        }
    }

    fn append(&mut self, rec: &[u8]) -> Result<u32, CapacityExceeded> {
        self.live += rec.len() as u64;
        if rec.len() > LARGE_RECORD {
            let boxed: Box<[u8]> = rec.into();
            if let Some(i) = self.free_large.pop() {
                self.large[i as usize] = boxed;
                return Ok(i | LARGE_BIT);
            }
            let i = u32::try_from(self.large.len())
                .ok()
                .filter(|i| i & LARGE_BIT == 0)
                .ok_or(CapacityExceeded)?;
            self.large.push(boxed);
            return Ok(i | LARGE_BIT);
        }
        let need_block = self
            .blocks
            .last()
            .is_none_or(|b| b.capacity() - b.len() < rec.len());
        if need_block {
            if (self.blocks.len() + 1) * BLOCK > LARGE_BIT as usize {
                return Err(CapacityExceeded);
            }
            self.blocks.push(Vec::with_capacity(BLOCK));
        }
        let bi = self.blocks.len() - 1;
        let block = &mut self.blocks[bi];
        let loc = bi * BLOCK + block.len();
        block.extend_from_slice(rec);
        Ok(loc as u32)
    }

    /// Frees the record at `loc`, which is being replaced.
    fn release(&mut self, loc: u32, len: usize) {
        self.live -= len as u64;
        if loc & LARGE_BIT != 0 {
            let i = loc & !LARGE_BIT;
            self.large[i as usize] = Box::default();
            self.free_large.push(i);
        } else {
            self.garbage += len as u64;
        }
    }

    /// Inserts one row; returns whether its key was new.
    fn insert(
        &mut self,
        ordinal: u64,
        hash: u64,
        key: &[u8],
        rec: &[u8],
    ) -> Result<bool, CapacityExceeded> {
        let h32 = hash as u32;
        let th = table_hash(h32);
        let found = {
            let Shard {
                table,
                blocks,
                large,
                ..
            } = self;
            table
                .find_mut(th, |e| {
                    e.h32 == h32 && {
                        let b = if e.loc & LARGE_BIT != 0 {
                            &large[(e.loc & !LARGE_BIT) as usize][..]
                        } else {
                            let l = e.loc as usize;
                            &blocks[l / BLOCK][l % BLOCK..]
                        };
                        split_record(b).0 == key
                    }
                })
                .map(|e| (e.ordinal, e.loc))
        };
        match found {
            Some((old_ordinal, _)) if old_ordinal >= ordinal => Ok(false),
            Some((_, old_loc)) => {
                let old_len = record_len(self.bytes_at(old_loc));
                let new_loc = if old_loc & LARGE_BIT == 0 && rec.len() <= old_len {
                    // Overwrite in place; the tail of the old record is garbage.
                    let l = old_loc as usize;
                    self.blocks[l / BLOCK][l % BLOCK..l % BLOCK + rec.len()].copy_from_slice(rec);
                    self.live = self.live + rec.len() as u64 - old_len as u64;
                    self.garbage += (old_len - rec.len()) as u64;
                    old_loc
                } else {
                    let loc = self.append(rec)?;
                    self.release(old_loc, old_len);
                    loc
                };
                let e = self
                    .table
                    .find_mut(th, |e| e.h32 == h32 && e.loc == old_loc)
                    .expect("entry found above");
                e.ordinal = ordinal;
                e.loc = new_loc;
                self.maybe_compact()?;
                Ok(false)
            }
            None => {
                let loc = self.append(rec)?;
                self.table
                    .insert_unique(th, Entry { ordinal, loc, h32 }, |e| table_hash(e.h32));
                Ok(true)
            }
        }
    }

    fn maybe_compact(&mut self) -> Result<(), CapacityExceeded> {
        if self.garbage < MIN_GARBAGE || self.garbage < self.live / 2 {
            return Ok(());
        }
        let old = std::mem::take(&mut self.blocks);
        self.live = self.large.iter().map(|b| b.len() as u64).sum();
        self.garbage = 0;
        let mut moved = Vec::with_capacity(self.table.len());
        for e in self.table.iter() {
            if e.loc & LARGE_BIT == 0 {
                moved.push(e.loc);
            }
        }
        // Copy in location order so the new blocks keep the old layout.
        moved.sort_unstable();
        let mut remap = Vec::with_capacity(moved.len());
        for &loc in &moved {
            let l = loc as usize;
            let b = &old[l / BLOCK][l % BLOCK..];
            let rec = &b[..record_len(b)];
            remap.push(self.append(rec)?);
        }
        for e in self.table.iter_mut() {
            if e.loc & LARGE_BIT == 0 {
                let i = moved.binary_search(&e.loc).expect("moved above");
                e.loc = remap[i];
            }
        }
        Ok(())
    }
}

/// The sharded table that workers insert into.
pub(crate) struct Dedup {
    shards: Vec<Mutex<Shard>>,
    hasher: ahash::RandomState,
}

impl Dedup {
    pub(crate) fn new() -> Dedup {
        Dedup {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            // Fixed seeds: runs are reproducible, and nothing the table's
            // layout does is visible in results.
            hasher: ahash::RandomState::with_seeds(
                0x243F_6A88_85A3_08D3,
                0x1319_8A2E_0370_7344,
                0xA409_3822_299F_31D0,
                0x082E_FA98_EC4E_6C89,
            ),
        }
    }

    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Inserts the rows of piece `piece`; returns how many keys were new.
    ///
    /// `order` is scratch space, reused between calls.
    pub(crate) fn insert_piece(
        &self,
        piece: u32,
        rows: &[PieceRow],
        arena: &[u8],
        order: &mut Vec<u32>,
    ) -> Result<u64, CapacityExceeded> {
        let mut starts = [0u32; SHARDS + 1];
        for r in rows {
            starts[shard_of(r.hash) + 1] += 1;
        }
        for i in 0..SHARDS {
            starts[i + 1] += starts[i];
        }
        order.clear();
        order.resize(rows.len(), 0);
        let mut fill = starts;
        for (i, r) in rows.iter().enumerate() {
            let s = shard_of(r.hash);
            order[fill[s] as usize] = i as u32;
            fill[s] += 1;
        }
        let mut new = 0u64;
        for s in 0..SHARDS {
            let range = starts[s] as usize..starts[s + 1] as usize;
            if range.is_empty() {
                continue;
            }
            let mut shard = self.shards[s].lock().unwrap_or_else(|p| p.into_inner());
            for &i in &order[range] {
                let r = &rows[i as usize];
                let ordinal = (u64::from(piece) << 32) | u64::from(r.row);
                new += u64::from(shard.insert(
                    ordinal,
                    r.hash,
                    &arena[r.key_start..r.key_end],
                    &arena[r.start..r.end],
                )?);
            }
        }
        Ok(new)
    }

    /// The unique records; the table is done.
    pub(crate) fn finish(self) -> Stored {
        Stored {
            shards: self
                .shards
                .into_iter()
                .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
                .collect(),
        }
    }
}

/// The unique records, as the table left them.
pub(crate) struct Stored {
    shards: Vec<Shard>,
}

/// A stored record: its ordinal, key bytes and non-key bytes.
pub(crate) struct StoredRecord<'a> {
    pub(crate) ordinal: u64,
    pub(crate) key: &'a [u8],
    pub(crate) rest: &'a [u8],
}

impl Stored {
    pub(crate) fn len(&self) -> u64 {
        self.shards.iter().map(|s| s.table.len() as u64).sum()
    }

    /// Every record's ordinal and location, `shard << 32 | loc`.
    pub(crate) fn locations(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(self.len() as usize);
        for (s, shard) in self.shards.iter().enumerate() {
            out.extend(
                shard
                    .table
                    .iter()
                    .map(|e| (e.ordinal, (s as u64) << 32 | u64::from(e.loc))),
            );
        }
        out
    }

    pub(crate) fn get(&self, location: u64) -> (&[u8], &[u8]) {
        let shard = &self.shards[(location >> 32) as usize];
        split_record(shard.bytes_at(location as u32))
    }

    /// Every record, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = StoredRecord<'_>> + '_ {
        self.shards.iter().flat_map(|shard| {
            shard.table.iter().map(move |e| {
                let (key, rest) = split_record(shard.bytes_at(e.loc));
                StoredRecord {
                    ordinal: e.ordinal,
                    key,
                    rest,
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(key: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_varint(&mut v, key.len() as u64);
        put_varint(&mut v, rest.len() as u64);
        v.extend_from_slice(key);
        v.extend_from_slice(rest);
        v
    }

    /// Inserts (piece, row, key, rest) rows one piece at a time.
    fn run(rows: &[(u32, u32, &str, String)]) -> Vec<(u64, String, String)> {
        let d = Dedup::new();
        let mut order = Vec::new();
        for &(piece, row, key, ref rest) in rows {
            let rec = encode(key.as_bytes(), rest.as_bytes());
            let kstart = rec.len() - rest.len() - key.len();
            let r = PieceRow {
                hash: d.hash(key.as_bytes()),
                row,
                start: 0,
                end: rec.len(),
                key_start: kstart,
                key_end: kstart + key.len(),
            };
            d.insert_piece(piece, &[r], &rec, &mut order).unwrap();
        }
        let stored = d.finish();
        let mut out: Vec<_> = stored
            .iter()
            .map(|r| {
                (
                    r.ordinal,
                    String::from_utf8(r.key.to_vec()).unwrap(),
                    String::from_utf8(r.rest.to_vec()).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn last_row_wins_in_any_arrival_order() {
        let rows = vec![
            (0, 0, "a", "first".to_owned()),
            (2, 1, "a", "last".to_owned()),
            (1, 5, "a", "middle, longer than the others".to_owned()),
            (1, 0, "b", "only".to_owned()),
        ];
        let want = vec![
            (1 << 32, "b".to_owned(), "only".to_owned()),
            ((2 << 32) | 1, "a".to_owned(), "last".to_owned()),
        ];
        assert_eq!(run(&rows), want);
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(run(&reversed), want);
    }

    #[test]
    fn replacements_grow_shrink_compact_and_go_large() {
        // One key rewritten many times with lengths up and down, including
        // records over the large threshold, plus many other keys: the final
        // state must hold exactly the last value of each.
        let mut rows = Vec::new();
        let mut want = std::collections::BTreeMap::new();
        for i in 0..20_000u32 {
            let key = format!("k{}", i % 700);
            let len = match i % 5 {
                0 => 1,
                1 => 300,
                2 => LARGE_RECORD + 10,
                _ => (i % 97) as usize,
            };
            let rest = format!("{i}:{}", "x".repeat(len));
            rows.push((i / 100, i % 100, key.clone(), rest.clone()));
            want.insert(key, rest);
        }
        let borrowed: Vec<(u32, u32, &str, String)> = rows
            .iter()
            .map(|(p, r, k, v)| (*p, *r, k.as_str(), v.clone()))
            .collect();
        let got = run(&borrowed);
        assert_eq!(got.len(), 700);
        for (_, k, v) in got {
            assert_eq!(want[&k], v, "{k}");
        }
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&b), (v, b.len()));
        }
    }
}
