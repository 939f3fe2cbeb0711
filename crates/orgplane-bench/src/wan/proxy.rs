//! A latency-injecting TCP proxy: the WAN link between a router and another region's node, since
//! `tc netem` is not available here.
//!
//! Each direction of a proxied connection is a delay line, not a queue of sleeps: every chunk
//! read is stamped with `read time + one-way delay` and written out when that time comes, while
//! the reader keeps reading. A stream of chunks therefore arrives shifted by one delay, not by
//! one delay per chunk, and throughput is kept (up to [`SEGMENTS_IN_FLIGHT`] chunks in flight per
//! direction). End of stream and failures travel the same line: a half-close is delivered as a
//! half-close after the delay, and a read error tears the whole connection down once the data
//! read before it has been delivered.
//!
//! Tokio's timer has millisecond resolution, so each delivery may come up to about 1 ms late.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

/// The most bytes one read takes off a socket.
const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks one direction holds in its delay line before the reader waits for the writer: with
/// [`CHUNK_BYTES`] this bounds the memory of a direction at 64 MiB, far above what gRPC's
/// flow-control windows let a peer send within one delay.
pub const SEGMENTS_IN_FLIGHT: usize = 1024;

/// How long the accept loop waits after a failed accept (for example, out of file descriptors)
/// before it tries again, so a persistent failure does not spin a core.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// A one-way delay that can be changed while connections are open: the next chunk read takes
/// the new value (chunks already in the line keep theirs, and order is kept either way). Clones
/// share the value, so one handle can drive every proxy of a link.
#[derive(Debug, Clone, Default)]
pub struct OneWayDelay(Arc<AtomicU64>);

impl OneWayDelay {
    /// A delay of `delay`.
    pub fn new(delay: Duration) -> OneWayDelay {
        let handle = OneWayDelay::default();
        handle.set(delay);
        handle
    }

