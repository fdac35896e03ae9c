//! A domain's search entries not yet folded into its index, as files
//! beside the database (`search-pending/DOMAIN.terms`): a job's batches
//! append their entries there, and `settle_search` folds them into
//! `search_index` and removes them. In the database they cost twice what
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

    fn active(&self, domain: i64) -> PathBuf {
        self.dir.join(format!("{domain}.terms"))
    }

    /// Appends entries to the domain's active file. A torn entry at its
    /// end (a process killed mid-write) is cut off first, so that what
    /// follows stays aligned.
    pub(super) fn append(&self, domain: i64, entries: &[u8]) -> io::Result<()> {
        crate::crypto::create_private_dir_all(&self.dir)?;
        let path = self.active(domain);
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&path)?;
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
            if name.starts_with(&prefix) && (name.ends_with(".terms") || name.ends_with(".fold")) {
                out.push(self.dir.join(&*name));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Renames the active file to a fold file and returns every fold file
    /// of the domain: what a fold takes.
    pub(super) fn take(&self, domain: i64) -> io::Result<Vec<PathBuf>> {
        let active = self.active(domain);
        if active.exists() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            fs::rename(&active, self.dir.join(format!("{domain}.{nanos}.fold")))?;
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
