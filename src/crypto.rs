/*!
Data keys, key wrapping, sealed files and signed URLs.

# Keys

A server has one [`MasterKey`]: 32 random bytes in a `0600` file in its
data directory (or given by the operator). Nothing else is kept secret on
disk. From it, three independent subkeys are derived (HMAC-SHA256 of the
master key over a fixed label): one wraps data keys, one checks presented
keys, one signs upload URLs. A leak of one use's output says nothing about
the others.

Each upload gets a fresh [`DataKey`] (256 random bits). The uploader gets it
once, as the ClientToken, and sends it back with the PUT, SSE-C style. The
server keeps only a [`SealedKey`]:
- the key wrapped with AES-256-GCM under the wrapping subkey, with the
  job id as associated data (so a wrapped key moved to another job does not
  open), and
- a salted HMAC of the key, to check a presented key without unwrapping
  anything (S3 keeps the same for SSE-C).

# Sealed files

An upload is written encrypted, as it arrives, in fixed-size segments
(the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár):

```text
header:  "SLUICE\x01\x00" | segment size (u32 LE) | nonce prefix (7 random bytes)
segment: AES-256-GCM(plaintext[..segment size]), 16-byte tag appended
nonce:   prefix (7) | segment number (u32 BE) | 1 on the last segment, else 0
AAD:     the header
```

Each segment is authenticated on its own, so a reader decrypts as it
streams and holds one segment at a time; the counter stops segments being
reordered and the last-segment flag stops a file being cut short. A file
always ends with a last segment (empty only when the whole file is).
*/

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;

/// The master key's file in a data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Plaintext bytes per sealed segment.
pub const SEGMENT: usize = 64 * 1024;

const MAGIC: &[u8; 8] = b"SLUICE\x01\x00";
const HEADER_LEN: usize = 8 + 4 + 7;
const TAG_LEN: usize = 16;

/// What can go wrong with keys and sealed data.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A key file does not hold a key.
    #[error("{path}: not a key file ({why})")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A wrapped key did not open: another master key, another job, or
    /// tampered with.
    #[error("the wrapped data key does not open under this master key")]
    Unwrap,
}

/// `N` bytes from the operating system's random source.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the operating system's random source works");
    b
}

/// AES-256-GCM under `key` (ring's: several times faster than a portable
/// implementation, which matters for gigabyte uploads).
fn aes_gcm(key: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes 32-byte keys"))
}

/// Appends `plain`, sealed under `key` with this nonce and associated
/// data, and then its tag, to `out`.
fn seal_onto(key: &LessSafeKey, nonce: [u8; 12], aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[start..],
        )
        .expect("AES-GCM seals anything below 64 GiB");
    out.extend_from_slice(tag.as_ref());
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    HmacKey::new(key).mac(parts)
}

/// An HMAC-SHA256 key made ready once, for many MACs under it: each then
/// hashes only its message (the key's two blocks are hashed here).
#[derive(Clone)]
pub(crate) struct HmacKey(HmacSha256);

impl HmacKey {
    pub(crate) fn new(key: &[u8]) -> HmacKey {
        HmacKey(<HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length"))
    }

    /// HMAC-SHA256 of the concatenated `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.0.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Standard base64 of `bytes`.
pub fn to_base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Constant-time equality of two byte strings.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// A 256-bit data key. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; KEY_LEN]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> DataKey {
        DataKey(random())
    }

    /// A key from its bytes; `None` unless there are exactly 32.
    pub fn from_bytes(b: &[u8]) -> Option<DataKey> {
        b.try_into().ok().map(DataKey)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key in standard base64 (a ClientToken, an SSE-C key header).
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Base64 of the MD5 of the key bytes (the SSE-C key-MD5 header).
    pub fn md5_base64(&self) -> String {
        md5_base64(&self.0)
    }
}

/// Base64 of the MD5 of `bytes`.
pub fn md5_base64(bytes: &[u8]) -> String {
    B64.encode(Md5::digest(bytes))
}

/// Decodes standard base64.
pub fn from_base64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.trim()).ok()
}

