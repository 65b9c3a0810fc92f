//! Transport compression, without IO: WebSocket messages in, JSON payloads out.
//!
//! Discord compresses a whole connection as one stream (`compress=` in the
//! gateway URL): a `zlib-stream` connection is one deflate stream whose
//! messages each end in a sync flush (`00 00 ff ff`), a `zstd-stream`
//! connection is one zstd frame that is flushed, never ended, after every
//! payload. Either way the decompression context lives as long as the
//! connection and must see every message in order, including ones we then drop
//! for being too large. "Need more bytes" is `Ok(None)`, distinct from
//! "corrupt", which is an error after which the connection must be reset.

mod zlib;
mod zstd_stream;

use std::fmt;
use std::str::FromStr;

pub use zlib::{SYNC_FLUSH, ZlibStream};
pub use zstd_stream::ZstdStream;

/// Transport compression of a gateway connection (`discord.compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// `compress=zstd-stream`.
    ZstdStream,
    /// `compress=zlib-stream` (the default: every Discord client library
    /// supports it, and it saves most of the bandwidth).
    #[default]
    ZlibStream,
    /// No transport compression.
    None,
}

impl Compression {
    /// The `compress` query value, if any.
    #[must_use]
    pub const fn query_value(self) -> Option<&'static str> {
        match self {
            Self::ZstdStream => Some("zstd-stream"),
            Self::ZlibStream => Some("zlib-stream"),
            Self::None => None,
        }
    }

    /// The configuration spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ZstdStream => "zstd-stream",
            Self::ZlibStream => "zlib-stream",
            Self::None => "none",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `discord.compression` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a transport compression (use zstd-stream, zlib-stream or none)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zstd-stream" | "zstd" => Ok(Self::ZstdStream),
            "zlib-stream" | "zlib" => Ok(Self::ZlibStream),
            "none" | "" => Ok(Self::None),
            _ => Err(UnknownCompression(s.to_owned())),
        }
    }
}

/// What one WebSocket message yielded.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete JSON payload.
    Payload(&'a [u8]),
    /// A payload larger than the cap: decompressed (to keep the stream in
    /// sync) and discarded.
    Oversized {
        /// Its decompressed size in bytes.
        size: usize,
    },
}

/// The compressed stream cannot be decoded: the connection must be reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The zlib stream is corrupt.
    #[error("corrupt zlib-stream: {0}")]
    Zlib(String),
    /// The zstd stream is corrupt.
    #[error("corrupt zstd-stream: {0}")]
    Zstd(String),
    /// More than `max` bytes arrived without completing a zlib message.
    #[error("a zlib-stream message grew past {max} bytes without a sync flush")]
    Unterminated {
        /// The limit.
        max: usize,
    },
    /// One message inflated past the ceiling (see [`ceiling`]): a
    /// decompression bomb, not a payload.
    #[error("a message inflated past {ceiling} bytes; treating it as a decompression bomb")]
    Bomb {
        /// The ceiling.
        ceiling: usize,
    },
}

/// Output buffers above this are shrunk back after use, so that one huge
/// GUILD_CREATE does not pin its memory for the rest of the connection.
const RETAIN_BYTES: usize = 1 << 20;

/// The smallest decompression ceiling, whatever the payload cap.
pub const MIN_CEILING: usize = 256 << 20;

/// How much one message may inflate to before the stream is given up:
/// 8 × the payload cap, at least [`MIN_CEILING`].
///
/// A payload above the cap is still inflated (and its bytes thrown away as
/// they come, so memory stays at the cap) because the stream's context must
/// see every byte to stay in sync. Past the ceiling that costs more CPU than
/// any real payload could need — deflate expands up to about 1000:1, so one
/// 64 MiB message could otherwise keep a core busy inflating 64 GB — and the
/// connection is reset instead ([`CodecError::Bomb`]).
#[must_use]
pub const fn ceiling(max_payload: usize) -> usize {
    let c = max_payload.saturating_mul(8);
    if c < MIN_CEILING { MIN_CEILING } else { c }
}

/// The decoder of one connection.
pub struct Decoder {
    kind: Kind,
    max_payload: usize,
}

enum Kind {
    Zlib(ZlibStream),
    Zstd(ZstdStream),
    Plain,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Zlib(_) => "zlib-stream",
            Kind::Zstd(_) => "zstd-stream",
            Kind::Plain => "none",
        };
        f.debug_struct("Decoder")
            .field("kind", &kind)
            .field("max_payload", &self.max_payload)
            .finish()
    }
}

impl Decoder {
    /// A fresh context for a new connection; payloads above `max_payload`
    /// bytes (decompressed) are reported as [`Frame::Oversized`].
    ///
    /// # Errors
    /// Fails only if zstd cannot allocate its context.
    pub fn new(compression: Compression, max_payload: usize) -> Result<Self, CodecError> {
        let kind = match compression {
            Compression::ZlibStream => {
                Kind::Zlib(ZlibStream::new(max_payload, ceiling(max_payload)))
            }
            Compression::ZstdStream => {
                Kind::Zstd(ZstdStream::new(max_payload, ceiling(max_payload))?)
            }
            Compression::None => Kind::Plain,
        };
        Ok(Self { kind, max_payload })
    }

    /// Feeds one binary WebSocket message; `Ok(None)` means the payload
    /// continues in the next message.
    ///
    /// # Errors
    /// A corrupt stream; the connection must then be reset.
    pub fn binary<'a>(&'a mut self, message: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        match &mut self.kind {
            Kind::Zlib(z) => z.push(message),
            Kind::Zstd(z) => z.push(message).map(Some),
            Kind::Plain => Ok(Some(plain(message, self.max_payload))),
        }
    }

    /// Bytes held by the decoder's buffers (their capacity), for the tests
    /// that check a bomb is not buffered.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        match &self.kind {
            Kind::Zlib(z) => z.buffered(),
            Kind::Zstd(z) => z.buffered(),
            Kind::Plain => 0,
        }
    }

    /// A text WebSocket message: never compressed.
    #[must_use]
    pub fn text<'a>(&self, message: &'a [u8]) -> Frame<'a> {
        plain(message, self.max_payload)
    }
}

/// A payload that needed no decompression (a text message, or any message of
/// an uncompressed connection).
#[must_use]
pub fn plain(message: &[u8], max_payload: usize) -> Frame<'_> {
    if message.len() > max_payload {
        Frame::Oversized {
            size: message.len(),
        }
    } else {
        Frame::Payload(message)
    }
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_names() {
        assert_eq!("zstd-stream".parse(), Ok(Compression::ZstdStream));
        assert_eq!("ZLIB-STREAM".parse(), Ok(Compression::ZlibStream));
        assert_eq!("none".parse(), Ok(Compression::None));
        assert!("gzip".parse::<Compression>().is_err());
        assert_eq!(Compression::default().query_value(), Some("zlib-stream"));
        assert_eq!(Compression::None.query_value(), None);
    }

    #[test]
    fn plain_payloads_respect_the_cap() {
        let mut d = Decoder::new(Compression::None, 4).unwrap();
        assert_eq!(d.binary(b"{}"), Ok(Some(Frame::Payload(b"{}"))));
        assert_eq!(
            d.binary(b"{\"a\":1}"),
            Ok(Some(Frame::Oversized { size: 7 }))
        );
        assert_eq!(d.text(b"[1,2,3]"), Frame::Oversized { size: 7 });
    }
}
