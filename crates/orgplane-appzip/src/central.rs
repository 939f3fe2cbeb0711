//! Our own scan of the end-of-central-directory record, the central directory and the local
//! headers, done before the zip crate sees the archive.
//!
//! Why not trust the zip crate for this: the entry-count limit must hold before it allocates per
//! entry, and the overlap check needs every entry's extent in the file, local header to end of
//! data, which it does not expose as one check we can name in an error. The zip crate's own view
//! is compared with ours entry by entry afterwards (`read`), so the two parsers cannot disagree
//! silently.
//!
//! Zip64 is refused: an app archive is a few MiB with a few dozen entries. Its end record is
//! still read for the entry count, so "100k entries" is refused as too many entries.

use crate::error::ArchiveError;
use crate::Limits;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;

const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_LEN: usize = 20;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;

/// General purpose flag bits.
pub(crate) const FLAG_ENCRYPTED: u16 = 1;
pub(crate) const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
pub(crate) const FLAG_STRONG_ENCRYPTION: u16 = 1 << 6;

/// One central directory record, and where its local header and data lie.
#[derive(Debug, Clone)]
pub(crate) struct CentralEntry {
    pub name: Vec<u8>,
    pub version_made_by: u16,
    pub flags: u16,
    pub method: u16,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub external_attrs: u32,
    /// Start of the local header.
    pub local_offset: u64,
    /// End of the data (and of the data descriptor, if any).
    pub end: u64,
}

