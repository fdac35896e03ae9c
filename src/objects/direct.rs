//! Large objects written and read past the page cache (`O_DIRECT`).
//!
//! A server that takes a 1 GiB upload through the page cache makes the
//! kernel find 1 GiB of fresh pages, fill them and later write them back
//! (and the same again when a multipart upload is assembled from its
//! parts). On the development VM, whose freed memory goes back to the
//! hypervisor, first-touching those pages alone cost about 3 CPU-seconds
//! per GiB; with `O_DIRECT` the bytes go from one reused buffer to the
//! disk, as object stores such as MinIO do for large objects. Objects
//! smaller than one [`CHUNK`] are written through the page cache, as are
//! files on file systems that refuse `O_DIRECT` (tmpfs): the writer then
//! carries on with an ordinary descriptor.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What `O_DIRECT` needs of buffers, offsets and lengths (the largest
/// logical block size in use).
const ALIGN: usize = 4096;

/// Bytes moved per system call.
pub(super) const CHUNK: usize = 1 << 20;

/// Reads shorter than this go through the page cache.
pub(super) const DIRECT_READ_MIN: u64 = 4 * CHUNK as u64;

#[cfg(target_os = "linux")]
const O_DIRECT: i32 = libc::O_DIRECT;
#[cfg(not(target_os = "linux"))]
const O_DIRECT: i32 = 0;

/// A buffer of [`CHUNK`] bytes starting on an [`ALIGN`] boundary, without
/// unsafe code: a vector one `ALIGN` longer and the offset into it.
struct Aligned {
    raw: Vec<u8>,
    at: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let raw = vec![0u8; CHUNK + ALIGN];
        let at = raw.as_ptr().align_offset(ALIGN).min(ALIGN);
        Aligned { raw, at }
    }

    fn get(&self) -> &[u8] {
        &self.raw[self.at..self.at + CHUNK]
    }

    fn get_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.at..self.at + CHUNK]
    }
}

fn refused_direct(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
}

/// Writes a file from an offset on, through the descriptor it was made
/// with while it has less than one [`CHUNK`], and through an `O_DIRECT`
/// one from its first full chunk on, when the file system takes it.
pub(super) struct DirectWriter {
    path: PathBuf,
    file: File,
    buf: Aligned,
    /// Bytes in `buf`.
    len: usize,
    /// Where the writes start (a multiple of `ALIGN` for direct ones).
    base: u64,
    /// Bytes written from `base` (while direct, a multiple of `ALIGN`).
    written: u64,
    /// The most bytes it takes.
    limit: u64,
    direct: bool,
    /// `O_DIRECT` was refused here: not asked again.
    buffered_only: bool,
}

impl DirectWriter {
    /// Writes into `file`, just made at `path` (empty, opened for writing).
    pub(super) fn new(path: &Path, file: File) -> DirectWriter {
        DirectWriter::at(path, file, 0, u64::MAX)
    }

    /// Writes at most `limit` bytes into `file` (opened for writing at
    /// `path`) from `base` on, leaving what is around them.
    pub(super) fn at(path: &Path, file: File, base: u64, limit: u64) -> DirectWriter {
        DirectWriter {
            path: path.to_owned(),
            file,
            buf: Aligned::new(),
            len: 0,
            base,
            written: 0,
            limit,
            direct: false,
            buffered_only: O_DIRECT == 0,
        }
    }

