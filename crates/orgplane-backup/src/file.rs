//! The backup file (layout in the crate docs): [`BackupWriter`] writes one as the stream
//! arrives; [`verify_backup`] and [`read_backup`] check one, without and with its data.

use std::io::{Read, Seek, SeekFrom, Write};

use crate::error::BackupFileError;
use crate::header::{BackupHeader, FORMAT_VERSION};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"OPBACKUP";
/// Magic, format version and header length.
const PREFIX_LEN: u64 = 16;
/// The data CRC and the file CRC.
const TRAILER_LEN: u64 = 8;
/// A header is a few hundred bytes; a length beyond this is damage, not a header.
const MAX_HEADER_BYTES: u32 = 1024 * 1024;
/// How much is read at a time while checking a file.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What a written or verified backup file holds, besides its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub header: BackupHeader,
    /// CRC-32 of the data bytes.
    pub data_crc32: u32,
    /// The size of the whole file.
    pub file_bytes: u64,
}

/// Writes a backup file as its data arrives: [`BackupWriter::new`] writes the prefix and the
/// header, [`BackupWriter::write_data`] each piece of data, and [`BackupWriter::finish`] checks
/// the data against the checksum the stream ended with and seals the file with both CRCs.
/// A file whose writer did not finish has no valid file CRC, so no reader accepts it.
pub struct BackupWriter<W: Write> {
    out: W,
    header: BackupHeader,
    file_crc: crc32fast::Hasher,
    data_crc: crc32fast::Hasher,
    data_written: u64,
    file_bytes: u64,
}

impl<W: Write> BackupWriter<W> {
    /// Starts a file on `out` with `header`.
    pub fn new(out: W, header: BackupHeader) -> Result<BackupWriter<W>, BackupFileError> {
        let json = serde_json::to_vec(&header)
            .map_err(|e| BackupFileError::Malformed { reason: format!("cannot encode the header: {e}") })?;
        let header_len = u32::try_from(json.len()).ok().filter(|len| *len <= MAX_HEADER_BYTES).ok_or_else(|| {
            BackupFileError::Malformed { reason: format!("a {}-byte header is too large", json.len()) }
        })?;
        let mut writer = BackupWriter {
            out,
            header,
            file_crc: crc32fast::Hasher::new(),
            data_crc: crc32fast::Hasher::new(),
            data_written: 0,
            file_bytes: 0,
        };
        writer.put(MAGIC)?;
        writer.put(&FORMAT_VERSION.to_be_bytes())?;
        writer.put(&header_len.to_be_bytes())?;
        writer.put(&json)?;
        Ok(writer)
    }

    /// Appends data bytes. More than the header announced is refused.
    pub fn write_data(&mut self, data: &[u8]) -> Result<(), BackupFileError> {
        let total = self.data_written + data.len() as u64;
        if total > self.header.data_bytes {
            return Err(BackupFileError::DataLength { got: total, announced: self.header.data_bytes });
        }
        self.data_crc.update(data);
        self.data_written = total;
        self.put(data)
    }

    /// Checks that the data is complete and that its CRC-32 is `stream_data_crc32` (the stream
    /// trailer's), then writes both checksums and flushes. Returns the output (for the caller
    /// to sync) and what the file holds. On a refusal nothing more is written.
    pub fn finish(mut self, stream_data_crc32: u32) -> Result<(W, BackupSummary), BackupFileError> {
        if self.data_written != self.header.data_bytes {
            return Err(BackupFileError::DataLength { got: self.data_written, announced: self.header.data_bytes });
        }
        let data_crc32 = self.data_crc.clone().finalize();
        if data_crc32 != stream_data_crc32 {
            return Err(BackupFileError::ChecksumMismatch {
                what: "streamed data",
                stored: stream_data_crc32,
                computed: data_crc32,
            });
        }
        self.put(&data_crc32.to_be_bytes())?;
        let file_crc32 = self.file_crc.clone().finalize();
        self.put(&file_crc32.to_be_bytes())?;
        self.out.flush().map_err(BackupFileError::io("flushing the backup file"))?;
        let summary = BackupSummary { header: self.header, data_crc32, file_bytes: self.file_bytes };
        Ok((self.out, summary))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), BackupFileError> {
        self.out.write_all(bytes).map_err(BackupFileError::io("writing the backup file"))?;
        self.file_crc.update(bytes);
        self.file_bytes += bytes.len() as u64;
        Ok(())
    }
}

