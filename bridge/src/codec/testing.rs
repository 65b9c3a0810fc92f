//! Encoders that produce what Discord puts on the wire: used by the gateway
//! simulator and by tests.

use flate2::{Compress, Compression as Level, FlushCompress};
use zstd::stream::raw::{Encoder as RawEncoder, InBuffer, Operation, OutBuffer};

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
