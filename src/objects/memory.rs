//! Objects in memory: buckets of byte strings, for tests and for embedders
//! that keep everything in one process.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    BucketInfo, ObjectAttributes, ObjectError, ObjectInfo, ObjectWriter, Objects, checked,
    checked_bucket, clamp,
};

#[derive(Clone, Debug)]
struct Object {
    bytes: Arc<[u8]>,
    attributes: ObjectAttributes,
    modified_ms: i64,
    version: u64,
}

#[derive(Debug, Default)]
struct State {
    buckets: BTreeMap<String, BTreeMap<String, Object>>,
    /// When each bucket was made.
    created_ms: BTreeMap<String, i64>,
    versions: u64,
}

/// Buckets in memory. Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct MemoryObjects {
    state: Arc<Mutex<State>>,
}

impl MemoryObjects {
    /// No buckets yet.
    pub fn new() -> MemoryObjects {
        MemoryObjects::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The attributes an object was put with.
    pub fn attributes(&self, bucket: &str, key: &str) -> Option<ObjectAttributes> {
        self.state()
            .buckets
            .get(bucket)?
            .get(key)
            .map(|o| o.attributes.clone())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn info(key: &str, o: &Object) -> ObjectInfo {
    ObjectInfo {
        key: key.to_owned(),
        size: o.bytes.len() as u64,
        modified_ms: Some(o.modified_ms),
        etag: Some(format!("v{}", o.version)),
    }
}

impl Objects for MemoryObjects {
    fn describe(&self) -> String {
        "buckets in memory".into()
    }

    fn create_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        checked_bucket(bucket)?;
        let mut st = self.state();
        if st.buckets.contains_key(bucket) {
            return Err(ObjectError::bucket_exists(bucket));
        }
        st.buckets.insert(bucket.to_owned(), BTreeMap::new());
        st.created_ms.insert(bucket.to_owned(), now_ms());
        Ok(())
    }

    fn list_buckets(&self) -> Result<Vec<BucketInfo>, ObjectError> {
        let st = self.state();
        Ok(st
            .buckets
            .keys()
            .map(|name| BucketInfo {
                name: name.clone(),
                created_ms: st.created_ms.get(name).copied(),
            })
            .collect())
    }

    fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        let mut st = self.state();
        match st.buckets.get(bucket) {
            None => Err(ObjectError::no_bucket(bucket)),
            Some(b) if !b.is_empty() => Err(ObjectError::not_empty(bucket)),
            Some(_) => {
                st.buckets.remove(bucket);
                st.created_ms.remove(bucket);
                Ok(())
            }
        }
    }

    fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectError> {
        Ok(self.state().buckets.contains_key(bucket))
    }

    fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        let st = self.state();
        let b = st
            .buckets
            .get(bucket)
            .ok_or_else(|| ObjectError::no_bucket(bucket))?;
        Ok(b.range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| info(k, o))
            .collect())
    }

    fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError> {
        checked(bucket, key)?;
        let st = self.state();
        let b = st
            .buckets
            .get(bucket)
            .ok_or_else(|| ObjectError::no_bucket(bucket))?;
        b.get(key)
            .map(|o| info(key, o))
            .ok_or_else(|| ObjectError::no_key(bucket, key))
    }

    fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
    ) -> Result<Box<dyn Read + Send>, ObjectError> {
        checked(bucket, key)?;
        let st = self.state();
        let b = st
            .buckets
            .get(bucket)
            .ok_or_else(|| ObjectError::no_bucket(bucket))?;
        let o = b.get(key).ok_or_else(|| ObjectError::no_key(bucket, key))?;
        let r = clamp(&range, o.bytes.len() as u64);
        Ok(Box::new(Slice {
            bytes: Arc::clone(&o.bytes),
            at: r.start as usize,
            end: r.end as usize,
        }))
    }

    fn write(
        &self,
        bucket: &str,
        key: &str,
        attributes: &ObjectAttributes,
    ) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        checked(bucket, key)?;
        if !self.state().buckets.contains_key(bucket) {
            return Err(ObjectError::no_bucket(bucket));
        }
        Ok(Box::new(MemoryWriter {
            objects: self.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            attributes: attributes.clone(),
            bytes: Vec::new(),
        }))
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        checked(bucket, key)?;
        let mut st = self.state();
        let b = st
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| ObjectError::no_bucket(bucket))?;
        b.remove(key);
        Ok(())
    }

    fn locate(&self, bucket: &str, key: &str) -> String {
        format!("memory://{bucket}/{key}")
    }
}

/// A shared byte string, read from `at` to `end`.
struct Slice {
    bytes: Arc<[u8]>,
    at: usize,
    end: usize,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.end - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

struct MemoryWriter {
    objects: MemoryObjects,
    bucket: String,
    key: String,
    attributes: ObjectAttributes,
    bytes: Vec<u8>,
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for MemoryWriter {
    fn finish(self: Box<Self>) -> Result<ObjectInfo, ObjectError> {
        let mut st = self.objects.state();
        st.versions += 1;
        let version = st.versions;
        let b = st
            .buckets
            .get_mut(&self.bucket)
            .ok_or_else(|| ObjectError::no_bucket(&self.bucket))?;
        let o = Object {
            bytes: self.bytes.into(),
            attributes: self.attributes,
            modified_ms: now_ms(),
            version,
        };
        let out = info(&self.key, &o);
        b.insert(self.key, o);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::all(&super::MemoryObjects::new());
    }
}
