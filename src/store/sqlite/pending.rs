//! A domain's search entries not yet folded into its index, as files
//! beside the database (`search-pending/DOMAIN.terms`, and the numbers and
//! keys of new profiles in `DOMAIN.keys`): a job's batches append there,
//! and `settle_search` folds them into `search_index` and `profile_keys`
//! and removes them. In the database they cost twice what
//! they do here: written to the WAL, copied into the file by the
//! checkpoint, then freed (the canonical job: ~400 MB of entries).
//!
//! Appends and folds happen under SQLite's write lock, so one process at a
//! time touches the active file. A batch appends before its transaction
//! commits: a batch that then fails leaves entries for profiles it did not
//! write, which searches check away. A fold first renames the active file
//! (`DOMAIN.NANOS.fold`), so that later appends start a new one, and
//! removes what it folded once its transaction has committed; a fold file
//! left by a crash is folded again (folding is idempotent).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::ENTRY;

/// The pending files of one data directory.
#[derive(Debug)]
pub(super) struct Pending {
    dir: PathBuf,
}

impl Pending {
    /// Those beside the database file `db`.
    pub(super) fn beside(db: &Path) -> Pending {
        let dir = db.parent().unwrap_or(Path::new(".")).join("search-pending");
        Pending { dir }
    }

    /// A file of the directory opened to read and append, made (readable
    /// by its owner alone) if need be.
    fn open_append(&self, name: &str) -> io::Result<File> {
        crate::crypto::create_private_dir_all(&self.dir)?;
        let mut opts = OpenOptions::new();
        opts.create(true).read(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        opts.open(self.dir.join(name))
    }

    /// Appends entries to the domain's active file. A torn entry at its
    /// end (a process killed mid-write) is cut off first, so that what
    /// follows stays aligned.
    pub(super) fn append(&self, domain: i64, entries: &[u8]) -> io::Result<()> {
        let mut f = self.open_append(&format!("{domain}.terms"))?;
        let len = f.metadata()?.len();
        let torn = len % ENTRY as u64;
        if torn != 0 {
            f.set_len(len - torn)?;
        }
        f.write_all(entries)
    }

    /// Every pending file of the domain: the active one and any fold
    /// files.
    pub(super) fn files(&self, domain: i64) -> io::Result<Vec<PathBuf>> {
        let prefix = format!("{domain}.");
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in entries {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix)
                && (name.ends_with(".terms") || name.ends_with(".keys") || name.ends_with(".fold"))
            {
                out.push(self.dir.join(&*name));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Renames the active files to fold files and returns every fold file
    /// of the domain: what a fold takes (`….terms.fold` and
    /// `….keys.fold`).
    pub(super) fn take(&self, domain: i64) -> io::Result<Vec<PathBuf>> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for kind in ["terms", "keys"] {
            let active = self.dir.join(format!("{domain}.{kind}"));
            if active.exists() {
                fs::rename(
                    &active,
                    self.dir.join(format!("{domain}.{nanos}.{kind}.fold")),
                )?;
            }
        }
        Ok(self
            .files(domain)?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "fold"))
            .collect())
    }

    /// Removes files (folded, or of a deleted domain); a file already gone
    /// is fine.
    pub(super) fn remove(&self, files: &[PathBuf]) -> io::Result<()> {
        for f in files {
            match fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Calls `f` with each whole entry of the file at `path`, read a chunk at
/// a time (a torn last entry is left out); a missing file has none.
pub(super) fn each_entry(path: &Path, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; ENTRY << 16];
    let mut filled = 0;
    loop {
        let n = file.read(&mut buf[filled..])?;
        filled += n;
        let whole = filled - filled % ENTRY;
        for e in buf[..whole].chunks_exact(ENTRY) {
            f(e);
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
        if n == 0 {
            return Ok(());
        }
    }
}

/// Appends one chunk (`[length: u64][payload]`) to the domain's active
/// keys file (the numbers and keys of new profiles), after cutting a torn
/// chunk at its end: chunks are a job's batches, so few to walk.
impl Pending {
    pub(super) fn append_keys(&self, domain: i64, payload: &[u8]) -> io::Result<()> {
        let mut f = self.open_append(&format!("{domain}.keys"))?;
        let whole = whole_chunks(&mut f)?;
        if whole != f.metadata()?.len() {
            f.set_len(whole)?;
        }
        let mut chunk = Vec::with_capacity(8 + payload.len());
        chunk.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        chunk.extend_from_slice(payload);
        f.write_all(&chunk)
    }
}

/// How many bytes of `f` are whole chunks.
fn whole_chunks(f: &mut File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let len = f.metadata()?.len();
    let mut at = 0u64;
    loop {
        if len - at < 8 {
            return Ok(at);
        }
        f.seek(SeekFrom::Start(at))?;
        let mut n = [0u8; 8];
        f.read_exact(&mut n)?;
        let end = at.saturating_add(8).saturating_add(u64::from_le_bytes(n));
        if end > len {
            return Ok(at);
        }
        at = end;
    }
}

/// A key record: the profile's number (5 bytes), its key's length (4) and
/// its key.
pub(super) fn put_key(out: &mut Vec<u8>, no: i64, key: &[u8]) {
    out.extend_from_slice(&no.to_le_bytes()[..5]);
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(key);
}

/// The records of `bytes` (a chunk's payload, or a block of the index),
/// in order; a malformed tail ends them.
pub(super) fn key_records(bytes: &[u8]) -> impl Iterator<Item = (i64, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = bytes.get(at..at + 9)?;
        let mut no = [0u8; 8];
        no[..5].copy_from_slice(&head[..5]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&head[5..9]);
        let len = u32::from_le_bytes(len) as usize;
        let key = bytes.get(at + 9..at + 9 + len)?;
        at += 9 + len;
        Some((i64::from_le_bytes(no), key))
    })
}

/// Calls `f` with each whole chunk's payload of the keys file at `path`.
pub(super) fn each_keys_chunk(path: &Path, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let whole = whole_chunks(&mut file)?;
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut at = 0u64;
    let mut payload = Vec::new();
    while at < whole {
        let mut n = [0u8; 8];
        file.read_exact(&mut n)?;
        let n = u64::from_le_bytes(n);
        payload.resize(usize::try_from(n).unwrap_or(0), 0);
        file.read_exact(&mut payload)?;
        f(&payload);
        at += 8 + n;
    }
    Ok(())
}
