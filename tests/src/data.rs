//! Deterministic test data and SHA-256 helpers.
//!
//! Bodies are a seeded pseudo-random stream (splitmix64), so every byte of a transfer is
//! checkable and a failing case can be regenerated from its seed.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

/// Fills `buf` with the stream for `seed` from stream offset `offset` (a multiple of 8): word
/// `i` of the stream is splitmix64's output for state `seed + (i + 1) * golden`, so any slice
/// of the stream can be produced on its own.
fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    debug_assert_eq!(offset % 8, 0);
    let first = offset / 8;
    for (j, chunk) in buf.chunks_mut(8).enumerate() {
        let mut z = seed.wrapping_add((first + j as u64 + 1).wrapping_mul(GOLDEN));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// `len` bytes of the stream for `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    fill(seed, 0, &mut buf);
    buf
}

/// Writes `len` bytes of the stream for `seed` to `path`; returns their SHA-256 (hex).
pub fn write_pattern_file(path: &Path, seed: u64, len: u64) -> String {
    const CHUNK: usize = 1 << 20;
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut out = BufWriter::with_capacity(CHUNK, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        fill(seed, done, &mut buf[..n]);
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).expect("write pattern file");
        done += n as u64;
    }
    out.flush().expect("flush pattern file");
    hex::encode(hasher.finalize())
}

/// SHA-256 (hex) of `len` bytes of the stream for `seed` from `offset` (a multiple of 8):
/// what a ranged GET of a [`write_pattern_file`] object returns.
pub fn pattern_range_sha256(seed: u64, offset: u64, len: u64) -> String {
    assert_eq!(offset % 8, 0, "pattern ranges start at a multiple of 8");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        fill(seed, offset + done, &mut buf[..n]);
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    hex::encode(hasher.finalize())
}

/// SHA-256 (hex) of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 (hex) and length of everything `reader` yields.
pub fn sha256_reader(mut reader: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// SHA-256 (hex) and length of a file.
pub fn sha256_file(path: &Path) -> (String, u64) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    sha256_reader(file).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// One object of a seed set: its key, local file, size and SHA-256.
#[derive(Clone, Debug)]
pub struct SeedObject {
    pub key: String,
    pub path: std::path::PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// Writes a set of objects of the given sizes into `dir` (keys `seed/obj-<i>-<size>`).
pub fn seed_objects(dir: &Path, sizes: &[u64]) -> Vec<SeedObject> {
    std::fs::create_dir_all(dir).expect("create seed dir");
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let key = format!("seed/obj-{i}-{size}");
            let path = dir.join(format!("obj-{i}"));
            let sha256 = write_pattern_file(&path, 1000 + i as u64, size);
            SeedObject {
                key,
                path,
                size,
                sha256,
            }
        })
        .collect()
}

/// The seed set as JSON for the Python scripts: `[{"key", "path", "size", "sha256"}]`.
pub fn manifest_json(objects: &[SeedObject]) -> String {
    let list: Vec<serde_json::Value> = objects
        .iter()
        .map(|o| {
            serde_json::json!({
                "key": o.key,
                "path": o.path.to_string_lossy(),
                "size": o.size,
                "sha256": o.sha256,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// A test's scratch folder (node data, logs, configs, files). Removed when the test passes;
/// kept (minus files over 64 MiB) when it fails, and its path printed, so the logs of every
/// process can be read afterwards. `WEIR_TEST_KEEP=1` keeps it always.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    path: std::path::PathBuf,
}

impl Scratch {
    /// A new scratch folder named after the test.
    pub fn new(test: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("weir-e2e-{test}-"))
            .tempdir()
            .expect("create scratch dir");
        let path = dir.path().to_path_buf();
        Scratch {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/<name>`, created as a folder.
    pub fn sub(&self, name: &str) -> std::path::PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).expect("create scratch subdir");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let keep = std::thread::panicking() || std::env::var_os("WEIR_TEST_KEEP").is_some();
        if let (true, Some(dir)) = (keep, self.dir.take()) {
            remove_big_files(dir.path(), 64 << 20);
            let path = dir.keep();
            eprintln!("scratch folder kept: {}", path.display());
        }
    }
}

fn remove_big_files(dir: &Path, limit: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => remove_big_files(&path, limit),
            Ok(m) if m.len() > limit => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}
