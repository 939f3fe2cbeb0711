//! [`BackupStream`]: a region's backup as it arrives, from [`crate::Client::backup`]. It
//! checks the stream's shape as it goes (one header first, data, one trailer last), and hands
//! out the end of the data only once the data's length and CRC-32 match what the node
//! announced, so a caller never mistakes a cut or damaged stream for a whole backup.

use std::time::Duration;

use orgplane_backup::BackupHeader;
use orgplane_proto::v1::{backup_chunk, BackupChunk};
use tonic::{Status, Streaming};

use crate::error::ClientError;

const RPC: &str = "backup";

/// A backup being received: [`BackupStream::header`] says what it is a copy of, and
/// [`BackupStream::next_data`] returns the data a chunk at a time, then `None` once the stream
/// ended and checked out. Each message must arrive within the client's request timeout; the
/// stream as a whole has no deadline (a large region takes as long as it takes).
pub struct BackupStream {
    header: BackupHeader,
    messages: Streaming<BackupChunk>,
    idle: Duration,
    received: u64,
    crc: crc32fast::Hasher,
    /// The trailer's CRC-32, once it arrived and matched.
    data_crc32: Option<u32>,
}

impl BackupStream {
    /// Reads the header, which must be the first message.
    pub(crate) async fn start(
        mut messages: Streaming<BackupChunk>,
        idle: Duration,
    ) -> Result<BackupStream, ClientError> {
        let header = match next_message(&mut messages, idle).await? {
            Some(backup_chunk::Part::Header(header)) => orgplane_proto::conv::parse_backup_header(header)
                .map_err(|e| malformed(format!("unreadable header: {e}")))?,
            Some(_) => return Err(malformed("the stream does not start with a header".into())),
            None => return Err(malformed("the stream ended before its header".into())),
        };
        Ok(BackupStream { header, messages, idle, received: 0, crc: crc32fast::Hasher::new(), data_crc32: None })
    }

    /// What the backup is a copy of.
    pub fn header(&self) -> &BackupHeader {
        &self.header
    }

    /// The next piece of data; `None` once the trailer arrived, the data was exactly as long
    /// as the header said, and its CRC-32 matched the trailer's. Any other end is an error.
    pub async fn next_data(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        if self.data_crc32.is_some() {
            return Ok(None);
        }
        match next_message(&mut self.messages, self.idle).await? {
            Some(backup_chunk::Part::Data(data)) => {
                self.received += data.len() as u64;
                if self.received > self.header.data_bytes {
                    return Err(malformed(format!(
                        "more data than the {} bytes the header announced",
                        self.header.data_bytes
                    )));
                }
                self.crc.update(&data);
                Ok(Some(data))
            }
            Some(backup_chunk::Part::Trailer(trailer)) => {
                if self.received != self.header.data_bytes {
                    return Err(malformed(format!(
                        "the stream ended after {} of the {} data bytes its header announced",
                        self.received, self.header.data_bytes
                    )));
                }
                let computed = self.crc.clone().finalize();
                if computed != trailer.data_crc32 {
                    return Err(malformed(format!(
                        "data checksum mismatch: the trailer says {:08x}, the data is {computed:08x}",
                        trailer.data_crc32
                    )));
                }
                self.data_crc32 = Some(computed);
                if next_message(&mut self.messages, self.idle).await?.is_some() {
                    return Err(malformed("a message follows the trailer".into()));
                }
                Ok(None)
            }
            Some(backup_chunk::Part::Header(_)) => Err(malformed("a second header".into())),
            None => Err(malformed("the stream ended without a trailer".into())),
        }
    }

    /// The data's CRC-32, once [`BackupStream::next_data`] returned `None`.
    pub fn data_crc32(&self) -> Option<u32> {
        self.data_crc32
    }
}

/// The next message's part, waiting at most `idle`; `None` at the end of the stream.
async fn next_message(
    messages: &mut Streaming<BackupChunk>,
    idle: Duration,
) -> Result<Option<backup_chunk::Part>, ClientError> {
    match tokio::time::timeout(idle, messages.message()).await {
        Err(_) => Err(ClientError::status(
            RPC,
            1,
            Status::deadline_exceeded(format!("no backup message within {} ms", idle.as_millis())),
            false,
        )),
        Ok(Err(status)) => {
            let from_transport = std::error::Error::source(&status).is_some();
            Err(ClientError::status(RPC, 1, status, from_transport))
        }
        Ok(Ok(None)) => Ok(None),
        Ok(Ok(Some(BackupChunk { part: Some(part) }))) => Ok(Some(part)),
        Ok(Ok(Some(BackupChunk { part: None }))) => Err(malformed("an empty message".into())),
    }
}

fn malformed(reason: String) -> ClientError {
    ClientError::MalformedResponse { rpc: RPC, reason }
}
