//! Objects in folders on this machine: a bucket is a folder, a key a path
//! below it; no symbolic link is ever followed.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::crypto::{create_private, create_private_dir, create_private_dir_all};

use super::direct::{DIRECT_READ_MIN, DirectReader, DirectWriter};

use super::{
    BucketInfo, ObjectAttributes, ObjectError, ObjectErrorKind, ObjectInfo, ObjectWriter, Objects,
    check_bucket_name, checked, checked_bucket, clamp,
};

/// Files being written are named with this prefix (and hidden from
/// listings) until they are complete.
const PART_PREFIX: &str = ".sluice-part-";

/// What [`LocalFolder::walk`] finds: the files, by key, and what could
/// not be listed, each with its relative path and why.
pub type Walked = (Vec<ObjectInfo>, Vec<(String, String)>);

/// Buckets as folders of one folder: `ROOT/<bucket>/<key>`.
///
/// Writes go to a hidden file beside their place and are renamed into it
/// when finished. Object attributes have nowhere to go and are dropped.
#[derive(Clone, Debug)]
pub struct LocalObjects {
    root: PathBuf,
}

impl LocalObjects {
    /// Buckets in `root` (made when the first bucket is).
    pub fn new(root: impl Into<PathBuf>) -> LocalObjects {
        LocalObjects { root: root.into() }
    }

    /// The folder of buckets.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of a bucket that exists.
    fn folder(&self, bucket: &str) -> Result<LocalFolder, ObjectError> {
        if check_bucket_name(bucket).is_err() {
            return Err(ObjectError::no_bucket(bucket));
        }
        let dir = self.root.join(bucket);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(LocalFolder::new(dir)),
            Ok(_) | Err(_) => Err(ObjectError::no_bucket(bucket)),
        }
    }

    /// Removes what writers that never finished left in every bucket
    /// (after a crash); returns how many files went. Only for a root no
    /// other process is writing into.
    ///
    /// # Errors
    ///
    /// When a folder cannot be read or a file removed.
    pub fn remove_partial(&self) -> Result<u64, ObjectError> {
        let mut n = 0;
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&self.root, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&self.root, e))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                n += LocalFolder::new(entry.path()).remove_partial()?;
            }
        }
        Ok(n)
    }
}

impl Objects for LocalObjects {
    fn describe(&self) -> String {
        format!("folders in {}", self.root.display())
    }

    fn create_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        checked_bucket(bucket)?;
        create_private_dir_all(&self.root).map_err(|e| io_err(&self.root, e))?;
        let dir = self.root.join(bucket);
        match create_private_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(ObjectError::bucket_exists(bucket))
            }
            Err(e) => Err(io_err(&dir, e)),
        }
    }

    fn list_buckets(&self) -> Result<Vec<BucketInfo>, ObjectError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.root, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&self.root, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // Folders only, never a link to one, and only bucket names.
            let Ok(m) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if !m.is_dir() || check_bucket_name(&name).is_err() {
                continue;
            }
            let created = m.created().or_else(|_| m.modified()).ok();
            out.push(BucketInfo {
                name,
                created_ms: created.and_then(unix_ms),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        let folder = self.folder(bucket)?;
        let (files, problems) = folder.walk()?;
        // What a listing would not show is still something in the bucket.
        if !files.is_empty() || !problems.is_empty() {
            return Err(ObjectError::not_empty(bucket));
        }
        // Empty folders and unfinished writes only; remove_dir_all does
        // not follow links.
        fs::remove_dir_all(folder.dir()).map_err(|e| io_err(folder.dir(), e))
    }

    fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectError> {
        Ok(self.folder(bucket).is_ok())
    }

    fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        let (mut files, _) = self.folder(bucket)?.walk()?;
        files.retain(|o| o.key.starts_with(prefix));
        Ok(files)
    }

    fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError> {
        checked(bucket, key)?;
        self.folder(bucket)?
            .head(key)?
            .ok_or_else(|| ObjectError::no_key(bucket, key))
    }

    fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
    ) -> Result<Box<dyn Read + Send>, ObjectError> {
        checked(bucket, key)?;
        match self.folder(bucket)?.read(key, range) {
            Err(e) if e.kind == ObjectErrorKind::NoSuchKey => Err(ObjectError::no_key(bucket, key)),
            other => other,
        }
    }

    fn write(
        &self,
        bucket: &str,
        key: &str,
        _attributes: &ObjectAttributes,
    ) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        checked(bucket, key)?;
        Ok(Box::new(self.folder(bucket)?.write(key)?))
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        checked(bucket, key)?;
        self.folder(bucket)?.delete(key)
    }

    fn adopt(
        &self,
        bucket: &str,
        key: &str,
        from: &Path,
        _attributes: &ObjectAttributes,
    ) -> Result<Option<ObjectInfo>, ObjectError> {
        checked(bucket, key)?;
        self.folder(bucket)?.adopt(key, from)
    }

    fn locate(&self, bucket: &str, key: &str) -> String {
        let path = LocalFolder::new(self.root.join(bucket)).path_of(key);
        let abs = std::path::absolute(&path).unwrap_or(path);
        format!("file://{}", abs.display())
    }
}

