//! Hostile archives, generated in code, for the tests of this crate and of the import path, and
//! as fuzz seeds. Where the zip writer cannot produce a case (lying headers, symlinks, overlaps,
//! foreign methods), the ZIP bytes are built by hand; bombs stay small on disk because they are
//! deflate streams of zeros.
//!
//! Each case name says what it is; `tests/corpus.rs` holds the error each must get.

use crate::{write_archive, AppArchive, Limits, Manifest, SlotManifest, FORMAT_VERSION};
use std::collections::BTreeMap;

const MIB: usize = 1024 * 1024;

/// A valid archive: two slots (one bound), a definition and two assets.
pub fn valid_archive() -> Vec<u8> {
    write_archive(&valid_app(), &Limits::default()).expect("the sample app is valid")
}

/// The app inside [`valid_archive`].
pub fn valid_app() -> AppArchive {
    AppArchive {
        manifest: sample_manifest(),
        definition: br#"{"entry":"greet","steps":{"greet":{"say":"Hello","next":"route"},"route":{"dial":{"slot":"main_line"}}}}"#.to_vec(),
        assets: BTreeMap::from([
            ("img/logo.svg".to_string(), b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec()),
            ("prompts/en.txt".to_string(), b"Welcome to support.\n".to_vec()),
        ]),
    }
}

fn sample_manifest() -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        app_name: "Support line".into(),
        app_version: 3,
        source_org_id: "eu-01kb0000000000000000000000".into(),
        source_region: "eu".into(),
        exported_at_ms: 1_790_000_000_000,
        slots: vec![
            SlotManifest {
                name: "crm".into(),
                kind: "integration:salesforce".into(),
                bound_resource_name: Some("Main CRM".into()),
            },
            SlotManifest { name: "main_line".into(), kind: "phone_number".into(), bound_resource_name: None },
        ],
    }
}

/// Every hostile case: (name, archive bytes).
pub fn hostile_archives() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases = vec![
        ("path_escape", with_asset_named(b"../x", b"x")),
        ("path_escape_inside_assets", with_asset_named(b"assets/../../x", b"x")),
        ("absolute_path", with_asset_named(b"/etc/x", b"x")),
        ("backslash_path", with_asset_named(b"assets\\..\\x", b"x")),
        ("drive_letter", with_asset_named(b"C:/x", b"x")),
        ("nul_in_name", with_asset_named(b"assets/a\0.txt", b"x")),
        ("not_utf8_name", with_asset_named(b"assets/\xff.txt", b"x")),
        ("directory_entry", with_asset_named(b"assets/dir/", b"")),
        ("unknown_top_level_entry", with_asset_named(b"run.sh", b"#!/bin/sh")),
        ("symlink", symlink()),
        ("too_many_entries", too_many_entries(65)),
        ("entries_100k_zip64", entries_100k()),
        ("ratio_bomb", ratio_bomb()),
        ("declared_1gib_of_zeros", declared_gib_of_zeros()),
        ("overlapping_entry_bomb", overlapping_entry_bomb()),
        ("overlapping_entry_extends_over_next", overlap_extends()),
        ("lying_size_declared_small", lying_declared_small()),
        ("lying_size_declared_big", lying_declared_big()),
        ("encrypted_entry", with_entry(Raw::stored(b"assets/secret.txt", b"x").flags(1))),
        ("bzip2_method", with_entry(Raw::stored(b"assets/b.txt", b"BZh9").method(12))),
        ("nested_zip_by_name", with_asset_named(b"assets/inner.zip", b"not really")),
        ("nested_zip_by_content", with_asset_named(b"assets/inner.bin", &valid_archive())),
        ("truncated_in_central_directory", truncated()),
        ("truncated_end_record_kept", truncated_keeping_end_record()),
        ("duplicate_names", duplicate(b"assets/a.txt", b"assets/a.txt")),
        ("case_colliding_names", duplicate(b"assets/Logo.svg", b"assets/logo.svg")),
        ("missing_manifest", missing_manifest()),
        ("bad_format_version", bad_format_version()),
        ("manifest_not_json", with_manifest(b"{\"format_version\": 1,")),
        ("manifest_unknown_field", unknown_manifest_field()),
        ("definition_not_json", definition_not_json()),
        ("crc_mismatch", crc_mismatch()),
        ("not_a_zip", b"this is not a zip archive at all, just text".to_vec()),
        ("empty", Vec::new()),
    ];
    cases.push(("too_large", too_large()));
    cases
}