/// Checks a whole backup file, reading it twice and holding none of its data: magic, file
/// checksum, format version, header, length and data checksum.
pub fn verify_backup<R: Read + Seek>(file: R) -> Result<BackupSummary, BackupFileError> {
    read_verified(file, &mut |_| {})
}

/// Checks a whole backup file like [`verify_backup`] and returns its data, which is handed
/// out only once every check passed.
pub fn read_backup<R: Read + Seek>(file: R) -> Result<(BackupSummary, Vec<u8>), BackupFileError> {
    let mut data = Vec::new();
    let summary = read_verified(file, &mut |piece| data.extend_from_slice(piece))?;
    Ok((summary, data))
}

/// The one reader: the magic (so a wrong file is named as such), then the file CRC over
/// everything before it (so no damaged field is believed), then each field in order; data
/// goes to `sink` as it is read.
fn read_verified<R: Read + Seek>(mut file: R, sink: &mut dyn FnMut(&[u8])) -> Result<BackupSummary, BackupFileError> {
    let file_bytes = file.seek(SeekFrom::End(0)).map_err(BackupFileError::io("finding the file's size"))?;
    if file_bytes < PREFIX_LEN + TRAILER_LEN {
        return Err(BackupFileError::NotABackup { reason: format!("{file_bytes} bytes is too short to be one") });
    }
    file.seek(SeekFrom::Start(0)).map_err(BackupFileError::io("rewinding the file"))?;
    let mut magic = [0u8; 8];
    read_exact(&mut file, &mut magic)?;
    if &magic != MAGIC {
        return Err(BackupFileError::NotABackup { reason: "it does not start with OPBACKUP".into() });
    }

    file.seek(SeekFrom::Start(0)).map_err(BackupFileError::io("rewinding the file"))?;
    let mut file_crc = crc32fast::Hasher::new();
    copy_exact(&mut file, file_bytes - 4, &mut |piece| file_crc.update(piece))?;
    let stored = read_u32(&mut file)?;
    let computed = file_crc.finalize();
    if stored != computed {
        return Err(BackupFileError::ChecksumMismatch { what: "file", stored, computed });
    }

    file.seek(SeekFrom::Start(MAGIC.len() as u64)).map_err(BackupFileError::io("rewinding the file"))?;
    let version = read_u32(&mut file)?;
    if version != FORMAT_VERSION {
        return Err(BackupFileError::UnsupportedVersion { found: version, expected: FORMAT_VERSION });
    }
    let header_len = read_u32(&mut file)?;
    if header_len > MAX_HEADER_BYTES || PREFIX_LEN + u64::from(header_len) + TRAILER_LEN > file_bytes {
        return Err(malformed(format!("a {header_len}-byte header does not fit in a {file_bytes}-byte file")));
    }
    let mut header_json = vec![0u8; header_len as usize];
    read_exact(&mut file, &mut header_json)?;
    let header: BackupHeader =
        serde_json::from_slice(&header_json).map_err(|e| malformed(format!("unreadable header: {e}")))?;
    let announced = PREFIX_LEN + u64::from(header_len) + header.data_bytes + TRAILER_LEN;
    if announced != file_bytes {
        return Err(malformed(format!("the file is {file_bytes} bytes, but its header makes it {announced}")));
    }

    let mut data_crc = crc32fast::Hasher::new();
    copy_exact(&mut file, header.data_bytes, &mut |piece| {
        data_crc.update(piece);
        sink(piece);
    })?;
    let stored = read_u32(&mut file)?;
    let data_crc32 = data_crc.finalize();
    if stored != data_crc32 {
        return Err(BackupFileError::ChecksumMismatch { what: "data", stored, computed: data_crc32 });
    }
    Ok(BackupSummary { header, data_crc32, file_bytes })
}

fn malformed(reason: String) -> BackupFileError {
    BackupFileError::Malformed { reason }
}

fn read_exact(file: &mut impl Read, buf: &mut [u8]) -> Result<(), BackupFileError> {
    file.read_exact(buf).map_err(BackupFileError::io("reading the backup file"))
}

fn read_u32(file: &mut impl Read) -> Result<u32, BackupFileError> {
    let mut bytes = [0u8; 4];
    read_exact(file, &mut bytes)?;
    Ok(u32::from_be_bytes(bytes))
}

