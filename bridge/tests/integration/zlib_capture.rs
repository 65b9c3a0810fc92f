//! The zlib-stream decoder against a real Discord wire capture (three frames
//! of one connection, DiscordBM test data; see fixtures/corpus/MANIFEST.json).

use discord_bridge::codec::{Compression, Decoder, Frame};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/corpus/zlib-stream/discordbm-capture"
);

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn real_capture_inflates_byte_identical() {
    let mut decoder = Decoder::new(Compression::ZlibStream, 1 << 20).unwrap();
    for i in 0..3 {
        let frame = read(&format!("frame_{i:03}.bin"));
        assert!(frame.ends_with(&[0, 0, 0xff, 0xff]));
        let expected = read(&format!("decoded_{i:03}.json"));
        match decoder.binary(&frame).unwrap() {
            Some(Frame::Payload(p)) => assert_eq!(p, &expected[..], "frame {i}"),
            other => panic!("frame {i}: {other:?}"),
        }
    }
}

#[test]
fn real_capture_split_into_small_messages() {
    // The same bytes delivered a few at a time still yield the same payloads.
    let mut decoder = Decoder::new(Compression::ZlibStream, 1 << 20).unwrap();
    for i in 0..3 {
        let frame = read(&format!("frame_{i:03}.bin"));
        let expected = read(&format!("decoded_{i:03}.json"));
        let chunks: Vec<&[u8]> = frame.chunks(97).collect();
        for chunk in &chunks[..chunks.len() - 1] {
            assert_eq!(decoder.binary(chunk).unwrap(), None);
        }
        let last = decoder.binary(chunks[chunks.len() - 1]).unwrap();
        assert_eq!(last, Some(Frame::Payload(&expected[..])), "frame {i}");
    }
}

#[test]
fn frames_out_of_order_are_corrupt() {
    // Skipping the first frame loses the zlib header and the shared window.
    let mut decoder = Decoder::new(Compression::ZlibStream, 1 << 20).unwrap();
    assert!(decoder.binary(&read("frame_001.bin")).is_err());
}
