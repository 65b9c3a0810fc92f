//! `zlib-stream`: one inflate context per connection; a payload is complete
//! when the bytes received so far end with the sync-flush marker.

use flate2::{Decompress, FlushDecompress, Status};

use super::{CodecError, Frame, RETAIN_BYTES};

/// The marker Discord's deflate sync flush leaves at the end of each payload.
pub const SYNC_FLUSH: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest output growth step: most dispatches fit in one.
const MIN_GROW: usize = 16 * 1024;

/// Inflater of one `zlib-stream` connection.
pub struct ZlibStream {
    inflate: Decompress,
    /// Bytes of a payload split over several messages, until its marker.
    pending: Vec<u8>,
    out: Vec<u8>,
    max_payload: usize,
    /// One message inflating past this is refused (see [`super::ceiling`]).
    ceiling: usize,
}

impl ZlibStream {
    /// A new context; payloads above `max_payload` bytes are discarded, and
    /// a message inflating past `ceiling` bytes is an error.
    #[must_use]
    pub fn new(max_payload: usize, ceiling: usize) -> Self {
        Self {
            inflate: Decompress::new(true),
            pending: Vec::new(),
            out: Vec::with_capacity(MIN_GROW),
            max_payload,
            ceiling: ceiling.max(max_payload),
        }
    }

    /// Capacity of the buffers, for the memory-bound tests.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.out.capacity() + self.pending.capacity()
    }

    /// Feeds one WebSocket message.
    ///
    /// # Errors
    /// The stream is corrupt, or a payload never ends.
    pub fn push<'a>(&'a mut self, message: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        if self.out.capacity() > RETAIN_BYTES {
            self.out = Vec::with_capacity(MIN_GROW);
        }
        let input: &[u8] = if self.pending.is_empty() && message.ends_with(&SYNC_FLUSH) {
            message
        } else {
            self.pending.extend_from_slice(message);
            if !self.pending.ends_with(&SYNC_FLUSH) {
                // Compressed data is bounded by the same cap (plus slack for
                // incompressible payloads): an endless payload is corrupt.
                let max = self.max_payload.saturating_add(self.max_payload / 8 + 1024);
                if self.pending.len() > max {
                    self.pending = Vec::new();
                    return Err(CodecError::Unterminated { max });
                }
                return Ok(None);
            }
            &self.pending
        };
        let limits = Limits {
            max: self.max_payload,
            ceiling: self.ceiling,
        };
        let size = inflate_into(&mut self.inflate, input, &mut self.out, limits);
        self.pending.clear();
        if self.pending.capacity() > RETAIN_BYTES {
            self.pending = Vec::new();
        }
        let size = size?;
        if size > self.max_payload {
            Ok(Some(Frame::Oversized { size }))
        } else {
            Ok(Some(Frame::Payload(&self.out)))
        }
    }
}

/// The payload cap and the decompression ceiling of one stream.
#[derive(Clone, Copy)]
struct Limits {
    max: usize,
    ceiling: usize,
}

/// Inflates all of `input` into `out` and returns the decompressed size.
/// Past `max` bytes, output keeps being produced (the context must consume
/// every byte) but is thrown away, so memory stays bounded; past `ceiling`
/// the message is refused.
fn inflate_into(
    inflate: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    Limits { max, ceiling }: Limits,
) -> Result<usize, CodecError> {
    out.clear();
    let mut consumed = 0;
    let mut discarded = 0usize;
    loop {
        if out.len() == out.capacity() {
            if out.len() > max {
                discarded = discarded.saturating_add(out.len());
                out.clear();
                if discarded > ceiling {
                    return Err(CodecError::Bomb { ceiling });
                }
            } else {
                let room = out
                    .len()
                    .max(MIN_GROW)
                    .min(max.saturating_add(1) - out.len());
                out.reserve(room.max(1));
            }
        }
        let before_in = inflate.total_in();
        let before_out = out.len();
        let status = inflate
            .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
            .map_err(|e| CodecError::Zlib(e.to_string()))?;
        // total_in grows by at most input.len(), which fits in usize.
        #[allow(clippy::cast_possible_truncation)]
        let read = (inflate.total_in() - before_in) as usize;
        consumed += read;
        let written = out.len() - before_out;
        if status == Status::StreamEnd {
            // Discord never ends the stream; if a peer does, start afresh so
            // the next payload (a new zlib stream) still decodes.
            inflate.reset(true);
            if consumed < input.len() {
                continue;
            }
        }
        let room_left = out.len() < out.capacity();
        if consumed >= input.len() && room_left {
            break;
        }
        if read == 0 && written == 0 && room_left {
            return Err(CodecError::Zlib(
                "inflate made no progress on the remaining input".into(),
            ));
        }
    }
    Ok(discarded.saturating_add(out.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use discord_gateway_sim::compress::ZlibEncoder;

    impl ZlibStream {
        fn new_capped(max_payload: usize) -> Self {
            Self::new(max_payload, super::super::ceiling(max_payload))
        }
    }

    #[test]
    fn payload_split_over_messages() {
        let mut enc = ZlibEncoder::new();
        let bytes = enc.encode(br#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
        let (a, b) = bytes.split_at(bytes.len() / 2);
        let mut z = ZlibStream::new_capped(1 << 20);
        assert_eq!(z.push(a), Ok(None));
        assert_eq!(
            z.push(b),
            Ok(Some(Frame::Payload(
                &br#"{"op":10,"d":{"heartbeat_interval":41250}}"#[..]
            )))
        );
    }

    #[test]
    fn oversized_payload_is_dropped_and_the_stream_stays_in_sync() {
        let mut enc = ZlibEncoder::new();
        let big = format!(r#"{{"op":0,"d":"{}"}}"#, "x".repeat(200_000));
        let mut z = ZlibStream::new_capped(50_000);
        let first = enc.encode(big.as_bytes());
        assert_eq!(
            z.push(&first),
            Ok(Some(Frame::Oversized { size: big.len() }))
        );
        let second = enc.encode(br#"{"op":11}"#);
        assert_eq!(
            z.push(&second),
            Ok(Some(Frame::Payload(&br#"{"op":11}"#[..])))
        );
    }

    #[test]
    fn corrupt_stream_is_an_error() {
        let mut z = ZlibStream::new_capped(1 << 20);
        let err = z.push(b"this is not zlib\x00\x00\xff\xff").unwrap_err();
        assert!(matches!(err, CodecError::Zlib(_)), "{err:?}");
    }

    #[test]
    fn endless_payload_is_an_error() {
        let mut z = ZlibStream::new_capped(16);
        assert_eq!(z.push(&[1; 10]), Ok(None));
        assert!(matches!(
            z.push(&[1; 2000]),
            Err(CodecError::Unterminated { .. })
        ));
    }

    #[test]
    fn large_payloads_grow_the_buffer_and_it_shrinks_back() {
        let mut enc = ZlibEncoder::new();
        let big = format!(r#"{{"d":"{}"}}"#, "y".repeat(3 << 20));
        let mut z = ZlibStream::new_capped(8 << 20);
        let bytes = enc.encode(big.as_bytes());
        assert_eq!(z.push(&bytes), Ok(Some(Frame::Payload(big.as_bytes()))));
        let small = enc.encode(b"{}");
        assert_eq!(z.push(&small), Ok(Some(Frame::Payload(&b"{}"[..]))));
        assert!(z.out.capacity() <= RETAIN_BYTES);
    }
}
