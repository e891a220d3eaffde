//! Object storage of the simulator: every object is a memfd (so bodies leave with
//! `sendfile` and never pass through user space) plus its length and quoted-MD5 ETag.
//!
//! Synthetic objects are built once per process and shared by every node in it (a global
//! cache keyed by full key and size), which is what makes N in-process nodes serve the same
//! bytes and ETags at the memory cost of one. A PUT whose body equals the key's synthetic
//! pattern is recognised while it streams in and becomes that shared object, so a PUT load
//! test neither grows memory nor pays MD5 per request.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};
use md5::{Digest, Md5};

use crate::pattern::{self, Synthetic};

/// Bytes generated per step when writing a pattern into a memfd.
const GENERATE_CHUNK_BYTES: usize = 1 << 20;

/// One stored object.
pub struct Object {
    /// memfd holding exactly `len_bytes` bytes.
    pub file: File,
    /// Object size.
    pub len_bytes: u64,
    /// `"hex-md5"`, quotes included, as sent in the ETag header.
    pub etag: String,
}

/// Creates an anonymous in-memory file (close-on-exec).
fn memfd(name: &str) -> Result<File> {
    // memfd names are for /proc only; keep them short and NUL-free.
    let short: String = name.chars().filter(|&c| c != '\0').take(200).collect();
    let name = CString::new(short).context("memfd name")?;
    // SAFETY: `name` is a valid NUL-terminated string; the call has no other inputs.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Writes the pattern bytes `0..len_bytes` of `seed` into `file`, hashing them into `md5`.
fn write_pattern(file: &File, seed: u64, len_bytes: u64, md5: &mut Md5) -> Result<()> {
    let mut buf = vec![0u8; GENERATE_CHUNK_BYTES];
    let mut offset = 0u64;
    while offset < len_bytes {
        let n = (len_bytes - offset).min(GENERATE_CHUNK_BYTES as u64) as usize;
        pattern::fill(seed, offset, &mut buf[..n]);
        file.write_all_at(&buf[..n], offset)
            .context("write pattern to memfd")?;
        md5.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(())
}

fn quoted(md5: Md5) -> String {
    format!("\"{}\"", hex::encode(md5.finalize()))
}

/// Synthetic objects by (full key, size).
type SyntheticCache = Mutex<HashMap<(String, u64), Arc<Object>>>;

/// The process-wide cache of synthetic objects.
fn cache() -> &'static SyntheticCache {
    static CACHE: OnceLock<SyntheticCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn cached(key: &str, len_bytes: u64) -> Option<Arc<Object>> {
    let cache = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache.get(&(key.to_string(), len_bytes)).cloned()
}

/// Builds (or fetches from the cache) the synthetic object `key` of `len_bytes`.
pub fn synthetic_object(key: &str, len_bytes: u64) -> Result<Arc<Object>> {
    if let Some(object) = cached(key, len_bytes) {
        return Ok(object);
    }
    let file = memfd(key)?;
    file.set_len(len_bytes).context("size memfd")?;
    let mut md5 = Md5::new();
    write_pattern(&file, pattern::key_seed(key), len_bytes, &mut md5)?;
    let object = Arc::new(Object {
        file,
        len_bytes,
        etag: quoted(md5),
    });
    let mut cache = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Another thread may have built the same object meanwhile; keep the first.
    Ok(cache
        .entry((key.to_string(), len_bytes))
        .or_insert(object)
        .clone())
}

/// Every object of `specs` as (full key, object), generated in parallel on all cores.
pub fn synthetic_objects(specs: &[Synthetic]) -> Result<Vec<(String, Arc<Object>)>> {
    let wanted: Vec<(String, u64)> = specs
        .iter()
        .flat_map(|s| (0..s.count).map(move |i| (s.key(i), s.size_bytes)))
        .collect();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(wanted.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((key, len_bytes)) = wanted.get(i) else {
                            return Ok(());
                        };
                        synthetic_object(key, *len_bytes)?;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("synthetic generator panicked"))??;
        }
        Ok(())
    })?;
    wanted
        .into_iter()
        .map(|(key, len_bytes)| {
            let object = synthetic_object(&key, len_bytes)?;
            Ok((key, object))
        })
        .collect()
}

/// Accumulates a PUT body: while it matches the key's pattern nothing is stored; at the
/// first differing byte the matching prefix is regenerated into a memfd and storing begins.
pub struct ObjectBuilder {
    key: String,
    seed: u64,
    len_bytes: u64,
    stored: Option<(File, Md5)>,
}

impl ObjectBuilder {
    /// A builder for an upload to full key `key`.
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_string(),
            seed: pattern::key_seed(key),
            len_bytes: 0,
            stored: None,
        }
    }

    /// Appends body bytes.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        if self.stored.is_none() {
            if pattern::verify(self.seed, self.len_bytes, data).is_none() {
                self.len_bytes += data.len() as u64;
                return Ok(());
            }
            let file = memfd(&self.key)?;
            let mut md5 = Md5::new();
            write_pattern(&file, self.seed, self.len_bytes, &mut md5)?;
            self.stored = Some((file, md5));
        }
        if let Some((file, md5)) = &mut self.stored {
            file.write_all_at(data, self.len_bytes)
                .context("write body to memfd")?;
            md5.update(data);
        }
        self.len_bytes += data.len() as u64;
        Ok(())
    }

    /// Bytes received so far.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The finished object.
    pub fn finish(self) -> Result<Arc<Object>> {
        match self.stored {
            None => synthetic_object(&self.key, self.len_bytes),
            Some((file, md5)) => Ok(Arc::new(Object {
                file,
                len_bytes: self.len_bytes,
                etag: quoted(md5),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(object: &Object) -> Vec<u8> {
        let mut out = vec![0u8; object.len_bytes as usize];
        object.file.read_exact_at(&mut out, 0).unwrap();
        out
    }

    #[test]
    fn builder_keeps_pattern_bodies_shared_and_stores_others() {
        let key = "t/builder-obj";
        let mut body = vec![0u8; 10_000];
        pattern::fill(pattern::key_seed(key), 0, &mut body);
        let mut b = ObjectBuilder::new(key);
        for piece in body.chunks(333) {
            b.push(piece).unwrap();
        }
        let same = b.finish().unwrap();
        assert!(Arc::ptr_eq(&same, &synthetic_object(key, 10_000).unwrap()));
        let expected = format!("\"{}\"", hex::encode(Md5::digest(&body)));
        assert_eq!(same.etag, expected);

        body[7777] ^= 1;
        let mut b = ObjectBuilder::new(key);
        for piece in body.chunks(1000) {
            b.push(piece).unwrap();
        }
        let changed = b.finish().unwrap();
        assert_eq!(read_all(&changed), body);
        assert_eq!(
            changed.etag,
            format!("\"{}\"", hex::encode(Md5::digest(&body)))
        );
    }

    #[test]
    fn empty_object_has_the_empty_md5() {
        let object = ObjectBuilder::new("t/empty").finish().unwrap();
        assert_eq!(object.etag, "\"d41d8cd98f00b204e9800998ecf8427e\"");
        assert_eq!(object.len_bytes, 0);
    }
}
