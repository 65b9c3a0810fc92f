//! `zstd-stream`: one zstd frame per connection, flushed (never ended) after
//! each payload, so every WebSocket message decompresses to one payload.

use zstd::stream::raw::{Decoder as RawDecoder, InBuffer, Operation, OutBuffer};

use super::{CodecError, Frame, RETAIN_BYTES};

const MIN_GROW: usize = 16 * 1024;

/// Decompressor of one `zstd-stream` connection.
pub struct ZstdStream {
    decoder: RawDecoder<'static>,
    out: Vec<u8>,
    max_payload: usize,
    /// One message inflating past this is refused (see [`super::ceiling`]).
    ceiling: usize,
}

impl ZstdStream {
    /// A new context; payloads above `max_payload` bytes are discarded, and
    /// a message inflating past `ceiling` bytes is an error.
    ///
    /// # Errors
    /// zstd could not allocate a context.
    pub fn new(max_payload: usize, ceiling: usize) -> Result<Self, CodecError> {
        let decoder = RawDecoder::new().map_err(|e| CodecError::Zstd(e.to_string()))?;
        Ok(Self {
            decoder,
            out: Vec::with_capacity(MIN_GROW),
            max_payload,
            ceiling: ceiling.max(max_payload),
        })
    }

    /// Capacity of the output buffer, for the memory-bound tests.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.out.capacity()
    }

    /// Feeds one WebSocket message.
    ///
    /// # Errors
    /// The stream is corrupt.
    pub fn push(&mut self, message: &[u8]) -> Result<Frame<'_>, CodecError> {
        if self.out.capacity() > RETAIN_BYTES {
            self.out = Vec::with_capacity(MIN_GROW);
        }
        self.out.clear();
        let mut input = InBuffer::around(message);
        let mut discarded = 0usize;
        loop {
            if self.out.len() == self.out.capacity() {
                if self.out.len() > self.max_payload {
                    discarded = discarded.saturating_add(self.out.len());
                    self.out.clear();
                    if discarded > self.ceiling {
                        return Err(CodecError::Bomb {
                            ceiling: self.ceiling,
                        });
                    }
                } else {
                    let room = self
                        .out
                        .len()
                        .max(MIN_GROW)
                        .min(self.max_payload.saturating_add(1) - self.out.len());
                    self.out.reserve(room.max(1));
                }
            }
            let start = self.out.len();
            let mut output = OutBuffer::around_pos(&mut self.out, start);
            self.decoder
                .run(&mut input, &mut output)
                .map_err(|e| CodecError::Zstd(e.to_string()))?;
            let full = output.pos() == output.capacity();
            if input.pos() == message.len() && !full {
                break;
            }
        }
        let size = discarded.saturating_add(self.out.len());
        if size > self.max_payload {
            Ok(Frame::Oversized { size })
        } else {
            Ok(Frame::Payload(&self.out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use discord_gateway_sim::compress::ZstdEncoder;

    #[test]
    fn each_message_is_one_payload() {
        let mut enc = ZstdEncoder::new().unwrap();
        let mut z = ZstdStream::new(1 << 20, 1 << 30).unwrap();
        for payload in [
            &br#"{"op":10}"#[..],
            br#"{"op":11}"#,
            br#"{"op":0,"t":"X"}"#,
        ] {
            let bytes = enc.encode(payload).unwrap();
            assert_eq!(z.push(&bytes), Ok(Frame::Payload(payload)));
        }
    }

    #[test]
    fn oversized_payload_is_dropped_and_the_stream_stays_in_sync() {
        let mut enc = ZstdEncoder::new().unwrap();
        let mut z = ZstdStream::new(10_000, 1 << 30).unwrap();
        let big = "z".repeat(300_000);
        let bytes = enc.encode(big.as_bytes()).unwrap();
        assert_eq!(z.push(&bytes), Ok(Frame::Oversized { size: big.len() }));
        let bytes = enc.encode(b"{}").unwrap();
        assert_eq!(z.push(&bytes), Ok(Frame::Payload(&b"{}"[..])));
    }

    #[test]
    fn corrupt_stream_is_an_error() {
        let mut z = ZstdStream::new(1 << 20, 1 << 30).unwrap();
        assert!(matches!(
            z.push(b"definitely not zstd"),
            Err(CodecError::Zstd(_))
        ));
    }
}