/// The scanned archive.
#[derive(Debug)]
pub(crate) struct CentralDirectory {
    pub entries: Vec<CentralEntry>,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

fn truncated(reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Truncated { reason: reason.into() }
}

fn malformed(reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Malformed { reason: reason.into() }
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Finds the end record: the last position whose comment runs exactly to the end of the bytes
/// (a stricter rule than "any signature", so a signature inside a comment cannot be picked).
fn find_eocd(bytes: &[u8]) -> Option<usize> {
    let last = bytes.len().checked_sub(EOCD_LEN)?;
    let first = last.saturating_sub(usize::from(u16::MAX));
    (first..=last).rev().find(|&at| {
        u32_at(bytes, at) == Some(EOCD_SIG)
            && u16_at(bytes, at + 20).map(usize::from) == Some(bytes.len() - at - EOCD_LEN)
    })
}

/// Scans the archive's structure; reads no entry data.
pub(crate) fn scan(bytes: &[u8], limits: &Limits) -> Result<CentralDirectory, ArchiveError> {
    let eocd = find_eocd(bytes)
        .ok_or_else(|| truncated("no end of central directory record (the archive is cut short or not a zip)"))?;
    check_zip64(bytes, eocd, limits)?;

    let field = |off: usize| u16_at(bytes, eocd + off).unwrap_or(0);
    let (disk, cd_disk, on_disk, total) = (field(4), field(6), field(8), field(10));
    let cd_size = u64::from(u32_at(bytes, eocd + 12).unwrap_or(0));
    let cd_offset = u64::from(u32_at(bytes, eocd + 16).unwrap_or(0));
    if usize::from(total) > limits.max_entries || usize::from(on_disk) > limits.max_entries {
        return Err(ArchiveError::TooManyEntries { count: u64::from(total.max(on_disk)), limit: limits.max_entries });
    }
    if disk != 0 || cd_disk != 0 || on_disk != total {
        return Err(malformed("multi-disk archives are not accepted"));
    }
    let cd_end = cd_offset.checked_add(cd_size).ok_or_else(|| malformed("central directory size overflows"))?;
    if cd_end > eocd as u64 {
        return Err(truncated("the central directory runs past the end of central directory record"));
    }
    if cd_end < eocd as u64 {
        return Err(malformed("unexpected bytes between the central directory and its end record"));
    }

    let mut entries = Vec::with_capacity(usize::from(total));
    let mut at = cd_offset as usize;
    for index in 0..usize::from(total) {
        let entry = central_entry(bytes, at, eocd, index)?;
        at = entry.1;
        entries.push(entry.0);
    }
    if at != eocd {
        return Err(malformed("the central directory is longer than its entries"));
    }
    for entry in &mut entries {
        locate(bytes, entry, cd_offset)?;
    }
    check_overlaps(&entries)?;
    for entry in &entries {
        check_local_header(bytes, entry)?;
    }
    Ok(CentralDirectory { entries })
}

/// Zip64: read the real entry count for the limit, then refuse the archive.
fn check_zip64(bytes: &[u8], eocd: usize, limits: &Limits) -> Result<(), ArchiveError> {
    let Some(locator) = eocd.checked_sub(ZIP64_LOCATOR_LEN) else {
        return Ok(());
    };
    if u32_at(bytes, locator) != Some(ZIP64_LOCATOR_SIG) {
        return Ok(());
    }
    let record = u64_at(bytes, locator + 8)
        .and_then(|r| usize::try_from(r).ok())
        .filter(|&r| u32_at(bytes, r) == Some(ZIP64_EOCD_SIG))
        .ok_or_else(|| truncated("the zip64 end of central directory record is missing"))?;
    let on_disk = u64_at(bytes, record + 24).unwrap_or(0);
    let total = u64_at(bytes, record + 32).unwrap_or(0);
    let count = on_disk.max(total);
    if count > limits.max_entries as u64 {
        return Err(ArchiveError::TooManyEntries { count, limit: limits.max_entries });
    }
    Err(ArchiveError::Zip64)
}

/// Parses the central record at `at`; returns it and where the next one starts.
fn central_entry(bytes: &[u8], at: usize, cd_end: usize, index: usize) -> Result<(CentralEntry, usize), ArchiveError> {
    let cut = || truncated(format!("central directory record {index} is cut short"));
    if at.checked_add(CENTRAL_LEN).is_none_or(|end| end > cd_end) {
        return Err(cut());
    }
    if u32_at(bytes, at) != Some(CENTRAL_SIG) {
        return Err(malformed(format!("central directory record {index} has no signature")));
    }
    let u16f = |off: usize| u16_at(bytes, at + off).unwrap_or(0);
    let u32f = |off: usize| u32_at(bytes, at + off).unwrap_or(0);
    let name_len = usize::from(u16f(28));
    let extra_len = usize::from(u16f(30));
    let comment_len = usize::from(u16f(32));
    let next = at + CENTRAL_LEN + name_len + extra_len + comment_len;
    if next > cd_end {
        return Err(cut());
    }
    let name = bytes[at + CENTRAL_LEN..at + CENTRAL_LEN + name_len].to_vec();
    let (compressed, uncompressed, offset) = (u32f(20), u32f(24), u32f(42));
    if [compressed, uncompressed, offset].contains(&u32::MAX) || u16f(34) == u16::MAX {
        return Err(ArchiveError::Zip64);
    }
    if u16f(34) != 0 {
        return Err(malformed("multi-disk archives are not accepted"));
    }
    Ok((
        CentralEntry {
            name,
            version_made_by: u16f(4),
            flags: u16f(8),
            method: u16f(10),
            compressed_size: u64::from(compressed),
            uncompressed_size: u64::from(uncompressed),
            external_attrs: u32f(38),
            local_offset: u64::from(offset),
            end: 0,
        },
        next,
    ))
}

/// Finds the entry's local header and the end of its data (and descriptor); both must lie
/// before the central directory.
fn locate(bytes: &[u8], entry: &mut CentralEntry, cd_offset: u64) -> Result<(), ArchiveError> {
    let into_cd =
        || ArchiveError::OverlappingEntries { name: lossy(&entry.name), other: "the central directory".into() };
    let at = entry.local_offset;
    if at + LOCAL_LEN as u64 > cd_offset {
        return Err(into_cd());
    }
    let at = at as usize;
    if u32_at(bytes, at) != Some(LOCAL_SIG) {
        return Err(malformed(format!("entry {:?} has no local header", lossy(&entry.name))));
    }
    let name_len = u64::from(u16_at(bytes, at + 26).unwrap_or(0));
    let extra_len = u64::from(u16_at(bytes, at + 28).unwrap_or(0));
    let mut end = entry.local_offset + LOCAL_LEN as u64 + name_len + extra_len + entry.compressed_size;
    if entry.flags & FLAG_DATA_DESCRIPTOR != 0 {
        let with_sig =
            usize::try_from(end).ok().and_then(|e| u32_at(bytes, e)).is_some_and(|sig| sig == DESCRIPTOR_SIG);
        end += if with_sig { 16 } else { 12 };
    }
    if end > cd_offset {
        return Err(into_cd());
    }
    entry.end = end;
    Ok(())
}

/// The local header must name the same entry with the same method as the central record (run
/// after the overlap check: it reads the name inside the entry's own, now exclusive, span).
fn check_local_header(bytes: &[u8], entry: &CentralEntry) -> Result<(), ArchiveError> {
    let at = entry.local_offset as usize;
    let name_len = usize::from(u16_at(bytes, at + 26).unwrap_or(0));
    if bytes.get(at + LOCAL_LEN..at + LOCAL_LEN + name_len) != Some(entry.name.as_slice()) {
        return Err(malformed(format!("entry {:?}: the local header names a different entry", lossy(&entry.name))));
    }
    if u16_at(bytes, at + 8) != Some(entry.method) {
        return Err(malformed(format!(
            "entry {:?}: the local header has a different compression method",
            lossy(&entry.name)
        )));
    }
    Ok(())
}

/// No two entries may share bytes: the overlapping-entry bomb points many central records at
/// one compressed stream.
fn check_overlaps(entries: &[CentralEntry]) -> Result<(), ArchiveError> {
    let mut by_start: Vec<&CentralEntry> = entries.iter().collect();
    by_start.sort_by_key(|e| (e.local_offset, e.end));
    for pair in by_start.windows(2) {
        if pair[1].local_offset < pair[0].end {
            return Err(ArchiveError::OverlappingEntries {
                name: lossy(&pair[1].name),
                other: format!("entry {:?}", lossy(&pair[0].name)),
            });
        }
    }
    Ok(())
}