/// One entry as it will be written, every header field settable (including lies).
#[derive(Clone)]
struct Raw {
    name: Vec<u8>,
    method: u16,
    flags: u16,
    crc: u32,
    data: Vec<u8>,
    compressed_size: u32,
    uncompressed_size: u32,
    version_made_by: u16,
    external_attrs: u32,
    /// Point the central record at an earlier entry's local header instead of writing one.
    shared_offset_of: Option<usize>,
}

impl Raw {
    fn stored(name: &[u8], content: &[u8]) -> Raw {
        Raw {
            name: name.to_vec(),
            method: 0,
            flags: 0,
            crc: crc32(content),
            data: content.to_vec(),
            compressed_size: len32(content),
            uncompressed_size: len32(content),
            version_made_by: 20,
            external_attrs: 0,
            shared_offset_of: None,
        }
    }

    /// `content` deflated by `deflate` (one of the hand-built encoders below).
    fn deflated(name: &[u8], content: &[u8], deflate: impl Fn(&[u8]) -> Vec<u8>) -> Raw {
        let data = deflate(content);
        Raw { compressed_size: len32(&data), data, method: 8, ..Raw::stored(name, content) }
    }

    fn flags(mut self, flags: u16) -> Raw {
        self.flags = flags;
        self
    }

    fn method(mut self, method: u16) -> Raw {
        self.method = method;
        self
    }
}

fn zeros(content: &[u8]) -> Vec<u8> {
    debug_assert!(content.iter().all(|&b| b == 0));
    deflate_zeros(content.len())
}

fn len32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).expect("corpus entries are small")
}

/// CRC-32 (IEEE), table-driven: a few lines, and the corpus needs no dependency for it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (n, slot) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
        *slot = c;
    }
    !bytes.iter().fold(!0u32, |crc, &b| table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8))
}

/// Deflate's bit order: values LSB first, Huffman codes MSB first.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    len: u32,
}

impl Bits {
    fn new() -> Bits {
        Bits { out: Vec::new(), acc: 0, len: 0 }
    }

    fn value(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.len;
        self.len += bits;
        while self.len >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.len -= 8;
        }
    }

    fn code(&mut self, code: u32, bits: u32) {
        let reversed = code.reverse_bits() >> (32 - bits);
        self.value(reversed, bits);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A deflate stream of `count` zeros in one fixed-Huffman block: a literal zero, then
/// "repeat 258 bytes from distance 1" in 13 bits each (about 160:1), built without a compressor.
fn deflate_zeros(count: usize) -> Vec<u8> {
    let mut bits = Bits::new();
    bits.value(1, 1); // final block
    bits.value(1, 2); // fixed Huffman codes
    let literal_zero = |bits: &mut Bits| bits.code(0x30, 8);
    if count > 0 {
        literal_zero(&mut bits);
        let rest = count - 1;
        for _ in 0..rest / 258 {
            bits.code(0xC5, 8); // length symbol 285: 258 bytes
            bits.code(0, 5); // distance symbol 0: distance 1
        }
        for _ in 0..rest % 258 {
            literal_zero(&mut bits);
        }
    }
    bits.code(0, 7); // end of block
    bits.finish()
}

/// A deflate stream of stored (uncompressed) blocks: `content` at a ratio of 1.
fn deflate_stored(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 65_535 * 5 + 5);
    let mut chunks = content.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none())); // BFINAL, BTYPE 00, aligned
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// Lays the entries out: local headers and data, then the central directory, then its end.
fn build(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(first) = entry.shared_offset_of {
            offsets.push(offsets[first]);
            continue;
        }
        offsets.push(len32(&out));
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        put16(&mut out, 20);
        put16(&mut out, entry.flags);
        put16(&mut out, entry.method);
        put16(&mut out, 0); // time 00:00
        put16(&mut out, 0x21); // date 1980-01-01
        put32(&mut out, entry.crc);
        put32(&mut out, entry.compressed_size);
        put32(&mut out, entry.uncompressed_size);
        put16(&mut out, entry.name.len() as u16);
        put16(&mut out, 0);
        out.extend_from_slice(&entry.name);
        out.extend_from_slice(&entry.data);
    }
    let cd_offset = len32(&out);
    for (entry, offset) in entries.iter().zip(&offsets) {
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        put16(&mut out, entry.version_made_by);
        put16(&mut out, 20);
        put16(&mut out, entry.flags);
        put16(&mut out, entry.method);
        put16(&mut out, 0);
        put16(&mut out, 0x21);
        put32(&mut out, entry.crc);
        put32(&mut out, entry.compressed_size);
        put32(&mut out, entry.uncompressed_size);
        put16(&mut out, entry.name.len() as u16);
        put16(&mut out, 0); // extra
        put16(&mut out, 0); // comment
        put16(&mut out, 0); // disk
        put16(&mut out, 0); // internal attributes
        put32(&mut out, entry.external_attrs);
        put32(&mut out, *offset);
        out.extend_from_slice(&entry.name);
    }
    let cd_size = len32(&out) - cd_offset;
    end_record(&mut out, entries.len() as u16, cd_size, cd_offset);
    out
}