/// A data key as the server keeps it: wrapped, plus a salted check value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SealedKey {
    /// Nonce and AES-256-GCM ciphertext of the key, base64.
    pub wrapped: String,
    /// Random salt of the check value, base64.
    pub salt: String,
    /// HMAC of salt and key under the check subkey, base64.
    pub check: String,
}

/// The server's master key. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct MasterKey {
    wrap: [u8; 32],
    check: [u8; 32],
    url: [u8; 32],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(master: &[u8; KEY_LEN]) -> MasterKey {
        MasterKey {
            wrap: hmac(master, &[b"sluice/v1/wrap"]),
            check: hmac(master, &[b"sluice/v1/check"]),
            url: hmac(master, &[b"sluice/v1/url"]),
        }
    }

    /// Reads the key file at `path` (base64 of 32 bytes, one line).
    ///
    /// # Errors
    ///
    /// When it cannot be read or does not hold a key.
    pub fn load(path: &Path) -> Result<MasterKey, CryptoError> {
        let text = fs::read_to_string(path).map_err(|source| CryptoError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bad = |why: &str| CryptoError::BadKeyFile {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        let bytes = from_base64(&text).ok_or_else(|| bad("not base64"))?;
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("not 32 bytes"))?;
        Ok(MasterKey::from_bytes(&key))
    }

    /// The key in `dir/master.key`, made (random, mode `0600`) if there is
    /// none.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or written.
    pub fn load_or_create(dir: &Path) -> Result<MasterKey, CryptoError> {
        let path = dir.join(MASTER_KEY_FILE);
        let io = |source| CryptoError::Io {
            path: path.clone(),
            source,
        };
        match create_private(&path) {
            Ok(mut f) => {
                let key: [u8; KEY_LEN] = random();
                f.write_all(format!("{}\n", B64.encode(key)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(io)?;
                Ok(MasterKey::from_bytes(&key))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => MasterKey::load(&path),
            Err(e) => Err(io(e)),
        }
    }

    /// Wraps `key` for the job `context`, with a fresh salted check value.
    pub fn seal_key(&self, key: &DataKey, context: &str) -> SealedKey {
        let nonce: [u8; 12] = random();
        let mut wrapped = nonce.to_vec();
        seal_onto(
            &aes_gcm(&self.wrap),
            nonce,
            context.as_bytes(),
            key.as_bytes(),
            &mut wrapped,
        );
        let salt: [u8; 16] = random();
        SealedKey {
            wrapped: B64.encode(wrapped),
            salt: B64.encode(salt),
            check: B64.encode(hmac(&self.check, &[&salt, key.as_bytes()])),
        }
    }

    /// Unwraps a key sealed for the job `context`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Unwrap`] under another master key or context, or
    /// when tampered with.
    pub fn open_key(&self, sealed: &SealedKey, context: &str) -> Result<DataKey, CryptoError> {
        let mut wrapped = from_base64(&sealed.wrapped).ok_or(CryptoError::Unwrap)?;
        if wrapped.len() != 12 + KEY_LEN + TAG_LEN {
            return Err(CryptoError::Unwrap);
        }
        let (nonce, ct) = wrapped.split_at_mut(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unwrap)?;
        let pt = aes_gcm(&self.wrap)
            .open_in_place(nonce, Aad::from(context.as_bytes()), ct)
            .map_err(|_| CryptoError::Unwrap)?;
        DataKey::from_bytes(pt).ok_or(CryptoError::Unwrap)
    }

    /// Whether `presented` is the key `sealed` holds, without unwrapping
    /// it; compared in constant time.
    pub fn key_matches(&self, sealed: &SealedKey, presented: &[u8]) -> bool {
        let (Some(salt), Some(check)) = (from_base64(&sealed.salt), from_base64(&sealed.check))
        else {
            return false;
        };
        same_bytes(&hmac(&self.check, &[&salt, presented]), &check)
    }

    /// The signature of an upload URL's canonical string.
    pub fn sign_url(&self, canonical: &str) -> [u8; 32] {
        hmac(&self.url, &[canonical.as_bytes()])
    }
}

/// Creates `path` for writing, readable only by its owner; fails if it
/// exists.
///
/// # Errors
///
/// As [`fs::OpenOptions::open`].
pub fn create_private(path: &Path) -> io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Makes `path` and the folders above it that are missing, each readable
/// only by its owner (0700); folders that exist are left as they are.
///
/// # Errors
///
/// As [`fs::DirBuilder::create`].
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    private_dirs().recursive(true).create(path)
}

/// Makes the folder `path` (its parent must exist), readable only by its
/// owner (0700).
///
/// # Errors
///
/// As [`fs::DirBuilder::create`] (`AlreadyExists` when it is there).
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    private_dirs().create(path)
}

/// A builder of folders only their owner may enter (0700).
fn private_dirs() -> fs::DirBuilder {
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b
}

/// What sealing and opening share: the cipher, the header (the AAD of
/// every segment) and the number of the next segment.
struct Segments {
    cipher: LessSafeKey,
    header: [u8; HEADER_LEN],
    next: u32,
}

impl Segments {
    fn new(key: &DataKey, header: [u8; HEADER_LEN]) -> Segments {
        Segments {
            cipher: aes_gcm(key.as_bytes()),
            header,
            next: 0,
        }
    }

    fn size(&self) -> usize {
        u32::from_le_bytes(self.header[8..12].try_into().expect("4 bytes")) as usize
    }

    fn nonce(&self, last: bool) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..7].copy_from_slice(&self.header[12..]);
        nonce[7..11].copy_from_slice(&self.next.to_be_bytes());
        nonce[11] = u8::from(last);
        nonce
    }

    /// Seals the next segment onto the end of `out`.
    fn seal(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) {
        seal_onto(&self.cipher, self.nonce(last), &self.header, plain, out);
        self.next = self.next.wrapping_add(1);
    }

    /// Opens the next segment in place, if it is one sealed with this
    /// `last` flag: returns its plaintext length (the plaintext is at the
    /// start of `sealed`), and moves on.
    fn open(&mut self, sealed: &mut [u8], last: bool) -> Option<usize> {
        let nonce = Nonce::assume_unique_for_key(self.nonce(last));
        let plain = self
            .cipher
            .open_in_place(nonce, Aad::from(&self.header), sealed)
            .ok()?
            .len();
        self.next = self.next.wrapping_add(1);
        Some(plain)
    }
}