/// One folder as a bucket: files are objects, their paths below it (with
/// `/`) their keys. Symbolic links are never followed, on the way to a file
/// or as the file.
#[derive(Clone, Debug)]
pub struct LocalFolder {
    dir: PathBuf,
}

/// Whether and how a path below a folder can be used.
enum Place {
    /// A regular file is there.
    File(fs::Metadata),
    /// Nothing is there (its folders may be missing).
    Free,
    /// A folder is there: no object, and no room for one.
    Folder(PathBuf),
}

impl LocalFolder {
    /// The folder `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> LocalFolder {
        LocalFolder { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the file of `key` is (or would be).
    pub fn path_of(&self, key: &str) -> PathBuf {
        let mut at = self.dir.clone();
        for seg in key.split('/') {
            at.push(&*file_name(seg));
        }
        at
    }

    /// Every file below the folder as an object, by key, and what could
    /// not be listed (a symbolic link, a name that is not UTF-8, something
    /// that is not a regular file, a folder that cannot be read), with its
    /// relative path and why.
    ///
    /// # Errors
    ///
    /// When the folder itself cannot be read.
    pub fn walk(&self) -> Result<Walked, ObjectError> {
        let (mut files, mut problems) = (Vec::new(), Vec::new());
        walk(&self.dir, None, &mut files, &mut problems).map_err(|e| io_err(&self.dir, e))?;
        files.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((files, problems))
    }

    /// The folder `key` is in, following its folders from the top without
    /// following links; `None` when one of them is missing, unless `make`
    /// (then missing ones are made).
    fn folder_of(&self, key: &str, make: bool) -> Result<Option<PathBuf>, ObjectError> {
        let segs: Vec<&str> = key.split('/').collect();
        let (_, dirs) = segs.split_last().ok_or_else(|| bad_key(key))?;
        let mut at = self.dir.clone();
        for d in dirs {
            at.push(&*file_name(d));
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => return Err(refused_link(&at)),
                Ok(_) => return Err(refused_file(&at)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !make => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match create_private_dir(&at) {
                    Ok(()) => {}
                    // Made meanwhile by another writer: look again.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if !fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
                            return Err(refused_file(&at));
                        }
                    }
                    Err(e) => return Err(io_err(&at, e)),
                },
                Err(e) => return Err(io_err(&at, e)),
            }
        }
        Ok(Some(at))
    }

    /// Resolves `key` below the folder without following links.
    fn place(&self, key: &str) -> Result<Place, ObjectError> {
        let Some(mut at) = self.folder_of(key, false)? else {
            return Ok(Place::Free);
        };
        at.push(&*file_name(last_segment(key)));
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_file() && m.nlink() > 1 => Err(refused_hard_link(&at)),
            Ok(m) if m.is_file() => Ok(Place::File(m)),
            Ok(m) if m.file_type().is_symlink() => Err(refused_link(&at)),
            Ok(m) if m.is_dir() => Ok(Place::Folder(at)),
            Ok(_) => Err(ObjectError::new(
                ObjectErrorKind::Refused,
                format!("{} exists and is not a file", at.display()),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Place::Free),
            Err(e) => Err(io_err(&at, e)),
        }
    }

    /// The object at `key`, if there is one.
    ///
    /// # Errors
    ///
    /// A symbolic link or a file on the way, or an I/O error.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ObjectError> {
        Ok(match self.place(key)? {
            Place::File(m) => Some(info(key, &m)),
            Place::Free | Place::Folder(_) => None,
        })
    }

    /// A reader of bytes `range` of the file at `key`.
    ///
    /// # Errors
    ///
    /// [`ObjectErrorKind::NoSuchKey`], a symbolic link on the way, or an
    /// I/O error.
    pub fn read(&self, key: &str, range: Range<u64>) -> Result<Box<dyn Read + Send>, ObjectError> {
        let Place::File(seen) = self.place(key)? else {
            return Err(ObjectError::new(
                ObjectErrorKind::NoSuchKey,
                format!("{} does not exist", self.path_of(key).display()),
            ));
        };
        let path = self.path_of(key);
        let mut file = File::open(&path).map_err(|e| io_err(&path, e))?;
        let opened = same_file(&path, &file, &seen)?;
        let r = clamp(&range, opened.len());
        // Large reads past the page cache (see `direct`), from the same
        // file: opened again and checked again.
        if r.end - r.start >= DIRECT_READ_MIN
            && let Some(direct) = DirectReader::open(&path).map_err(|e| io_err(&path, e))?
        {
            same_file(&path, &direct, &seen)?;
            return Ok(Box::new(DirectReader::new(direct, r.start, r.end)));
        }
        file.seek(SeekFrom::Start(r.start))
            .map_err(|e| io_err(&path, e))?;
        Ok(Box::new(file.take(r.end - r.start)))
    }

    /// The folder `key`'s file goes in (made when missing) and the file's
    /// path; refused now when something other than a file is there.
    fn destination(&self, key: &str) -> Result<(PathBuf, PathBuf), ObjectError> {
        let at = self.folder_of(key, true)?.ok_or_else(|| bad_key(key))?;
        let dest = at.join(&*file_name(last_segment(key)));
        if let Place::Folder(at) = self.place(key)? {
            return Err(ObjectError::new(
                ObjectErrorKind::Refused,
                format!("{} exists and is not a file", at.display()),
            ));
        }
        Ok((at, dest))
    }

    /// A writer of the file at `key`: to a hidden file beside it, renamed
    /// into place by [`ObjectWriter::finish`]. Folders on the way are made.
    ///
    /// # Errors
    ///
    /// A file or symbolic link where a folder must be, something other
    /// than a file at `key`, or an I/O error.
    pub fn write(&self, key: &str) -> Result<LocalWriter, ObjectError> {
        let (at, dest) = self.destination(key)?;
        let part = at.join(format!(
            "{PART_PREFIX}{}-{}",
            std::process::id(),
            crate::crypto::to_hex(&crate::crypto::random::<8>())
        ));
        // Only its owner reads it: objects hold people's data.
        let file = create_private(&part).map_err(|e| io_err(&part, e))?;
        Ok(LocalWriter {
            file: Some(DirectWriter::new(&part, file)),
            part,
            dest,
            key: key.to_owned(),
            unsynced: 0,
            syncing: None,
        })
    }

    /// A writer of at most `limit` bytes into the file at `key` from
    /// `offset` on (the file is made when missing; what is around the
    /// span stays), for files assembled in place such as the parts of a
    /// multipart upload.
    ///
    /// # Errors
    ///
    /// A symbolic link or folder on the way or at `key`, or an I/O error.
    pub fn write_at(&self, key: &str, offset: u64, limit: u64) -> Result<SpanWriter, ObjectError> {
        let at = self.folder_of(key, true)?.ok_or_else(|| bad_key(key))?;
        let path = at.join(&*file_name(last_segment(key)));
        let file = match create_private(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let Place::File(seen) = self.place(key)? else {
                    return Err(refused_file(&path));
                };
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_err(&path, e))?;
                same_file(&path, &f, &seen)?;
                f
            }
            Err(e) => return Err(io_err(&path, e)),
        };
        Ok(SpanWriter {
            inner: Some(DirectWriter::at(&path, file, offset, limit)),
            path,
            key: key.to_owned(),
        })
    }

    /// Moves the file `from` (on this machine, written and synced) to
    /// `key`, as a finished writer would put its file there; `None` when
    /// `from` is on another file system (nothing moved).
    ///
    /// # Errors
    ///
    /// What [`LocalFolder::write`] refuses, or an I/O error.
    pub fn adopt(&self, key: &str, from: &Path) -> Result<Option<ObjectInfo>, ObjectError> {
        let (_, dest) = self.destination(key)?;
        match move_into(from, &dest) {
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => return Ok(None),
            r => r.map_err(|e| io_err(&dest, e))?,
        }
        let meta = fs::symlink_metadata(&dest).map_err(|e| io_err(&dest, e))?;
        Ok(Some(info(key, &meta)))
    }

    /// Deletes the file at `key`, if there is one.
    ///
    /// # Errors
    ///
    /// A symbolic link on the way, or an I/O error.
    pub fn delete(&self, key: &str) -> Result<(), ObjectError> {
        if let Place::File(_) = self.place(key)? {
            let path = self.path_of(key);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        Ok(())
    }

    /// Removes files that writers left unfinished below the folder;
    /// returns how many.
    ///
    /// # Errors
    ///
    /// When a folder cannot be read or a file removed.
    pub fn remove_partial(&self) -> Result<u64, ObjectError> {
        let mut n = 0;
        let mut dirs = vec![self.dir.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(&dir, e))?;
                let t = entry.file_type().map_err(|e| io_err(&entry.path(), e))?;
                if t.is_dir() {
                    dirs.push(entry.path());
                } else if t.is_file()
                    && entry.file_name().to_string_lossy().starts_with(PART_PREFIX)
                {
                    fs::remove_file(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// Bytes written between two syncs started in the background.
const SYNC_EVERY: u64 = 64 << 20;

/// A file being written below a [`LocalFolder`]: large ones past the
/// page cache (see `direct`).
///
/// Written through the page cache, every 64 MiB it starts
/// syncing what is written so far on a thread of its own, so the disk
/// takes the object while the rest arrives and [`ObjectWriter::finish`]
/// waits only for the last part (a 1 GiB upload waited about 0.4 s for
/// its sync on the development VM).
pub struct LocalWriter {
    file: Option<DirectWriter>,
    part: PathBuf,
    dest: PathBuf,
    key: String,
    /// Bytes written since the last background sync started.
    unsynced: u64,
    /// The background sync under way, if any.
    syncing: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl LocalWriter {
    fn wrote(&mut self, n: usize) -> io::Result<()> {
        self.unsynced += n as u64;
        if self.unsynced < SYNC_EVERY || self.syncing.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        self.sync_done()?;
        if let Some(f) = self.file.as_ref().filter(|f| !f.is_direct()) {
            // The same open file: an error the sync meets is seen here
            // (at `finish`, through `sync_done`), not lost to a copy.
            let f = f.file().try_clone()?;
            self.syncing = Some(std::thread::spawn(move || f.sync_data()));
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Waits for the background sync, if one is under way, and gives its
    /// error.
    fn sync_done(&mut self) -> io::Result<()> {
        match self.syncing.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the background sync panicked"))),
            None => Ok(()),
        }
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.file {
            Some(f) => f.write(buf)?,
            None => return Err(io::Error::other("the object was finished")),
        };
        self.wrote(n)?;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(buf)?,
            None => return Err(io::Error::other("the object was finished")),
        }
        self.wrote(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl ObjectWriter for LocalWriter {
    fn finish(mut self: Box<Self>) -> Result<ObjectInfo, ObjectError> {
        let part = self.part.clone();
        let file = self
            .file
            .take()
            .ok_or_else(|| ObjectError::backend(part.display(), "finished twice"))?;
        let (file, _) = file.finish().map_err(|e| io_err(&part, e))?;
        self.sync_done().map_err(|e| io_err(&part, e))?;
        file.sync_all().map_err(|e| io_err(&part, e))?;
        let meta = file.metadata().map_err(|e| io_err(&part, e))?;
        drop(file);
        move_into(&part, &self.dest).map_err(|e| io_err(&self.dest, e))?;
        Ok(info(&self.key, &meta))
    }
}

/// The metadata of `file`, opened at `path`, when it is the file `seen`
/// there a moment before: a link swapped in between is refused.
fn same_file(path: &Path, file: &File, seen: &fs::Metadata) -> Result<fs::Metadata, ObjectError> {
    let opened = file.metadata().map_err(|e| io_err(path, e))?;
    if (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        return Err(refused_link(path));
    }
    Ok(opened)
}

/// Renames `from` to `dest`, unless what is at `dest` now is something
/// other than a file (never a folder or a link is replaced).
fn move_into(from: &Path, dest: &Path) -> io::Result<()> {
    if let Ok(m) = fs::symlink_metadata(dest)
        && !m.is_file()
    {
        return Err(io::Error::other(format!(
            "{} exists and is not a file",
            dest.display()
        )));
    }
    fs::rename(from, dest)
}

/// Bytes written into a span of a file (see [`LocalFolder::write_at`]).
pub struct SpanWriter {
    inner: Option<DirectWriter>,
    path: PathBuf,
    key: String,
}

impl Write for SpanWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("the span was finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for SpanWriter {
    /// Writes and syncs the span; the object it describes is the span
    /// (its key and the bytes written).
    fn finish(mut self: Box<Self>) -> Result<ObjectInfo, ObjectError> {
        let w = self
            .inner
            .take()
            .ok_or_else(|| ObjectError::backend(self.path.display(), "finished twice"))?;
        let (file, size) = w.finish().map_err(|e| io_err(&self.path, e))?;
        file.sync_data().map_err(|e| io_err(&self.path, e))?;
        let meta = file.metadata().map_err(|e| io_err(&self.path, e))?;
        Ok(ObjectInfo {
            size,
            ..info(&self.key, &meta)
        })
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() || self.part.exists() {
            let _ = fs::remove_file(&self.part);
        }
    }
}

fn unix_ms(t: std::time::SystemTime) -> Option<i64> {
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

fn info(key: &str, m: &fs::Metadata) -> ObjectInfo {
    let modified_ms = m.modified().ok().and_then(unix_ms);
    ObjectInfo {
        key: key.to_owned(),
        size: m.len(),
        modified_ms,
        // Size, time and inode: what changes when the file is replaced.
        etag: Some(format!(
            "{:x}-{:x}-{:x}",
            m.len(),
            m.mtime_nsec() as u64 ^ (m.mtime() as u64).rotate_left(32),
            m.ino()
        )),
    }
}

fn io_err(path: &Path, e: io::Error) -> ObjectError {
    // A name longer than a file's may be (255 bytes a segment here, where
    // S3 takes 1024 a key) is the caller's to change, not a failure.
    if e.kind() == io::ErrorKind::InvalidFilename {
        return ObjectError::new(
            ObjectErrorKind::BadName,
            format!(
                "{}: a part of the key is longer than a local bucket can hold ({e})",
                path.display()
            ),
        );
    }
    ObjectError::backend(path.display(), e)
}

fn bad_key(key: &str) -> ObjectError {
    ObjectError::new(ObjectErrorKind::BadName, format!("{key:?} is not a key"))
}

fn refused_link(at: &Path) -> ObjectError {
    ObjectError::new(
        ObjectErrorKind::Refused,
        format!(
            "{} is a symbolic link; links are not followed",
            at.display()
        ),
    )
}

/// Why a file with other names is not an object: one of them may be
/// outside the bucket (a hard link to the server's credentials).
const HARD_LINK: &str = "a file with other names (a hard link); it is not read";

fn refused_hard_link(at: &Path) -> ObjectError {
    ObjectError::new(
        ObjectErrorKind::Refused,
        format!("{}: {HARD_LINK}", at.display()),
    )
}

fn refused_file(at: &Path) -> ObjectError {
    ObjectError::new(
        ObjectErrorKind::Refused,
        format!("{} is a file, not a folder", at.display()),
    )
}

/// Collects the files below `dir` as objects keyed by their relative paths,
/// and what could not be walked (with why).
fn walk(
    dir: &Path,
    relative: Option<&str>,
    files: &mut Vec<ObjectInfo>,
    problems: &mut Vec<(String, String)>,
) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            let shown = entry.file_name().to_string_lossy().into_owned();
            problems.push((
                join(relative, &shown),
                "its name is not UTF-8, so it has no key".into(),
            ));
            continue;
        };
        if name.starts_with(PART_PREFIX) {
            continue;
        }
        let Some(segment) = key_segment(&name) else {
            problems.push((
                join(relative, &name),
                format!("a name starting with {ESCAPE} that is not an escaped key segment"),
            ));
            continue;
        };
        let rel = join(relative, &segment);
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                if let Err(e) = walk(&entry.path(), Some(&rel), files, problems) {
                    problems.push((rel, format!("the folder cannot be read: {e}")));
                }
            }
            Ok(t) if t.is_file() => match entry.metadata() {
                Ok(m) if m.nlink() > 1 => {
                    problems.push((rel, HARD_LINK.into()));
                }
                Ok(m) => files.push(info(&rel, &m)),
                Err(e) => problems.push((rel, format!("cannot be read: {e}"))),
            },
            Ok(t) if t.is_symlink() => {
                problems.push((rel, "a symbolic link; links are not followed".into()));
            }
            Ok(_) => problems.push((rel, "not a regular file".into())),
            Err(e) => problems.push((rel, format!("cannot be read: {e}"))),
        }
    }
    Ok(())
}

/// A key below the folder's top (`None`) or below the key `relative`.
fn join(relative: Option<&str>, segment: &str) -> String {
    match relative {
        None => segment.to_owned(),
        Some(r) => format!("{r}/{segment}"),
    }
}

/// Starts the file name of a key segment that is kept escaped.
const ESCAPE: char = '%';

fn last_segment(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The file name of a key segment: the segment itself, unless a folder
/// cannot hold it as a name (empty, as in `s3://inbox//x.csv` or a key
/// ending in `/`; `.`; `..`) or it would be read as something else (a
/// name that starts with [`ESCAPE`], or an unfinished write's): then
/// [`ESCAPE`] and its bytes in hex (`""` is `%`, `..` is `%2e2e`).
fn file_name(segment: &str) -> Cow<'_, str> {
    if segment.is_empty()
        || segment == "."
        || segment == ".."
        || segment.starts_with(ESCAPE)
        || segment.starts_with(PART_PREFIX)
    {
        Cow::Owned(format!(
            "{ESCAPE}{}",
            crate::crypto::to_hex(segment.as_bytes())
        ))
    } else {
        Cow::Borrowed(segment)
    }
}

/// The key segment a file name holds; `None` for a name that starts
/// with [`ESCAPE`] but is not one [`file_name`] makes.
fn key_segment(name: &str) -> Option<Cow<'_, str>> {
    let Some(hex) = name.strip_prefix(ESCAPE) else {
        return Some(Cow::Borrowed(name));
    };
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let segment = String::from_utf8(bytes).ok()?;
    // Only what `file_name` escapes: one name per segment.
    (file_name(&segment) == name).then_some(Cow::Owned(segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::all(&LocalObjects::new(dir.path().join("buckets")));
    }

    #[test]
    fn what_is_written_is_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let objects = LocalObjects::new(dir.path().join("buckets"));
        objects.create_bucket("bkt").unwrap();
        super::super::put(
            &objects,
            "bkt",
            "in/a.csv",
            b"a",
            &ObjectAttributes::default(),
        )
        .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = dir.path().join("buckets");
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("bkt")), 0o700);
        assert_eq!(mode(&root.join("bkt/in")), 0o700);
        assert_eq!(mode(&root.join("bkt/in/a.csv")), 0o600);
    }

    #[test]
    fn links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let objects = LocalObjects::new(dir.path());
        objects.create_bucket("bkt").unwrap();
        let outside = dir.path().join("secret");
        fs::write(&outside, b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("bkt/link")).unwrap();
        fs::create_dir(dir.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("bkt/sub"))
            .unwrap();
        assert!(objects.list("bkt", "").unwrap().is_empty());
        let e = objects.read("bkt", "link", 0..10).err().unwrap();
        assert_eq!(e.kind, ObjectErrorKind::Refused, "{e}");
        let e = objects
            .write("bkt", "sub/x", &ObjectAttributes::default())
            .err()
            .unwrap();
        assert_eq!(e.kind, ObjectErrorKind::Refused, "{e}");
        assert!(!dir.path().join("elsewhere/x").exists());
        let (_, problems) = LocalFolder::new(dir.path().join("bkt")).walk().unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        // A hard link is the outside file under a second name: not read,
        // not listed, not written through.
        fs::hard_link(&outside, dir.path().join("bkt/hard")).unwrap();
        assert!(objects.list("bkt", "").unwrap().is_empty());
        let e = objects.read("bkt", "hard", 0..10).err().unwrap();
        assert_eq!(e.kind, ObjectErrorKind::Refused, "{e}");
        assert!(objects.head("bkt", "hard").is_err());
        assert!(
            objects
                .write("bkt", "hard", &ObjectAttributes::default())
                .is_err()
        );
        assert_eq!(fs::read(&outside).unwrap(), b"secret");
    }

    #[test]
    fn keys_a_folder_cannot_name_are_kept_escaped_inside_the_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let objects = LocalObjects::new(dir.path().join("buckets"));
        objects.create_bucket("bkt").unwrap();
        let keys = ["/x.csv", "a//b", "dir/", "../../x", "%41", ".sluice-part-1"];
        for k in keys {
            super::super::put(
                &objects,
                "bkt",
                k,
                k.as_bytes(),
                &ObjectAttributes::default(),
            )
            .unwrap();
        }
        let bkt = dir.path().join("buckets/bkt");
        for (key, file) in [
            ("/x.csv", "%/x.csv"),
            ("a//b", "a/%/b"),
            ("dir/", "dir/%"),
            ("../../x", "%2e2e/%2e2e/x"),
            ("%41", "%253431"),
            (".sluice-part-1", "%2e736c756963652d706172742d31"),
        ] {
            assert_eq!(fs::read(bkt.join(file)).unwrap(), key.as_bytes(), "{key}");
        }
        // Nothing beside the bucket; a crash clean-up keeps the key that
        // looks like an unfinished write.
        assert_eq!(fs::read_dir(dir.path().join("buckets")).unwrap().count(), 1);
        assert!(!dir.path().join("x").exists());
        assert_eq!(objects.remove_partial().unwrap(), 0);
        let mut listed: Vec<String> = objects
            .list("bkt", "")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        listed.sort();
        let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        want.sort();
        assert_eq!(listed, want);
        // A name no key makes is reported, not listed as one.
        fs::write(bkt.join("%zz"), b"by hand").unwrap();
        let (files, problems) = LocalFolder::new(&bkt).walk().unwrap();
        assert_eq!(files.len(), keys.len());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "%zz");
    }

    #[test]
    fn a_key_too_long_for_a_file_name_is_a_bad_name() {
        let dir = tempfile::tempdir().unwrap();
        let objects = LocalObjects::new(dir.path());
        objects.create_bucket("bkt").unwrap();
        let key = format!("in/{}", "k".repeat(300));
        let e = objects
            .write("bkt", &key, &ObjectAttributes::default())
            .err()
            .unwrap();
        assert_eq!(e.kind, ObjectErrorKind::BadName, "{e}");
    }

    #[test]
    fn unfinished_writes_leave_nothing_and_are_cleaned_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let objects = LocalObjects::new(dir.path());
        objects.create_bucket("bkt").unwrap();
        let mut w = objects
            .write("bkt", "a/b", &ObjectAttributes::default())
            .unwrap();
        w.write_all(b"half").unwrap();
        drop(w);
        assert!(objects.list("bkt", "").unwrap().is_empty());
        // A crash leaves the part file: the writer's drop never ran.
        let w = objects
            .write("bkt", "a/c", &ObjectAttributes::default())
            .unwrap();
        std::mem::forget(w);
        assert!(objects.list("bkt", "").unwrap().is_empty());
        assert_eq!(objects.remove_partial().unwrap(), 1);
        assert_eq!(objects.remove_partial().unwrap(), 0);
    }

    #[test]
    fn large_objects_synced_as_they_grow_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let objects = LocalObjects::new(dir.path());
        objects.create_bucket("bkt").unwrap();
        let mut w = objects
            .write("bkt", "big", &ObjectAttributes::default())
            .unwrap();
        // Past two background syncs, in writes of an odd size.
        let block: Vec<u8> = (0..=250u8).cycle().take(1_000_003).collect();
        let blocks = (2 * super::SYNC_EVERY as usize) / block.len() + 2;
        for _ in 0..blocks {
            w.write_all(&block).unwrap();
        }
        let info = w.finish().unwrap();
        let len = (blocks * block.len()) as u64;
        assert_eq!(info.size, len);
        let mut back = Vec::new();
        objects
            .read("bkt", "big", 0..len)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len() as u64, len);
        assert!(back.chunks(block.len()).all(|c| c == &block[..]));
        // An aborted large write leaves nothing either.
        let mut w = objects
            .write("bkt", "gone", &ObjectAttributes::default())
            .unwrap();
        for _ in 0..blocks {
            w.write_all(&block).unwrap();
        }
        drop(w);
        let keys: Vec<String> = objects
            .list("bkt", "")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["big"]);
    }
}