fn end_record(out: &mut Vec<u8>, count: u16, cd_size: u32, cd_offset: u32) {
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    put16(out, 0);
    put16(out, 0);
    put16(out, count);
    put16(out, count);
    put32(out, cd_size);
    put32(out, cd_offset);
    put16(out, 0);
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn manifest_json() -> Vec<u8> {
    serde_json::to_vec_pretty(&sample_manifest()).expect("manifest json")
}

/// A valid manifest and definition, then `entry`.
fn with_entry(entry: Raw) -> Vec<u8> {
    build(&[Raw::stored(b"manifest.json", &manifest_json()), Raw::stored(b"definition.json", b"{}"), entry])
}

fn with_asset_named(name: &[u8], content: &[u8]) -> Vec<u8> {
    with_entry(Raw::stored(name, content))
}

fn with_manifest(manifest: &[u8]) -> Vec<u8> {
    build(&[Raw::stored(b"manifest.json", manifest), Raw::stored(b"definition.json", b"{}")])
}

fn symlink() -> Vec<u8> {
    let mut link = Raw::stored(b"assets/passwd", b"/etc/passwd");
    link.version_made_by = (3 << 8) | 30; // Unix
    link.external_attrs = 0o120_777 << 16; // S_IFLNK | rwxrwxrwx
    with_entry(link)
}

fn too_many_entries(count: usize) -> Vec<u8> {
    let mut entries = vec![Raw::stored(b"manifest.json", &manifest_json()), Raw::stored(b"definition.json", b"{}")];
    for index in 0..count {
        entries.push(Raw::stored(format!("assets/{index}.txt").as_bytes(), b"x"));
    }
    build(&entries)
}

/// A zip64 end record claiming 100,000 entries; the classic end record says "see zip64".
fn entries_100k() -> Vec<u8> {
    let mut out = Vec::new();
    let record = out.len() as u64;
    out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
    put64(&mut out, 44); // size of the rest of the record
    put16(&mut out, 45);
    put16(&mut out, 45);
    put32(&mut out, 0);
    put32(&mut out, 0);
    put64(&mut out, 100_000);
    put64(&mut out, 100_000);
    put64(&mut out, 100_000 * 46);
    put64(&mut out, 0);
    out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
    put32(&mut out, 0);
    put64(&mut out, record);
    put32(&mut out, 1);
    end_record(&mut out, u16::MAX, u32::MAX, u32::MAX);
    out
}

/// 1 MiB of zeros, honestly declared, deflated to about a kilobyte: under the size limits, far
/// over the ratio.
fn ratio_bomb() -> Vec<u8> {
    with_entry(Raw::deflated(b"assets/zeros.bin", &vec![0; MIB], zeros))
}

/// A deflate stream of 8 MiB of zeros (about 8 KiB) whose headers declare 1 GiB.
fn declared_gib_of_zeros() -> Vec<u8> {
    let mut entry = Raw::deflated(b"assets/zeros.bin", &vec![0; 8 * MIB], zeros);
    entry.uncompressed_size = 1 << 30;
    with_entry(entry)
}

/// One deflated stream of zeros, and 32 central records pointing at it.
fn overlapping_entry_bomb() -> Vec<u8> {
    let mut entries = vec![
        Raw::stored(b"manifest.json", &manifest_json()),
        Raw::stored(b"definition.json", b"{}"),
        Raw::deflated(b"assets/0.bin", &vec![0; 60 * 1024], zeros),
    ];
    for index in 1..32 {
        let mut again = entries[2].clone();
        again.name = format!("assets/{index}.bin").into_bytes();
        again.shared_offset_of = Some(2);
        entries.push(again);
    }
    build(&entries)
}

/// The first asset's compressed size covers the second asset's local header and data.
fn overlap_extends() -> Vec<u8> {
    let first = Raw::stored(b"assets/a.txt", b"aaaa");
    let second = Raw::stored(b"assets/b.txt", b"bbbb");
    let mut bytes = build(&[
        Raw::stored(b"manifest.json", &manifest_json()),
        Raw::stored(b"definition.json", b"{}"),
        first,
        second,
    ]);
    // the third central record: patch its compressed size (offset 20 in the record)
    let grown = 4 + 30 + 12 + 4;
    patch_central(&mut bytes, 2, 20, grown);
    bytes
}

/// Sets a u32 field of the `index`-th central record.
fn patch_central(bytes: &mut [u8], index: usize, field: usize, value: u32) {
    let eocd = bytes.len() - 22;
    let cd = u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().expect("4 bytes")) as usize;
    let mut at = cd;
    for _ in 0..index {
        let len = |o: usize| usize::from(u16::from_le_bytes([bytes[at + o], bytes[at + o + 1]]));
        at += 46 + len(28) + len(30) + len(32);
    }
    bytes[at + field..at + field + 4].copy_from_slice(&value.to_le_bytes());
}

