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

Each shard's table is open addressing with linear probing over 16-byte
slots: the ordinal, the record's location and 32 bits of its hash. A slot's
position is derived from those 32 bits, so growing a table never touches
the records, and a probe reads a record only when 32 hash bits already
match. Inserting is dominated by cache misses (the slot, then the stored
key of a duplicate), so rows go in groups of 16: first plain loads bring
every row's slot into cache, then every candidate's stored key, each group
of loads overlapping in the memory system; only then does the ordinary,
sequential probe run. The warm-up loads decide nothing, so correctness rests
on the plain probe alone.

Memory is the unique records and little else:

* A slot is 16 bytes and tables are at most 70 % full.
* Records are stored once, `[varint key len][varint rest len][key][rest]`,
  in 64 KiB blocks per shard (records over 16 KiB get an allocation of their
  own). A newer row overwrites the older one in place when it fits; when it
  does not, the old bytes become garbage, and a shard whose garbage exceeds
  half its live bytes is compacted.
*/

use std::sync::Mutex;

const SHARDS: usize = 256;
const BLOCK: usize = 64 * 1024;
/// Records longer than this get their own allocation.
const LARGE_RECORD: usize = BLOCK / 4;
/// `loc` values with this bit set index `Shard::large`.
const LARGE_BIT: u32 = 1 << 31;
/// Rows whose cache misses are overlapped by the warm-up loads.
const GROUP: usize = 16;
/// Shards are not compacted below this much garbage.
const MIN_GARBAGE: u64 = 4 * BLOCK as u64;

/// One row of a parsed piece, encoded in the piece's arena.
#[derive(Clone, Copy, Debug, Default)]
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

/// A free slot: no real ordinal is `u64::MAX` (piece indexes are below
/// `u32::MAX`).
const EMPTY: Entry = Entry {
    ordinal: u64::MAX,
    loc: 0,
    h32: 0,
};

impl Entry {
    #[inline]
    fn is_empty(&self) -> bool {
        self.ordinal == u64::MAX
    }
}