/// Seals a stream as it arrives: push plaintext, write out what comes back.
///
/// No I/O of its own, so it serves a blocking writer and an async body
/// stream alike.
pub struct Sealer {
    segments: Segments,
    buf: Vec<u8>,
    started: bool,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("segment", &self.segments.size())
            .field("next", &self.segments.next)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer under `key`, segments of [`SEGMENT`] bytes.
    pub fn new(key: &DataKey) -> Sealer {
        Sealer::with_segment(key, SEGMENT)
    }

    /// A sealer with another segment size (at least 1; tests use small ones).
    pub fn with_segment(key: &DataKey, segment: usize) -> Sealer {
        let segment = segment.clamp(1, u32::MAX as usize);
        let prefix: [u8; 7] = random();
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&(segment as u32).to_le_bytes());
        header[12..].copy_from_slice(&prefix);
        Sealer {
            segments: Segments::new(key, header),
            buf: Vec::with_capacity(segment),
            started: false,
        }
    }

    fn seal_segment(&mut self, last: bool, out: &mut Vec<u8>) {
        self.segments.seal(&self.buf, last, out);
        self.buf.clear();
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            out.extend_from_slice(&self.segments.header);
            self.started = true;
        }
    }

    /// Takes more plaintext; appends the sealed bytes that are ready to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        self.start(out);
        let size = self.segments.size();
        while !data.is_empty() {
            // A full segment is sealed only once more data shows it is not
            // the last.
            if self.buf.len() == size {
                self.seal_segment(false, out);
            }
            let take = (size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
    }

    /// Ends the stream: appends the last segment to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.seal_segment(true, out);
    }
}