/// Reads exactly `len` bytes, handing them to `each` a buffer at a time.
fn copy_exact(file: &mut impl Read, len: u64, each: &mut dyn FnMut(&[u8])) -> Result<(), BackupFileError> {
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        read_exact(file, &mut buf[..want])?;
        each(&buf[..want]);
        left -= want as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use orgplane_model::Region;

    use super::*;
    use crate::header::BackupMember;

    fn header(data_bytes: u64) -> BackupHeader {
        BackupHeader {
            region: Region::Eu,
            log_index: 42,
            log_term: 3,
            membership: vec![BackupMember { node_id: 1, address: "10.0.0.1:7000".into(), voter: true }],
            created_at_ms: 1_700_000_000_000,
            data_bytes,
            data_format: "test/1".into(),
            node_id: 1,
        }
    }

    /// A sealed file holding `data`, written in two pieces.
    fn file_with(data: &[u8]) -> Vec<u8> {
        let mut writer = BackupWriter::new(Vec::new(), header(data.len() as u64)).unwrap();
        let (first, second) = data.split_at(data.len() / 2);
        writer.write_data(first).unwrap();
        writer.write_data(second).unwrap();
        let (bytes, summary) = writer.finish(crc32fast::hash(data)).unwrap();
        assert_eq!(summary.file_bytes, bytes.len() as u64);
        bytes
    }

    fn refusal(bytes: Vec<u8>) -> String {
        verify_backup(Cursor::new(bytes)).expect_err("must be refused").to_string()
    }

    /// Re-seals `bytes` with a correct file CRC, to reach the checks behind it.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn round_trip() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = file_with(&data);
        let (summary, read) = read_backup(Cursor::new(bytes.clone())).unwrap();
        assert_eq!(read, data);
        assert_eq!(summary.header, header(data.len() as u64));
        assert_eq!(summary.data_crc32, crc32fast::hash(&data));
        assert_eq!(verify_backup(Cursor::new(bytes)).unwrap(), summary);
        assert_eq!(read_backup(Cursor::new(file_with(&[]))).unwrap().1, Vec::<u8>::new());
    }

    #[test]
    fn every_single_byte_flip_is_refused() {
        let bytes = file_with(b"some state machine bytes");
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x04;
            let error = verify_backup(Cursor::new(damaged)).expect_err("a flipped byte went unnoticed");
            let expected = if at < MAGIC.len() { "not an orgplane backup" } else { "checksum mismatch in the file" };
            assert!(error.to_string().contains(expected), "flip at {at}: {error}");
        }
    }

    #[test]
    fn damage_is_named() {
        let bytes = file_with(b"0123456789");
        assert!(refusal(bytes[..10].to_vec()).contains("too short"));
        assert!(refusal(bytes[..bytes.len() - 1].to_vec()).contains("checksum mismatch"));
        assert!(refusal(b"just some text file, long enough".to_vec()).contains("does not start with OPBACKUP"));

        let mut future = bytes.clone();
        future[11] = 2;
        assert!(refusal(resealed(future)).contains("backup format version 2, but this build reads only version 1"));

        let mut wrong_data = bytes.clone();
        let data_at = bytes.len() - 8 - 3;
        wrong_data[data_at] ^= 1;
        assert!(refusal(resealed(wrong_data)).contains("checksum mismatch in the data"));

        let mut trailing = bytes.clone();
        trailing.insert(bytes.len() - 8, b'!');
        assert!(refusal(resealed(trailing)).contains("its header makes it"));

        let mut huge_header = bytes;
        huge_header[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(refusal(resealed(huge_header)).contains("does not fit"));
    }

    #[test]
    fn the_writer_refuses_data_that_is_not_what_the_stream_announced() {
        let mut writer = BackupWriter::new(Vec::new(), header(4)).unwrap();
        writer.write_data(b"abc").unwrap();
        assert!(matches!(writer.write_data(b"de"), Err(BackupFileError::DataLength { got: 5, announced: 4 })));
        assert!(matches!(writer.finish(0), Err(BackupFileError::DataLength { got: 3, announced: 4 })));

        let mut writer = BackupWriter::new(Vec::new(), header(4)).unwrap();
        writer.write_data(b"abcd").unwrap();
        let wrong = crc32fast::hash(b"abce");
        let error = writer.finish(wrong).expect_err("a wrong trailer checksum");
        assert!(error.to_string().contains("checksum mismatch in the streamed data"), "{error}");
    }
}
