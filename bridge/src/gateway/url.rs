//! Gateway connection URLs.

use crate::codec::Compression;

/// The gateway API version this bridge speaks.
pub const API_VERSION: u8 = 10;

/// `{base}/?v=10&encoding=json[&compress=…]`. Any query already on `base` is
/// replaced: Discord documents these parameters, and a stale `compress` would
/// desynchronise the decoder.
#[must_use]
pub fn connect_url(base: &str, compression: Compression) -> String {
    let base = base.split(['?', '#']).next().unwrap_or(base);
    let base = base.trim_end_matches('/');
    let mut url = format!("{base}/?v={API_VERSION}&encoding=json");
    if let Some(c) = compression.query_value() {
        url.push_str("&compress=");
        url.push_str(c);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_documented_query() {
        assert_eq!(
            connect_url("wss://gateway.discord.gg", Compression::ZlibStream),
            "wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream"
        );
        assert_eq!(
            connect_url("wss://gateway-us-east1-b.discord.gg/", Compression::None),
            "wss://gateway-us-east1-b.discord.gg/?v=10&encoding=json"
        );
        assert_eq!(
            connect_url(
                "ws://127.0.0.1:9/resume?v=9&compress=x",
                Compression::ZstdStream
            ),
            "ws://127.0.0.1:9/resume/?v=10&encoding=json&compress=zstd-stream"
        );
    }
}