    /// The descriptor writes go to now.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Whether writes bypass the page cache now.
    pub(super) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Switches to an `O_DIRECT` descriptor when it can (at an aligned
    /// length, on a file system that takes it).
    fn go_direct(&mut self) -> io::Result<()> {
        let at = self.base + self.written;
        if self.direct || self.buffered_only || !at.is_multiple_of(ALIGN as u64) {
            return Ok(());
        }
        match OpenOptions::new()
            .write(true)
            .custom_flags(O_DIRECT)
            .open(&self.path)
        {
            Ok(f) => {
                self.file = f;
                self.direct = true;
            }
            Err(e) if refused_direct(&e) => self.buffered_only = true,
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Writes the full buffer.
    fn spill(&mut self) -> io::Result<()> {
        self.go_direct()?;
        self.put(None, self.len)?;
        self.len = 0;
        Ok(())
    }

    /// Writes `from[..upto]` (the buffer's when `None`) at `written`.
    fn put(&mut self, from: Option<&[u8]>, upto: usize) -> io::Result<()> {
        let mut done = 0;
        while done < upto {
            let src = match from {
                Some(d) => &d[done..upto],
                None => &self.buf.get()[done..upto],
            };
            match self.file.write_at(src, self.base + self.written) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && refused_direct(&e) => self.go_buffered()?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Goes on through the page cache (a file system that takes
    /// `O_DIRECT` at open but not for this write).
    fn go_buffered(&mut self) -> io::Result<()> {
        self.file = OpenOptions::new().write(true).open(&self.path)?;
        self.direct = false;
        self.buffered_only = true;
        Ok(())
    }

    /// Writes what is left; returns the descriptor, for syncing, and the
    /// bytes written. The last block of a direct write is padded to
    /// `ALIGN`; a file written from its start is cut back to its length
    /// (past the end of one written from an offset, the padding stays).
    pub(super) fn finish(mut self) -> io::Result<(File, u64)> {
        let length = self.written + self.len as u64;
        if self.len > 0 {
            if self.direct {
                let padded = self.len.next_multiple_of(ALIGN);
                self.buf.get_mut()[self.len..padded].fill(0);
                self.put(None, padded)?;
                if self.base == 0 {
                    self.file.set_len(length)?;
                }
            } else {
                self.put(None, self.len)?;
            }
            self.len = 0;
        }
        Ok((self.file, length))
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if (self.written + self.len as u64).saturating_add(data.len() as u64) > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("more than the {} bytes this file takes", self.limit),
            ));
        }
        // Aligned blocks from an aligned buffer (see [`copy`]) go to the
        // disk from where they are.
        if self.len == 0 && data.len() >= ALIGN && data.as_ptr().align_offset(ALIGN) == 0 {
            self.go_direct()?;
            if self.direct {
                let n = data.len() - data.len() % ALIGN;
                self.put(Some(data), n)?;
                return Ok(n);
            }
        }
        let n = data.len().min(CHUNK - self.len);
        self.buf.get_mut()[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == CHUNK {
            self.spill()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a range of a file through an `O_DIRECT` descriptor, a [`CHUNK`]
/// at a time from the `ALIGN` boundary at or before where it is.
pub(super) struct DirectReader {
    file: File,
    buf: Aligned,
    /// The file offset of `buf[0]`.
    base: u64,
    /// Where in `buf` the next byte is, and where its bytes end.
    at: usize,
    have: usize,
    /// The next byte to give and the end of the range.
    pos: u64,
    end: u64,
}

impl DirectReader {
    /// `O_DIRECT` descriptor of `path`, or `None` when the file system
    /// refuses it.
    pub(super) fn open(path: &Path) -> io::Result<Option<File>> {
        if O_DIRECT == 0 {
            return Ok(None);
        }
        match OpenOptions::new()
            .read(true)
            .custom_flags(O_DIRECT)
            .open(path)
        {
            Ok(f) => Ok(Some(f)),
            Err(e) if refused_direct(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads bytes `start..end` of `file` (opened by [`Self::open`]).
    pub(super) fn new(file: File, start: u64, end: u64) -> DirectReader {
        DirectReader {
            file,
            buf: Aligned::new(),
            base: 0,
            at: 0,
            have: 0,
            pos: start,
            end,
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        self.base = self.pos - self.pos % ALIGN as u64;
        let mut got = 0;
        // Whole blocks until the buffer is full or the file ends.
        while got < CHUNK {
            match self
                .file
                .read_at(&mut self.buf.get_mut()[got..], self.base + got as u64)
            {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    if !n.is_multiple_of(ALIGN) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let wanted = usize::try_from(self.end - self.base).unwrap_or(usize::MAX);
        self.have = got.min(wanted);
        self.at = usize::try_from(self.pos - self.base).unwrap_or(usize::MAX);
        Ok(())
    }
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || out.is_empty() {
            return Ok(0);
        }
        // From the disk straight into an aligned buffer (see [`copy`]).
        let left = self.end - self.pos;
        if self.at >= self.have
            && self.pos.is_multiple_of(ALIGN as u64)
            && out.as_ptr().align_offset(ALIGN) == 0
            && left >= ALIGN as u64
            && out.len() >= ALIGN
        {
            let m = usize::try_from(left).unwrap_or(usize::MAX).min(out.len());
            let m = m - m % ALIGN;
            let n = loop {
                match self.file.read_at(&mut out[..m], self.pos) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            // Nothing more: the file ended before the range did.
            self.pos = if n == 0 {
                self.end
            } else {
                self.pos + n as u64
            };
            return Ok(n);
        }
        if self.at >= self.have {
            self.refill()?;
            if self.at >= self.have {
                // The file ended before the range did.
                self.pos = self.end;
                return Ok(0);
            }
        }
        let n = out.len().min(self.have - self.at);
        out[..n].copy_from_slice(&self.buf.get()[self.at..self.at + n]);
        self.at += n;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Copies `from` into `to` through one aligned buffer: between a
/// direct reader and writer of a local bucket the bytes go from disk to
/// buffer to disk without another copy.
///
/// # Errors
///
/// What reading or writing meets.
pub fn copy(from: &mut dyn Read, to: &mut dyn Write) -> io::Result<u64> {
    let mut buf = Aligned::new();
    let mut n = 0u64;
    loop {
        match from.read(buf.get_mut()) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                to.write_all(&buf.get()[..k])?;
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    #[test]
    fn writes_of_any_length_and_shape_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, ALIGN - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 4097] {
            let data = pattern(len);
            let path = dir.path().join(format!("f{len}"));
            let mut w = DirectWriter::new(&path, File::create(&path).unwrap());
            // In uneven pieces, as bodies arrive.
            for piece in data.chunks(100_003) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap().0.sync_all().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "length {len}");
            for (start, end) in [
                (0, len),
                (len / 3, len),
                (len.min(1), len / 2 + 1),
                (len, len),
            ] {
                let end = end.min(len);
                let (start, end) = (start as u64, end as u64);
                let got = match DirectReader::open(&path).unwrap() {
                    Some(f) => {
                        let mut v = Vec::new();
                        DirectReader::new(f, start, end)
                            .read_to_end(&mut v)
                            .unwrap();
                        v
                    }
                    None => data[start as usize..end as usize].to_vec(),
                };
                assert_eq!(got, &data[start as usize..end as usize], "{start}..{end}");
            }
        }
    }

    #[test]
    fn copies_between_direct_files_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(3 * CHUNK + 5000);
        let from = dir.path().join("from");
        std::fs::write(&from, &data).unwrap();
        // Aligned and unaligned starts, whole and cut ends.
        for (start, end) in [
            (0, data.len()),
            (4096, data.len() - 1),
            (4097, 2 * CHUNK + 3),
        ] {
            let to = dir.path().join(format!("to-{start}-{end}"));
            let mut w = DirectWriter::new(&to, File::create(&to).unwrap());
            let n = match DirectReader::open(&from).unwrap() {
                Some(f) => copy(&mut DirectReader::new(f, start as u64, end as u64), &mut w),
                None => copy(&mut &data[start..end], &mut w),
            }
            .unwrap();
            assert_eq!(n, (end - start) as u64);
            w.finish().unwrap();
            assert_eq!(
                std::fs::read(&to).unwrap(),
                &data[start..end],
                "{start}..{end}"
            );
        }
    }

    #[test]
    fn a_range_past_the_end_stops_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(10_000)).unwrap();
        if let Some(f) = DirectReader::open(&path).unwrap() {
            let mut v = Vec::new();
            DirectReader::new(f, 5000, 1 << 30)
                .read_to_end(&mut v)
                .unwrap();
            assert_eq!(v, &pattern(10_000)[5000..]);
        }
    }
}