/// Spreads 32 stored hash bits over 64 (Fibonacci hashing); a table of
/// `2^bits` slots uses the top `bits`.
#[inline]
fn spread(h32: u32) -> u64 {
    u64::from(h32).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[inline]
fn shard_of(hash: u64) -> usize {
    (hash >> 40) as usize % SHARDS
}

/// The unique records of one run did not fit the location space of a shard.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CapacityExceeded;

/// The records of one shard.
#[derive(Default)]
struct Arena {
    blocks: Vec<Vec<u8>>,
    large: Vec<Box<[u8]>>,
    free_large: Vec<u32>,
    live: u64,
    garbage: u64,
}

/// Open addressing with linear probing.
struct Table {
    slots: Vec<Entry>,
    /// `64 - log2(slots.len())`.
    shift: u32,
    len: usize,
}

impl Default for Table {
    fn default() -> Table {
        Table {
            slots: vec![EMPTY; 16],
            shift: 64 - 4,
            len: 0,
        }
    }
}

impl Table {
    #[inline]
    fn home(&self, h32: u32) -> usize {
        (spread(h32) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Doubles the slots; positions come from the stored hash bits.
    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.shift -= 1;
        let mask = self.mask();
        for e in old.into_iter().filter(|e| !e.is_empty()) {
            let mut i = self.home(e.h32);
            while !self.slots[i].is_empty() {
                i = (i + 1) & mask;
            }
            self.slots[i] = e;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.slots.iter().filter(|e| !e.is_empty())
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> + '_ {
        self.slots.iter_mut().filter(|e| !e.is_empty())
    }
}

#[derive(Default)]
struct Shard {
    table: Table,
    arena: Arena,
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

impl Arena {
    #[inline]
    fn bytes_at(&self, loc: u32) -> &[u8] {
        if loc & LARGE_BIT != 0 {
            &self.large[(loc & !LARGE_BIT) as usize]
        } else {
            let loc = loc as usize;
            &self.blocks[loc / BLOCK][loc % BLOCK..]
        }
    }

    #[inline]
    fn key_at(&self, loc: u32) -> &[u8] {
        split_record(self.bytes_at(loc)).0
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

    /// Puts `rec` in place of the record at `loc`; returns where it went.
    fn replace(&mut self, loc: u32, rec: &[u8]) -> Result<u32, CapacityExceeded> {
        let old_len = record_len(self.bytes_at(loc));
        if loc & LARGE_BIT == 0 && rec.len() <= old_len {
            // Overwrite in place; the tail of the old record is garbage.
            let l = loc as usize;
            self.blocks[l / BLOCK][l % BLOCK..l % BLOCK + rec.len()].copy_from_slice(rec);
            self.live = self.live + rec.len() as u64 - old_len as u64;
            self.garbage += (old_len - rec.len()) as u64;
            return Ok(loc);
        }
        let new_loc = self.append(rec)?;
        self.live -= old_len as u64;
        if loc & LARGE_BIT != 0 {
            let i = loc & !LARGE_BIT;
            self.large[i as usize] = Box::default();
            self.free_large.push(i);
        } else {
            self.garbage += old_len as u64;
        }
        Ok(new_loc)
    }
}

impl Shard {
    #[inline]
    fn bytes_at(&self, loc: u32) -> &[u8] {
        self.arena.bytes_at(loc)
    }

    /// Loads the home slot of each row, so that it is in cache when needed.
    /// The loads do not depend on each other and can all be in flight at
    /// once. Decides nothing.
    #[inline]
    fn warm_slots(&self, rows: &[PieceRow]) -> u64 {
        let t = &self.table;
        rows.iter()
            .fold(0, |acc, r| acc ^ t.slots[t.home(r.hash as u32)].ordinal)
    }

    /// Loads the stored record of each row whose home slot holds the same
    /// hash bits (its duplicate, nearly always). Decides nothing.
    #[inline]
    fn warm_keys(&self, rows: &[PieceRow]) -> u64 {
        let t = &self.table;
        rows.iter().fold(0, |acc, r| {
            let e = t.slots[t.home(r.hash as u32)];
            if e.h32 == r.hash as u32 && !e.is_empty() {
                acc ^ u64::from(self.arena.bytes_at(e.loc)[0])
            } else {
                acc
            }
        })
    }

    /// Inserts one row; returns whether its key was new.
    fn insert(
        &mut self,
        ordinal: u64,
        h32: u32,
        key: &[u8],
        rec: &[u8],
    ) -> Result<bool, CapacityExceeded> {
        if (self.table.len + 1) * 10 > self.table.slots.len() * 7 {
            self.table.grow();
        }
        let mask = self.table.mask();
        let mut i = self.table.home(h32);
        loop {
            let e = self.table.slots[i];
            if e.is_empty() {
                let loc = self.arena.append(rec)?;
                self.table.slots[i] = Entry { ordinal, loc, h32 };
                self.table.len += 1;
                return Ok(true);
            }
            if e.h32 == h32 && self.arena.key_at(e.loc) == key {
                if e.ordinal >= ordinal {
                    return Ok(false);
                }
                let loc = self.arena.replace(e.loc, rec)?;
                self.table.slots[i] = Entry { ordinal, loc, h32 };
                self.maybe_compact()?;
                return Ok(false);
            }
            i = (i + 1) & mask;
        }
    }

    fn maybe_compact(&mut self) -> Result<(), CapacityExceeded> {
        let a = &mut self.arena;
        if a.garbage < MIN_GARBAGE || a.garbage < a.live / 2 {
            return Ok(());
        }
        let old = std::mem::take(&mut a.blocks);
        a.live = a.large.iter().map(|b| b.len() as u64).sum();
        a.garbage = 0;
        let mut moved = Vec::with_capacity(self.table.len);
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
            remap.push(a.append(&b[..record_len(b)])?);
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
    /// `sorted` is scratch space, reused between calls.
    pub(crate) fn insert_piece(
        &self,
        piece: u32,
        rows: &[PieceRow],
        arena: &[u8],
        sorted: &mut Vec<PieceRow>,
    ) -> Result<u64, CapacityExceeded> {
        // Counting sort by shard: each shard's rows become one contiguous,
        // in-order run (rows of one key keep their input order).
        let mut starts = [0usize; SHARDS + 1];
        for r in rows {
            starts[shard_of(r.hash) + 1] += 1;
        }
        for i in 0..SHARDS {
            starts[i + 1] += starts[i];
        }
        sorted.clear();
        sorted.resize(rows.len(), PieceRow::default());
        let mut fill = starts;
        for r in rows {
            let s = shard_of(r.hash);
            sorted[fill[s]] = *r;
            fill[s] += 1;
        }
        let mut new = 0u64;
        for s in 0..SHARDS {
            let run = &sorted[starts[s]..starts[s + 1]];
            if run.is_empty() {
                continue;
            }
            let mut shard = self.shards[s].lock().unwrap_or_else(|p| p.into_inner());
            // A three-stage pipeline over groups of rows: warm the slots of
            // group g + 2 and the keys of group g + 1 while inserting group g,
            // so that each load has had time to arrive.
            let groups = run.len().div_ceil(GROUP);
            let group = |g: usize| &run[g * GROUP..((g + 1) * GROUP).min(run.len())];
            let mut touched = 0u64;
            for g in 0..groups + 2 {
                if g < groups {
                    touched ^= shard.warm_slots(group(g));
                }
                if (1..=groups).contains(&g) {
                    touched ^= shard.warm_keys(group(g - 1));
                }
                if g < 2 {
                    continue;
                }
                for r in group(g - 2) {
                    let ordinal = (u64::from(piece) << 32) | u64::from(r.row);
                    new += u64::from(shard.insert(
                        ordinal,
                        r.hash as u32,
                        &arena[r.key_start..r.key_end],
                        &arena[r.start..r.end],
                    )?);
                }
            }
            std::hint::black_box(touched);
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
        self.shards.iter().map(|s| s.table.len as u64).sum()
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

    /// Where every record is, `shard << 32 | slot`, eight bytes each.
    pub(crate) fn slots(&self) -> impl Iterator<Item = u64> + '_ {
        self.slot_parts().into_iter().flat_map(|(_, places)| places)
    }

    /// [`Stored::slots`] a shard at a time, to be walked on several
    /// threads: each shard's number of records and its places.
    pub(crate) fn slot_parts(&self) -> Vec<(u64, impl Iterator<Item = u64> + Clone + Send + '_)> {
        self.shards
            .iter()
            .enumerate()
            .map(|(s, shard)| {
                let places = (0..shard.table.slots.len())
                    .filter(|&i| !shard.table.slots[i].is_empty())
                    .map(move |i| (s as u64) << 32 | i as u64);
                (shard.table.len as u64, places)
            })
            .collect()
    }

    /// The record at a place from [`Stored::slots`].
    pub(crate) fn at_slot(&self, slot: u64) -> StoredRecord<'_> {
        let shard = &self.shards[(slot >> 32) as usize];
        let e = shard.table.slots[slot as u32 as usize];
        let (key, rest) = split_record(shard.bytes_at(e.loc));
        StoredRecord {
            ordinal: e.ordinal,
            key,
            rest,
        }
    }

    /// The records at these places, in their order, appended to `out`.
    ///
    /// Each record is two dependent cache misses (its slot, then its
    /// bytes), so reading records one by one waits on memory twice a
    /// record. Here all the slots are loaded first, then the first byte of
    /// every record, and only then are the records split: within each pass
    /// the loads do not depend on one another and overlap in the memory
    /// system (as [`Dedup::insert_piece`]'s warm-up does). Pass up to a
    /// few dozen places at a time.
    pub(crate) fn at_slots<'s>(&'s self, slots: &[u64], out: &mut Vec<StoredRecord<'s>>) {
        let mut entries = [EMPTY; GROUP];
        for group in slots.chunks(GROUP) {
            for (e, &slot) in entries.iter_mut().zip(group) {
                let shard = &self.shards[(slot >> 32) as usize];
                *e = shard.table.slots[slot as u32 as usize];
            }
            let mut first = 0u8;
            for (e, &slot) in entries.iter().zip(group) {
                let shard = &self.shards[(slot >> 32) as usize];
                first ^= shard.arena.bytes_at(e.loc).first().copied().unwrap_or(0);
            }
            std::hint::black_box(first);
            for (e, &slot) in entries.iter().zip(group) {
                let shard = &self.shards[(slot >> 32) as usize];
                let (key, rest) = split_record(shard.arena.bytes_at(e.loc));
                out.push(StoredRecord {
                    ordinal: e.ordinal,
                    key,
                    rest,
                });
            }
        }
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
