//! The backup format of a region, in one place: the header a node streams before the data
//! ([`BackupHeader`]), and the file that `orgctl backup` writes and `orgplane restore` reads
//! ([`BackupWriter`], [`verify_backup`], [`read_backup`]).
//!
//! A backup holds one region's state machine (its orgs, members and remembered request ids) as
//! of one Raft log index, as opaque data bytes: the store's snapshot encoding, named by
//! [`BackupHeader::data_format`]. This crate never looks inside them; it frames and
//! checksums them, so it needs neither the store nor protobuf.
//!
//! The file, integers big-endian:
//!
//! ```text
//! offset      size  field
//! 0           8     magic "OPBACKUP"
//! 8           4     format version (FORMAT_VERSION, 1)
//! 12          4     header length H
//! 16          H     header: BackupHeader as JSON (self-describing; `head -c` shows it)
//! 16+H        D     data: D = header.data_bytes bytes, exactly as the node streamed them
//! 16+H+D      4     data CRC-32 (the value the stream's trailer carried)
//! 20+H+D      4     file CRC-32 of every byte before it
//! ```
//!
//! Both checksums are CRC-32 (IEEE 802.3, the polynomial of zlib and gzip). The file CRC is
//! checked first, so any damaged byte anywhere is reported as a checksum mismatch before any
//! field is believed; the data CRC ties the file to what the node sent.
//!
//! Layout: `header` ([`BackupHeader`]), `file` (the writer and the readers), `error`
//! ([`BackupFileError`]).

#![forbid(unsafe_code)]

mod error;
mod file;
mod header;

pub use error::BackupFileError;
pub use file::{read_backup, verify_backup, BackupSummary, BackupWriter, MAGIC};
pub use header::{BackupHeader, BackupMember, FORMAT_VERSION};
