//! Which gateway URLs the bridge may connect to.
//!
//! The bot token travels in IDENTIFY over this connection, and Discord itself
//! tells us where to RESUME (`resume_gateway_url` in READY), so a URL we accept
//! is a URL we may hand the token to. The same rule therefore guards the
//! configured `discord.gateway_url`, the URL from `GET /gateway/bot` and every
//! `resume_gateway_url`. The parser is a strict allow-list (scheme, host
//! characters, optional port) rather than a general URL parser, so that no
//! trick another parser reads differently (userinfo, backslashes, percent
//! escapes) can pass it.

/// The domain whose subdomains serve Discord's gateway.
const DISCORD_GATEWAY_DOMAIN: &str = "discord.gg";

/// The longest gateway URL accepted, in bytes. Discord's are about 40; a
/// `resume_gateway_url` is kept for the session, written to the KV
/// checkpoint and shown in status events, so its length is bounded too.
pub const MAX_GATEWAY_URL: usize = 1024;

/// Checks that `url` is a gateway URL the bridge may send the bot token to.
///
/// Without `allow_insecure` the URL must be `wss://` and its host `discord.gg`
/// or a subdomain of it. With `allow_insecure` (the simulator and tests),
/// `ws://` or `wss://` to any host is accepted. A path and query may follow.
///
/// # Errors
/// A sentence saying which rule the URL breaks, without repeating the URL.
pub fn check_gateway_url(url: &str, allow_insecure: bool) -> Result<(), String> {
    if url.len() > MAX_GATEWAY_URL {
        return Err(format!(
            "is {} bytes long; a gateway URL has at most {MAX_GATEWAY_URL}",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not a URL: expected wss://HOST[:PORT][/PATH]".to_owned());
    };
    let scheme = scheme.to_ascii_lowercase();
    let authority_end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if tail.starts_with('\\') {
        return Err("must not contain a backslash after the host".to_owned());
    }
    if authority.contains('@') {
        return Err("must not contain user information (`user@`) before the host".to_owned());
    }
    let host = parse_host(authority)?;
    if allow_insecure {
        if scheme != "wss" && scheme != "ws" {
            return Err(format!(
                "must use ws:// or wss://, not {scheme}:// (discord.allow_insecure_gateway is on)"
            ));
        }
        return Ok(());
    }
    if scheme != "wss" {
        return Err(format!(
            "must use wss://, not {scheme}://; plain ws:// and other hosts are only for the \
             simulator and tests (discord.allow_insecure_gateway, DISCORD_ALLOW_INSECURE_GATEWAY)"
        ));
    }
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let is_discord = host == DISCORD_GATEWAY_DOMAIN
        || host
            .strip_suffix(DISCORD_GATEWAY_DOMAIN)
            .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1);
    let well_formed = host.split('.').all(|label| {
        !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if !is_discord || !well_formed {
        return Err(format!(
            "host {host:?} is not {DISCORD_GATEWAY_DOMAIN} or a subdomain of it; other hosts are \
             only for the simulator and tests (discord.allow_insecure_gateway, DISCORD_ALLOW_INSECURE_GATEWAY)"
        ));
    }
    Ok(())
}

/// The host of `HOST[:PORT]` or `[IPV6][:PORT]`, checked for allowed characters.
fn parse_host(authority: &str) -> Result<&str, String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "has an unterminated IPv6 address".to_owned())?;
        if ip.is_empty()
            || !ip
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("has an invalid IPv6 address".to_owned());
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| "has text after the IPv6 address".to_owned())?,
            ),
        };
        (ip, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".to_owned());
    }
    if !authority.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err("has characters that are not allowed in a host name".to_owned());
    }
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || port.parse::<u16>().is_err())
    {
        return Err("has an invalid port".to_owned());
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discord_hosts_over_wss_are_accepted() {
        for url in [
            "wss://gateway.discord.gg",
            "wss://gateway.discord.gg/",
            "wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream",
            "wss://us-east1-b.gateway.discord.gg",
            "wss://gateway-us-east1-b.discord.gg:443/?v=10",
            "WSS://Gateway.Discord.GG",
            "wss://discord.gg",
            "wss://gateway.discord.gg.",
        ] {
            assert_eq!(check_gateway_url(url, false), Ok(()), "{url}");
        }
    }

    #[test]
    fn urls_longer_than_the_cap_are_refused() {
        let at_cap = format!(
            "wss://gateway.discord.gg/{}",
            "a".repeat(MAX_GATEWAY_URL - 25)
        );
        assert_eq!(at_cap.len(), MAX_GATEWAY_URL);
        assert_eq!(check_gateway_url(&at_cap, false), Ok(()));
        let long = format!("{at_cap}a");
        for insecure in [false, true] {
            let err = check_gateway_url(&long, insecure).unwrap_err();
            assert!(err.contains("1025 bytes"), "{err}");
        }
    }

    #[test]
    fn everything_else_is_refused_without_allow_insecure() {
        for url in [
            "ws://gateway.discord.gg",
            "https://gateway.discord.gg",
            "wss://discord.gg.evil.com",
            "wss://evil.com",
            "wss://evildiscord.gg",
            "wss://.discord.gg",
            "wss://a..discord.gg",
            "wss://gateway.discord.gg@evil.com",
            "wss://evil.com\\@gateway.discord.gg",
            "wss://evil.com\\.discord.gg",
            "wss://evil.com%2f.discord.gg",
            "wss://evil.com#.discord.gg",
            "wss://evil.com?.discord.gg",
            "wss://gateway.discord.gg:99999",
            "wss://gateway.discord.gg:",
            "wss://gateway.discord.gg :443",
            "wss://127.0.0.1:1234",
            "wss://",
            "gateway.discord.gg",
            "",
            "garbage",
        ] {
            assert!(check_gateway_url(url, false).is_err(), "{url} accepted");
        }
    }

    #[test]
    fn allow_insecure_accepts_ws_and_any_host() {
        for url in [
            "ws://127.0.0.1:1234",
            "ws://localhost:8080/gateway",
            "wss://evil.com",
            "ws://[::1]:9000/?v=10",
            "wss://gateway.discord.gg",
        ] {
            assert_eq!(check_gateway_url(url, true), Ok(()), "{url}");
        }
        for url in [
            "http://127.0.0.1:1234",
            "ws://",
            "ws://user:pw@127.0.0.1",
            "ws://[::1",
            "ws://[::1]x",
            "ws://host:port",
            "garbage",
        ] {
            assert!(check_gateway_url(url, true).is_err(), "{url} accepted");
        }
    }

    #[test]
    fn errors_name_the_setting_that_relaxes_the_rule_and_not_the_url() {
        let err = check_gateway_url("ws://gateway.discord.gg", false).unwrap_err();
        assert!(err.contains("discord.allow_insecure_gateway"), "{err}");
        let err = check_gateway_url("wss://user:hunter2@evil.com", false).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