    /// The current delay.
    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// Sets the delay of every chunk read from now on. Saturates at about 584 years.
    pub fn set(&self, delay: Duration) {
        self.0.store(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// A running proxy: accepts on a loopback port and relays every connection to one upstream
/// address, each direction delayed by the same [`OneWayDelay`]. Dropping it stops accepting and
/// closes every connection it relays.
pub struct DelayProxy {
    local_addr: SocketAddr,
    upstream: String,
    delay: OneWayDelay,
    /// The accept loop; it owns the connection tasks (a `JoinSet`), so aborting it aborts them.
    accept_task: JoinHandle<()>,
}

impl DelayProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream` (`host:port`). The upstream is
    /// dialled once per accepted connection; if that fails, the accepted connection is closed.
    pub async fn start(upstream: String, delay: OneWayDelay) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local_addr = listener.local_addr()?;
        let span = tracing::debug_span!("bench.wan.proxy", %local_addr, %upstream);
        let accept_task = tokio::spawn(accept_loop(listener, upstream.clone(), delay.clone()).instrument(span));
        Ok(DelayProxy { local_addr, upstream, delay, accept_task })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where connections are relayed to.
    #[cfg(test)]
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The delay of each direction.
    #[cfg(test)]
    pub fn delay(&self) -> &OneWayDelay {
        &self.delay
    }
}

impl fmt::Display for DelayProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} ({:?} each way)", self.local_addr, self.upstream, self.delay.get())
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Accepts connections until aborted, relaying each in a task of its own and reaping finished
/// ones so the set does not grow with every connection ever made.
async fn accept_loop(listener: TcpListener, upstream: String, delay: OneWayDelay) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, peer)) => {
                    let span = tracing::debug_span!("bench.wan.proxy.conn", %peer);
                    connections.spawn(relay(inbound, upstream.clone(), delay.clone()).instrument(span));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Relays one connection until both directions have ended; an error in either ends both (the
/// sockets are closed when this returns).
async fn relay(inbound: TcpStream, upstream: String, delay: OneWayDelay) {
    let outbound = match TcpStream::connect(&upstream).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(error = %e, "cannot reach the upstream; closing the accepted connection");
            return;
        }
    };
    // Small gRPC frames must not wait for Nagle: the delay is the only latency added.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (inbound_read, inbound_write) = inbound.into_split();
    let (outbound_read, outbound_write) = outbound.into_split();
    let result = tokio::try_join!(
        delay_line(inbound_read, outbound_write, delay.clone()),
        delay_line(outbound_read, inbound_write, delay),
    );
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection torn down");
    }
}

/// What one direction's delay line carries.
enum Segment {
    /// Bytes read, to be written in order.
    Data(Vec<u8>),
    /// The reader saw end of stream: half-close the writer.
    Eof,
    /// The reader failed: tear the connection down.
    Failed(io::Error),
}

/// Copies `reader` to `writer`, each chunk written `delay` after it was read. Returns once end
/// of stream has been delivered as a half-close, or with the first error on either side.
async fn delay_line<R, W>(mut reader: R, mut writer: W, delay: OneWayDelay) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (line_in, mut line_out) = mpsc::channel::<(Instant, Segment)>(SEGMENTS_IN_FLIGHT);
    let reading = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let segment = match reader.read(&mut buf).await {
                Ok(0) => Segment::Eof,
                Ok(n) => Segment::Data(buf[..n].to_vec()),
                Err(e) => Segment::Failed(e),
            };
            let last = !matches!(segment, Segment::Data(_));
            let due = Instant::now() + delay.get();
            // A closed line means the writer has failed; it reports why.
            if line_in.send((due, segment)).await.is_err() || last {
                return;
            }
        }
    };
    let writing = async move {
        while let Some((due, segment)) = line_out.recv().await {
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            match segment {
                Segment::Data(bytes) => writer.write_all(&bytes).await?,
                Segment::Eof => return writer.shutdown().await,
                Segment::Failed(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::BrokenPipe, "the delay line's reader stopped without a last segment"))
    };
    tokio::pin!(reading, writing);
    let mut reading_done = false;
    loop {
        tokio::select! {
            () = &mut reading, if !reading_done => reading_done = true,
            result = &mut writing => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::Instant;

    use super::*;

    const ONE_WAY: Duration = Duration::from_millis(50);

    /// How late a round trip may be on a busy shared machine before the test calls it wrong.
    const SLACK: Duration = Duration::from_millis(80);

    /// An echo server: writes back everything it reads, and half-closes after end of stream.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                        let _ = write.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    async fn proxied_echo(delay: Duration) -> (DelayProxy, TcpStream) {
        let proxy = DelayProxy::start(echo_server().await.to_string(), OneWayDelay::new(delay)).await.unwrap();
        let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        client.set_nodelay(true).unwrap();
        (proxy, client)
    }

    /// Sends `message` and waits for its echo; returns the round trip.
    async fn round_trip(client: &mut TcpStream, message: &[u8]) -> Duration {
        let started = Instant::now();
        client.write_all(message).await.unwrap();
        let mut echoed = vec![0; message.len()];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
        started.elapsed()
    }

    #[tokio::test]
    async fn a_round_trip_takes_two_one_way_delays() {
        let (_proxy, mut client) = proxied_echo(ONE_WAY).await;
        for _ in 0..3 {
            let rtt = round_trip(&mut client, b"ping").await;
            assert!(rtt >= 2 * ONE_WAY, "{rtt:?} is shorter than two one-way delays");
            assert!(rtt < 2 * ONE_WAY + SLACK, "{rtt:?} is far above two one-way delays");
        }
    }

    #[tokio::test]
    async fn a_stream_of_chunks_is_shifted_once_not_once_per_chunk() {
        const CHUNKS: u32 = 20;
        let (_proxy, mut client) = proxied_echo(ONE_WAY).await;
        let single = round_trip(&mut client, b"x").await;

        // Chunks 2 ms apart, so the proxy reads them one by one; all are in flight at once.
        let started = Instant::now();
        let (mut read, mut write) = client.split();
        let sending = async {
            let mut pace = tokio::time::interval(Duration::from_millis(2));
            for i in 0..CHUNKS {
                pace.tick().await;
                write.write_all(&[i as u8; 100]).await.unwrap();
            }
        };
        let receiving = async {
            let mut echoed = vec![0; 100 * CHUNKS as usize];
            read.read_exact(&mut echoed).await.unwrap();
            echoed
        };
        let ((), echoed) = tokio::join!(sending, receiving);
        let burst = started.elapsed();
        let expected: Vec<u8> = (0..CHUNKS).flat_map(|i| [i as u8; 100]).collect();
        assert_eq!(echoed, expected, "bytes reordered or lost");
        assert!(burst >= 2 * ONE_WAY, "{burst:?}");
        // Serialized delays would take CHUNKS round trips; a delay line about one, plus the
        // sending time. Compared as a ratio to this machine's own single round trip.
        let ratio = burst.as_secs_f64() / single.as_secs_f64();
        assert!(ratio < 3.0, "{CHUNKS} chunks took {burst:?}, {ratio:.1} single round trips of {single:?}");
    }

    #[tokio::test]
    async fn bulk_data_arrives_whole_and_in_order() {
        let (_proxy, client) = proxied_echo(Duration::from_millis(5)).await;
        let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let (mut read, mut write) = client.into_split();
        let sent = data.clone();
        let sending = tokio::spawn(async move {
            write.write_all(&sent).await.unwrap();
            // Half-close: the echo server sees end of stream only after every byte.
            write.shutdown().await.unwrap();
        });
        let mut echoed = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut echoed))
            .await
            .expect("the echo ends after the half-close")
            .unwrap();
        sending.await.unwrap();
        assert_eq!(echoed.len(), data.len());
        assert!(echoed == data, "bytes reordered or corrupted");
    }

    #[tokio::test]
    async fn a_half_close_reaches_the_upstream_and_the_answer_still_comes_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap().to_string();
        // The upstream reads to end of stream, then answers with the byte count and closes.
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            stream.read_to_end(&mut request).await.unwrap();
            stream.write_all(request.len().to_string().as_bytes()).await.unwrap();
        });
        let proxy = DelayProxy::start(upstream, OneWayDelay::new(Duration::from_millis(10))).await.unwrap();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_string(&mut answer))
            .await
            .expect("the answer and the close come through")
            .unwrap();
        assert_eq!(answer, "5");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_upstream_closes_the_client_connection() {
        // A port that was just free: nothing listens there.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        let proxy = DelayProxy::start(upstream, OneWayDelay::new(ONE_WAY)).await.unwrap();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await.expect("no hang");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_connections_and_its_port() {
        let (proxy, mut client) = proxied_echo(Duration::from_millis(1)).await;
        round_trip(&mut client, b"before").await;
        let addr = proxy.local_addr();
        drop(proxy);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await.expect("no hang");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Once the accept loop is gone, the port refuses new connections.
        assert!(TcpStream::connect(addr).await.is_err(), "the proxy still accepts after being dropped");
    }

    #[tokio::test]
    async fn a_new_delay_applies_to_the_next_chunks() {
        let (proxy, mut client) = proxied_echo(Duration::ZERO).await;
        let fast = round_trip(&mut client, b"a").await;
        proxy.delay().set(ONE_WAY);
        let slow = round_trip(&mut client, b"b").await;
        assert!(slow >= 2 * ONE_WAY, "{slow:?}");
        assert!(fast < slow, "{fast:?} vs {slow:?}");
    }
}
