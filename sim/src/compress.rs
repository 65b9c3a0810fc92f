//! Transport compression as Discord sends it, written from Discord's Gateway
//! documentation (not shared with the bridge, whose decoders are tested
//! against these encoders):
//!
//! * `compress=zlib-stream`: one zlib context for the whole connection; each
//!   message is deflated and ended with `Z_SYNC_FLUSH`, so it ends in
//!   `00 00 ff ff` and the client inflates it with the same context;
//! * `compress=zstd-stream`: one zstd stream for the whole connection; each
//!   message is flushed (the frame is never ended) so it decodes whole;
//! * no `compress`: plain text messages.

use std::fmt;

use flate2::{Compress, Compression as Level, FlushCompress};
use zstd::stream::raw::{Encoder as RawEncoder, InBuffer, Operation, OutBuffer};

/// The transport compression a client asked for with `compress=` in the
/// gateway URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No `compress` parameter: text messages.
    None,
    /// `compress=zlib-stream`.
    ZlibStream,
    /// `compress=zstd-stream`.
    ZstdStream,
}

impl Compression {
    /// Parses a `compress` query value as Discord spells it; `None` for a
    /// value Discord does not know (it refuses the connection).
    #[must_use]
    pub fn from_query(value: &str) -> Option<Self> {
        match value {
            "zlib-stream" => Some(Self::ZlibStream),
            "zstd-stream" => Some(Self::ZstdStream),
            _ => None,
        }
    }

    /// The `compress` query value, if any.
    #[must_use]
    pub const fn query_value(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::ZlibStream => Some("zlib-stream"),
            Self::ZstdStream => Some("zstd-stream"),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.query_value().unwrap_or("none"))
    }
}

/// The sending side of a `zlib-stream` connection.
pub struct ZlibEncoder {
    deflate: Compress,
}

impl Default for ZlibEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ZlibEncoder {
    /// A new stream (zlib header on the first message).
    #[must_use]
    pub fn new() -> Self {
        Self {
            deflate: Compress::new(Level::default(), true),
        }
    }

    /// Compresses one payload, ending with a sync flush (`00 00 ff ff`).
    #[must_use]
    pub fn encode(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = self.deflate.total_in();
            // Compressing into a Vec with spare room cannot fail.
            let _ = self
                .deflate
                .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync);
            #[allow(clippy::cast_possible_truncation)]
            let read = (self.deflate.total_in() - before) as usize;
            consumed += read;
            if consumed == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }
}

/// The sending side of a `zstd-stream` connection.
pub struct ZstdEncoder {
    encoder: RawEncoder<'static>,
}

impl ZstdEncoder {
    /// A new stream.
    ///
    /// # Errors
    /// zstd could not allocate a context.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            encoder: RawEncoder::new(3)?,
        })
    }

    /// Compresses one payload and flushes it, leaving the frame open.
    ///
    /// # Errors
    /// zstd reported an error.
    pub fn encode(&mut self, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out: Vec<u8> = Vec::with_capacity(payload.len() / 2 + 128);
        let mut input = InBuffer::around(payload);
        while input.pos() < payload.len() {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(128));
            }
            let pos = out.len();
            let mut output = OutBuffer::around_pos(&mut out, pos);
            self.encoder.run(&mut input, &mut output)?;
        }
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(128));
            }
            let pos = out.len();
            let mut output = OutBuffer::around_pos(&mut out, pos);
            let remaining = self.encoder.flush(&mut output)?;
            if remaining == 0 {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_round_trip() {
        for c in [Compression::ZlibStream, Compression::ZstdStream] {
            let value = c.query_value().unwrap();
            assert_eq!(Compression::from_query(value), Some(c));
            assert_eq!(c.to_string(), value);
        }
        assert_eq!(Compression::None.to_string(), "none");
        assert_eq!(Compression::from_query("gzip"), None);
        assert_eq!(Compression::from_query("zlib"), None);
    }

    #[test]
    fn zlib_messages_end_with_a_sync_flush_and_share_one_context() {
        let mut enc = ZlibEncoder::new();
        let first = enc.encode(br#"{"op":10}"#);
        let second = enc.encode(br#"{"op":11}"#);
        assert_eq!(
            &first[..2],
            &[0x78, 0x9c],
            "zlib header on the first message only"
        );
        for message in [&first, &second] {
            assert!(message.ends_with(&[0, 0, 0xff, 0xff]), "{message:02x?}");
        }
        // The second message alone is no zlib stream: it needs the context.
        assert_ne!(&second[..2], &[0x78, 0x9c]);
        let mut inflate = flate2::Decompress::new(true);
        for (message, expected) in [(first, r#"{"op":10}"#), (second, r#"{"op":11}"#)] {
            let mut out = Vec::with_capacity(256);
            inflate
                .decompress_vec(&message, &mut out, flate2::FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, expected.as_bytes());
        }
    }

    #[test]
    fn zstd_messages_decode_whole_from_one_stream() {
        let mut enc = ZstdEncoder::new().unwrap();
        let mut dec = zstd::stream::raw::Decoder::new().unwrap();
        for payload in [&br#"{"op":10}"#[..], br#"{"op":11}"#, &[b'x'; 100_000]] {
            let bytes = enc.encode(payload).unwrap();
            let mut input = InBuffer::around(&bytes);
            let mut out = vec![0_u8; payload.len() + 64];
            let mut output = OutBuffer::around(&mut out[..]);
            while input.pos() < bytes.len() {
                dec.run(&mut input, &mut output).unwrap();
            }
            let written = output.pos();
            assert_eq!(&out[..written], payload);
        }
    }
}
