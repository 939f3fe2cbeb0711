//! Residency scans: which bytes of an org this node still holds, for the report that checks an
//! org really left a region. Read-only.
//!
//! - [`scan_files`]: raw occurrences of needles in every regular file under the data dir,
//!   streamed in chunks (whatever sled keeps: live values, deleted ones not yet compacted away,
//!   snapshots, blobs);
//! - the log and snapshot checks ([`crate::StateReader::log_entries_containing`],
//!   [`crate::StateReader::snapshot_contains`]): what the live store still refers to.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// How many bytes of a file are read at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// How often one needle occurs in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHit {
    /// The file, relative to the store's directory.
    pub path: PathBuf,
    /// The needle's position in the list given to the scan.
    pub needle: usize,
    /// How many times the needle occurs in the file, overlapping occurrences included.
    pub count: u64,
}

/// A regular file found under a directory.
pub(crate) struct FoundFile {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}

/// Every regular file under `root`, recursively, in path order. Symbolic links are not
/// followed; a file that disappears while the tree is walked (sled renames and removes its
/// snapshot files) is skipped.
pub(crate) fn regular_files(root: &Path) -> Result<Vec<FoundFile>, StoreError> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(StoreError::io("listing a directory", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(StoreError::io("listing a directory", &dir))?;
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("reading a file's metadata", &entry.path())(e)),
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else if metadata.is_file() {
                found.push(FoundFile { path: entry.path(), len: metadata.len() });
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// For every regular file under `root` and every needle found in it, how many times it occurs;
/// see [`crate::StateReader::scan_files`].
pub(crate) fn scan_files(root: &Path, needles: &[Vec<u8>]) -> Result<Vec<FileHit>, StoreError> {
    let mut hits = Vec::new();
    for file in regular_files(root)? {
        let Some(counts) = count_in_file(&file.path, needles)? else { continue };
        let relative = file.path.strip_prefix(root).unwrap_or(&file.path).to_path_buf();
        for (needle, count) in counts.into_iter().enumerate().filter(|(_, count)| *count > 0) {
            hits.push(FileHit { path: relative.clone(), needle, count });
        }
    }
    Ok(hits)
}

/// Counts each needle in the file at `path`, streaming it; `None` if the file disappeared.
fn count_in_file(path: &Path, needles: &[Vec<u8>]) -> Result<Option<Vec<u64>>, StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("opening a file to scan", path)(e)),
    };
    let mut counter = StreamCounter::new(needles);
    let mut chunk = vec![0; CHUNK_BYTES];
    loop {
        let read = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io("reading a file to scan", path)(e)),
        };
        counter.feed(&chunk[..read]);
    }
    Ok(Some(counter.counts))
}

/// Counts occurrences of several needles in a stream given in chunks. The last bytes of each
/// chunk (one fewer than the longest needle) are carried into the next, so an occurrence that
/// straddles a boundary is found; only occurrences that end in the new bytes are counted, so
/// none is counted twice.
pub(crate) struct StreamCounter<'n> {
    needles: &'n [Vec<u8>],
    /// How many times each needle occurred so far.
    pub(crate) counts: Vec<u64>,
    /// The carried tail, then the current chunk.
    window: Vec<u8>,
    carry: usize,
}

impl<'n> StreamCounter<'n> {
    pub(crate) fn new(needles: &'n [Vec<u8>]) -> StreamCounter<'n> {
        let carry = needles.iter().map(Vec::len).max().unwrap_or(0).saturating_sub(1);
        StreamCounter { needles, counts: vec![0; needles.len()], window: Vec::new(), carry }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let carried = self.window.len();
        self.window.extend_from_slice(chunk);
        for (needle, count) in self.needles.iter().zip(&mut self.counts) {
            // An occurrence starting at `start` ends at `start + len`; it is new when that is
            // past the carried bytes, which were already searched.
            let first_new_start = (carried + 1).saturating_sub(needle.len());
            *count += occurrences(&self.window, needle, first_new_start);
        }
        let keep = self.window.len().min(self.carry);
        self.window.drain(..self.window.len() - keep);
    }
}

/// How many times `needle` occurs in `haystack` starting at or after `from`, overlapping ones
/// included. An empty needle occurs nowhere.
fn occurrences(haystack: &[u8], needle: &[u8], from: usize) -> u64 {
    if needle.is_empty() || haystack.len() < needle.len() {
        return 0;
    }
    let last_start = haystack.len() - needle.len();
    (from..=last_start).filter(|&start| haystack[start..].starts_with(needle)).count() as u64
}

/// Whether `needle` occurs in `haystack`. An empty needle occurs nowhere.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in chunks of `chunk` bytes and compares with a count over the whole.
    fn check(stream: &[u8], needles: &[&[u8]], chunk: usize, expected: &[u64]) {
        let needles: Vec<Vec<u8>> = needles.iter().map(|n| n.to_vec()).collect();
        let mut counter = StreamCounter::new(&needles);
        for piece in stream.chunks(chunk) {
            counter.feed(piece);
        }
        assert_eq!(counter.counts, expected, "stream {stream:?} in chunks of {chunk}");
    }

    #[test]
    fn occurrences_are_counted_once_whatever_the_chunk_boundaries() {
        for chunk in 1..=12 {
            check(b"xxabcxxabcabc", &[b"abc", b"x", b"cxxa", b""], chunk, &[3, 4, 1, 0]);
            check(b"aaaa", &[b"aa", b"aaa", b"aaaaa"], chunk, &[3, 2, 0]);
            check(b"marker", &[b"marker", b"ker", b"m"], chunk, &[1, 1, 1]);
        }
    }

    #[test]
    fn contains_needs_a_non_empty_needle() {
        assert!(contains(b"org acme-marker here", b"acme-marker"));
        assert!(!contains(b"org acme here", b"acme-marker"));
        assert!(!contains(b"anything", b""));
    }
}