/// The plaintext length of a sealed file of `sealed_len` bytes, if it can be
/// one (its segment size is read from its header).
pub fn plaintext_len(header: &[u8], sealed_len: u64) -> Option<u64> {
    let segment = u64::from(u32::from_le_bytes(header.get(8..12)?.try_into().ok()?));
    let body = sealed_len.checked_sub(HEADER_LEN as u64)?;
    let full = segment + TAG_LEN as u64;
    let segments = body.div_ceil(full).max(1);
    body.checked_sub(segments * TAG_LEN as u64)
}

/// Reads a sealed stream back as plaintext, one segment at a time.
///
/// A wrong key, a tampered or reordered segment, or a file cut short is an
/// [`io::ErrorKind::InvalidData`] error naming the segment.
pub struct Opener<R> {
    inner: R,
    segments: Segments,
    /// One sealed segment and the byte after it, which, when there is
    /// one, says the segment is not the last; opened in place, the
    /// plaintext is `buf[pos..end]`.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The first byte of the next segment, read to learn that the one
    /// before was not the last.
    carry: Option<u8>,
    done: bool,
}

impl<R> fmt::Debug for Opener<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("segment", &self.segments.size())
            .field("next", &self.segments.next)
            .finish_non_exhaustive()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> Opener<R> {
    /// Reads the header of a sealed stream.
    ///
    /// # Errors
    ///
    /// A read error, or `InvalidData` when the stream is not sealed.
    pub fn new(mut inner: R, key: &DataKey) -> io::Result<Opener<R>> {
        let mut header = [0u8; HEADER_LEN];
        if read_full(&mut inner, &mut header)? != HEADER_LEN || &header[..8] != MAGIC {
            return Err(invalid("not a sealed sluice file (bad header)".into()));
        }
        let segments = Segments::new(key, header);
        let segment = segments.size();
        if segment == 0 || segment > 64 << 20 {
            return Err(invalid(format!("sealed file: bad segment size {segment}")));
        }
        Ok(Opener {
            inner,
            segments,
            buf: vec![0; segment + TAG_LEN + 1],
            pos: 0,
            end: 0,
            carry: None,
            done: false,
        })
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut n = 0;
        if let Some(b) = self.carry.take() {
            self.buf[0] = b;
            n = 1;
        }
        n += read_full(&mut self.inner, &mut self.buf[n..])?;
        let which = self.segments.next;
        if n < TAG_LEN {
            return Err(invalid(format!(
                "sealed file cut short before segment {which} (wrong or partial upload)"
            )));
        }
        // A segment is the last unless a byte follows it, read with it in
        // one call (so the stream needs no buffer of its own).
        let full = self.buf.len() - 1;
        let last = n <= full;
        if !last {
            self.carry = Some(self.buf[full]);
            n = full;
        }
        let Some(plain) = self.segments.open(&mut self.buf[..n], last) else {
            return Err(invalid(format!(
                "sealed file: segment {which} failed authentication (wrong key, or the file \
                 was changed, cut short or lengthened)"
            )));
        };
        self.done = last;
        self.pos = 0;
        self.end = plain;
        Ok(())
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.end {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = (self.end - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Opens the sealed file at `path` under `key`; also returns its plaintext
/// length.
///
/// # Errors
///
/// When it cannot be opened or is not a sealed file.
pub fn open_file(path: &Path, key: &DataKey) -> io::Result<(Opener<fs::File>, u64)> {
    let f = fs::File::open(path)?;
    let sealed_len = f.metadata()?.len();
    open_reader(f, sealed_len, key)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Opens a sealed stream of `sealed_len` bytes under `key`; also returns
/// its plaintext length.
///
/// # Errors
///
/// A read error, or `InvalidData` when it is not a sealed stream.
pub fn open_reader<R: Read>(
    inner: R,
    sealed_len: u64,
    key: &DataKey,
) -> io::Result<(Opener<R>, u64)> {
    let opener = Opener::new(inner, key)?;
    let len = plaintext_len(&opener.segments.header, sealed_len)
        .ok_or_else(|| invalid("not a sealed sluice file (bad length)".into()))?;
    Ok((opener, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &DataKey, data: &[u8], segment: usize, chunk: usize) -> Vec<u8> {
        let mut s = Sealer::with_segment(key, segment);
        let mut out = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    fn open(key: &DataKey, sealed: &[u8]) -> io::Result<Vec<u8>> {
        let mut o = Opener::new(sealed, key)?;
        let mut v = Vec::new();
        o.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn round_trips_every_length_and_chunking() {
        let key = DataKey::generate();
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
        for len in [0, 1, 15, 16, 17, 32, 48, 199, 200] {
            for chunk in [1, 5, 16, 64] {
                let sealed = seal(&key, &data[..len], 16, chunk);
                assert_eq!(open(&key, &sealed).unwrap(), &data[..len], "{len} {chunk}");
                assert_eq!(
                    plaintext_len(&sealed, sealed.len() as u64),
                    Some(len as u64)
                );
            }
        }
    }

    #[test]
    fn refuses_wrong_key_tampering_truncation_and_reordering() {
        let key = DataKey::generate();
        let data = vec![42u8; 100];
        let sealed = seal(&key, &data, 16, 100);
        assert!(open(&DataKey::generate(), &sealed).is_err());
        let mut t = sealed.clone();
        t[HEADER_LEN + 3] ^= 1;
        assert!(open(&key, &t).is_err());
        // Cut after a whole segment: the one before is not marked last.
        let cut = &sealed[..HEADER_LEN + 2 * (16 + TAG_LEN)];
        assert!(open(&key, cut).is_err());
        let mut swapped = sealed.clone();
        let a = HEADER_LEN..HEADER_LEN + 32;
        let b = HEADER_LEN + 32..HEADER_LEN + 64;
        let seg_b = sealed[b.clone()].to_vec();
        swapped[b].copy_from_slice(&sealed[a.clone()]);
        swapped[a].copy_from_slice(&seg_b);
        assert!(open(&key, &swapped).is_err());
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(open(&key, &longer).is_err());
    }

    #[test]
    fn wrapped_keys_open_only_for_their_job_and_master() {
        let m = MasterKey::from_bytes(&[7; 32]);
        let k = DataKey::generate();
        let s = m.seal_key(&k, "job-1");
        assert_eq!(m.open_key(&s, "job-1").unwrap(), k);
        assert!(m.open_key(&s, "job-2").is_err());
        assert!(
            MasterKey::from_bytes(&[8; 32])
                .open_key(&s, "job-1")
                .is_err()
        );
        assert!(m.key_matches(&s, k.as_bytes()));
        assert!(!m.key_matches(&s, DataKey::generate().as_bytes()));
        assert!(!s.wrapped.contains(&k.to_base64()));
    }

    #[test]
    fn master_key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = MasterKey::load_or_create(dir.path()).unwrap();
        let b = MasterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.sign_url("x"), b.sign_url("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(MASTER_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn md5_matches_a_known_value() {
        assert_eq!(md5_base64(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn hex_and_hmac_match_known_answers() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(to_hex(&[]), "");
        // RFC 4231, test case 2; the key made ready once gives the same
        // MAC every time.
        let key = HmacKey::new(b"Jefe");
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        for _ in 0..2 {
            assert_eq!(
                to_hex(&key.mac(&[b"what do ya want ", b"for nothing?"])),
                want
            );
        }
        assert_eq!(
            to_hex(&hmac(b"Jefe", &[b"what do ya want for nothing?"])),
            want
        );
    }
}