/// Declares 1 KiB, decompresses to 192 KiB (at ratio 1, so the ratio check cannot be what
/// stops it).
fn lying_declared_small() -> Vec<u8> {
    let text: Vec<u8> = (0..192 * 1024u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz"[(i.wrapping_mul(2_654_435_761) >> 27) as usize % 26])
        .collect();
    let mut entry = Raw::deflated(b"assets/text.txt", &text, deflate_stored);
    entry.uncompressed_size = 1024;
    with_entry(entry)
}

/// Declares 5000 bytes, holds 5 (with the right CRC).
fn lying_declared_big() -> Vec<u8> {
    let mut entry = Raw::stored(b"assets/hello.txt", b"hello");
    entry.uncompressed_size = 5000;
    with_entry(entry)
}

/// The valid archive cut in the middle of its central directory.
fn truncated() -> Vec<u8> {
    let mut bytes = valid_archive();
    let cd = central_directory_offset(&bytes);
    bytes.truncate(cd + (bytes.len() - cd) / 2);
    bytes
}

/// The valid archive with a chunk of its central directory cut out, its end record kept.
fn truncated_keeping_end_record() -> Vec<u8> {
    let bytes = valid_archive();
    let cd = central_directory_offset(&bytes);
    let end = bytes.len() - 22;
    let mut out = bytes[..cd + (end - cd) / 2].to_vec();
    out.extend_from_slice(&bytes[end..]);
    out
}

fn central_directory_offset(bytes: &[u8]) -> usize {
    let eocd = bytes.len() - 22;
    u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().expect("4 bytes")) as usize
}

fn duplicate(first: &[u8], second: &[u8]) -> Vec<u8> {
    build(&[
        Raw::stored(b"manifest.json", &manifest_json()),
        Raw::stored(b"definition.json", b"{}"),
        Raw::stored(first, b"one"),
        Raw::stored(second, b"two"),
    ])
}

fn missing_manifest() -> Vec<u8> {
    build(&[Raw::stored(b"definition.json", b"{}")])
}

/// A manifest from a newer format (version 2, with a field version 1 does not know).
fn bad_format_version() -> Vec<u8> {
    let mut manifest = serde_json::to_value(sample_manifest()).expect("manifest value");
    manifest["format_version"] = 2.into();
    manifest["signature"] = "added in version 2".into();
    with_manifest(&serde_json::to_vec(&manifest).expect("json"))
}

fn unknown_manifest_field() -> Vec<u8> {
    let mut manifest = serde_json::to_value(sample_manifest()).expect("manifest value");
    manifest["resource_ids"] = serde_json::json!(["us-01k..."]);
    with_manifest(&serde_json::to_vec(&manifest).expect("json"))
}

/// An asset whose bytes do not match its CRC (a flipped byte in transit).
fn crc_mismatch() -> Vec<u8> {
    let mut entry = Raw::stored(b"assets/a.txt", b"hello");
    entry.crc ^= 1;
    with_entry(entry)
}

fn definition_not_json() -> Vec<u8> {
    build(&[Raw::stored(b"manifest.json", &manifest_json()), Raw::stored(b"definition.json", b"<app/>")])
}

/// 9 MiB stored: over the archive limit before anything is parsed (the CRC is left 0: the size
/// alone must refuse it).
fn too_large() -> Vec<u8> {
    let mut entry = Raw::stored(b"assets/big.bin", b"");
    entry.data = vec![0x55; 9 * MIB];
    entry.compressed_size = len32(&entry.data);
    entry.uncompressed_size = entry.compressed_size;
    with_entry(entry)
}
