//! Validation: every problem at once, cross-key rules, secrets.

use super::*;

#[test]
fn every_problem_is_reported_together() {
    let errors = errors_of(env_only(&[
        ("DISCORD_GATEWAY_INTENTS", "GUILDS,NOT_AN_INTENT"),
        ("DISCORD_GATEWAY_COMPRESSION", "gzip"),
        ("DISCORD_SHARDS", "4/4"),
        ("DISCORD_ALLOW_INSECURE_GATEWAY", "maybe"),
        ("DISCORD_MAX_FRAME_BYTES", "lots"),
        ("DISCORD_API_BASE", "discord.com/api"),
        ("BRIDGE_PUBLISH_MODE", "kafka"),
        ("BRIDGE_STREAM", "has.dot"),
        ("BRIDGE_CAPSULE_ID", "a.*"),
        ("BRIDGE_DUPLICATE_WINDOW_SECS", "60"),
        ("BRIDGE_BUFFER_EVENTS", "0"),
        ("BRIDGE_MAX_INFLIGHT", "0"),
        ("NATS_URL", "http://x:4222"),
        ("BRIDGE_RAW_DISPATCH", "GUILD_CREATE,bad.name"),
    ]));
    assert_eq!(
        keys_of(&errors),
        [
            "discord.intents",
            "discord.api_base",
            "discord.allow_insecure_gateway",
            "discord.compression",
            "discord.shards",
            "discord.max_frame_bytes",
            "nats.url",
            "nats.subject_prefix",
            "nats.publish",
            "nats.stream",
            "nats.raw_dispatch",
            "nats.duplicate_window_secs",
            "nats.buffer_events",
            "nats.max_inflight",
        ]
    );
    let text = ConfigErrors(errors).to_string();
    assert!(
        text.starts_with("invalid configuration (14 problems):"),
        "{text}"
    );
    for var in [
        "DISCORD_GATEWAY_INTENTS",
        "DISCORD_SHARDS",
        "BRIDGE_PUBLISH_MODE",
        "NATS_URL",
    ] {
        assert!(text.contains(var), "{var} missing from {text}");
    }
    assert!(
        text.contains("NOT_AN_INTENT") && text.contains("\"maybe\""),
        "{text}"
    );
}

#[test]
fn cross_key_rules() {
    let dir = empty_dir();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "x").unwrap();
    let cert = cert.display().to_string();
    let errors = errors_of(try_load(
        &[
            ("NATS_USER", "alice"),
            ("NATS_CERT", &cert),
            ("NATS_CA", "/definitely/not/here.pem"),
            ("DISCORD_BACKOFF_BASE_MS", "5000"),
            ("DISCORD_BACKOFF_MAX_MS", "1000"),
        ],
        None,
        dir.path(),
        false,
    ));
    assert_eq!(
        keys_of(&errors),
        [
            "discord.backoff_base_ms",
            "nats.password",
            "nats.tls_ca",
            "nats.tls_key"
        ]
    );
    assert!(errors[2].message.contains("/definitely/not/here.pem"));
    let errors = errors_of(env_only(&[
        ("DISCORD_BACKOFF_BASE_MS", "0"),
        ("NATS_PASSWORD", "pw"),
        ("NATS_TOKEN", "tok"),
    ]));
    assert_eq!(
        keys_of(&errors),
        ["discord.backoff_base_ms", "nats.user", "nats.token"]
    );
    assert!(
        errors[2].message.contains("nats.user/password, nats.token"),
        "{}",
        errors[2]
    );
}

#[test]
fn unknown_and_misplaced_file_keys_name_the_key_and_the_file() {
    let dir = empty_dir();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        "log_level = 3\nnats = 5\n[discord]\ntokn = \"x\"\nintents = 1\n",
    )
    .unwrap();
    let errors = errors_of(try_load(&[], Some(path.clone()), dir.path(), false));
    assert_eq!(keys_of(&errors), ["discord.tokn", "log_level", "nats"]);
    let shown = path.display().to_string();
    assert!(
        errors.iter().all(|e| e.message.contains(&shown)),
        "{errors:?}"
    );
    assert!(errors[0].message.contains("did you mean discord.token?"));
    assert_eq!(
        errors[0].to_string().split(':').next(),
        Some("discord.tokn")
    );
}

#[test]
fn file_values_are_checked_like_variables_and_name_the_file() {
    let dir = empty_dir();
    let path = dir.path().join(DEFAULT_FILE);
    std::fs::write(
        &path,
        "[discord]\ntoken = \"Bot secret-in-the-file\"\nmax_frame_bytes = -1\n\
         allow_insecure_gateway = 2024-01-01\nbackoff_base_ms = 1.5\n\
         [nats]\nstream = \"has.dot\"\nbuffer_events = \"lots\"\nurl = [\"nats://a\", 5]\n",
    )
    .unwrap();
    let errors = errors_of(try_load(
        &[("BRIDGE_MAX_INFLIGHT", "0")],
        None,
        dir.path(),
        true,
    ));
    assert_eq!(
        keys_of(&errors),
        [
            "discord.token",
            "discord.allow_insecure_gateway",
            "discord.max_frame_bytes",
            "discord.backoff_base_ms",
            "nats.url",
            "nats.stream",
            "nats.buffer_events",
            "nats.max_inflight",
        ]
    );
    let set_in = format!("(set in {})", path.display());
    for e in &errors[..7] {
        assert!(e.message.ends_with(&set_in), "{e}");
    }
    // From the environment: the variable is named, no file is.
    assert!(!errors[7].message.contains("set in"), "{}", errors[7]);
    assert!(
        errors[7]
            .to_string()
            .starts_with("nats.max_inflight (BRIDGE_MAX_INFLIGHT): "),
        "{}",
        errors[7]
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with("discord.token (DISCORD_BOT_TOKEN): "),
        "{}",
        errors[0]
    );
    assert!(errors[1].message.contains("found a date"), "{}", errors[1]);
    assert!(errors[2].message.contains("negative"), "{}", errors[2]);
    assert!(errors[3].message.contains("fraction"), "{}", errors[3]);
    assert!(
        errors[4].message.contains("found a number"),
        "{}",
        errors[4]
    );
    assert!(errors[5].message.contains("\"has.dot\""), "{}", errors[5]);
    let text = ConfigErrors(errors).to_string();
    assert!(!text.contains("secret-in-the-file"), "{text}");
}

#[test]
fn the_token_is_required_only_for_run_and_never_echoed() {
    assert!(env_only(&[]).is_ok());
    let dir = empty_dir();
    let errors = errors_of(try_load(&[], None, dir.path(), true));
    assert_eq!(keys_of(&errors), ["discord.token"]);
    assert!(
        errors[0]
            .to_string()
            .contains("set DISCORD_BOT_TOKEN (or discord.token)")
    );
    for bad in [
        format!("Bot {TOKEN}"),
        format!("{TOKEN} extra"),
        format!("bot\t{TOKEN}"),
    ] {
        let errors = errors_of(try_load(
            &[("DISCORD_BOT_TOKEN", &bad)],
            None,
            dir.path(),
            true,
        ));
        assert_eq!(keys_of(&errors), ["discord.token"], "{bad}");
        assert!(
            !errors[0].to_string().contains("token-value-for-tests"),
            "{}",
            errors[0]
        );
    }
    let padded = format!("  {TOKEN}\n");
    let loaded = try_load(&[("DISCORD_BOT_TOKEN", &padded)], None, dir.path(), true).unwrap();
    assert_eq!(
        loaded.config.discord.token.as_ref().map(Secret::expose),
        Some(TOKEN)
    );
}

#[test]
fn gateway_url_needs_allow_insecure_for_the_simulator() {
    let errors = errors_of(env_only(&[("DISCORD_GATEWAY_URL", "ws://127.0.0.1:1234")]));
    assert_eq!(keys_of(&errors), ["discord.gateway_url"]);
    assert!(errors[0].message.contains("discord.allow_insecure_gateway"));
    let loaded = env_only(&[
        ("DISCORD_GATEWAY_URL", "ws://127.0.0.1:1234"),
        ("DISCORD_ALLOW_INSECURE_GATEWAY", "yes"),
    ])
    .unwrap();
    assert_eq!(
        loaded.config.discord.gateway_url.as_deref(),
        Some("ws://127.0.0.1:1234")
    );
}

#[test]
fn converted_values() {
    let c = env_only(&[
        ("DISCORD_API_BASE", "http://127.0.0.1:8080/api/v10/"),
        ("BRIDGE_STREAM_MAX_AGE_SECS", "0"),
        ("BRIDGE_STREAM_MAX_BYTES", "0"),
        ("BRIDGE_RAW_DISPATCH", "guild_create, typing_start"),
        ("DISCORD_BACKOFF_BASE_MS", "250"),
    ])
    .unwrap()
    .config;
    assert_eq!(c.discord.api_base, "http://127.0.0.1:8080/api/v10");
    assert_eq!(c.nats.stream_max_age, None);
    assert_eq!(c.nats.stream_max_bytes, None);
    assert_eq!(c.nats.raw_dispatch, ["GUILD_CREATE", "TYPING_START"]);
    assert_eq!(c.discord.backoff_base, Duration::from_millis(250));
}

#[test]
fn secrets_never_appear_in_debug_errors_or_render() {
    let loaded = env_only(&[
        ("DISCORD_BOT_TOKEN", TOKEN),
        (
            "NATS_NKEY_SEED",
            "SUAJVZAGOHNOYECZYARCXADLZ2HPXB6GXB4VFMUST7KGGYLX7GUVCJT5BU",
        ),
    ])
    .unwrap();
    let dir = empty_dir();
    let with_password = try_load(
        &[("NATS_USER", "alice"), ("NATS_PASSWORD", "hunter2")],
        None,
        dir.path(),
        false,
    )
    .unwrap();
    let texts = [
        format!("{:?}", loaded.config),
        format!("{loaded:?}"),
        loaded.render(),
        with_password.render(),
        format!("{:?}", with_password.config),
    ];
    for text in &texts {
        for secret in [
            "token-value-for-tests",
            "SUAJVZAGOHNOYECZYARCXADLZ2HPXB6GXB4VFMUST7KGGYLX7GUVCJT5BU",
            "hunter2",
        ] {
            assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
        }
    }
    let render = loaded.render();
    assert!(render.contains("token = \"<redacted>\""), "{render}");
    assert!(render.contains("# env DISCORD_BOT_TOKEN"), "{render}");
    // Credentials in a NATS URL are refused (they would not be secret), and
    // neither they nor a token that fails validation are echoed.
    let errors = errors_of(env_only(&[
        (
            "NATS_URL",
            "nats://127.0.0.1,http://bob:urlpassword@host,tls://alice:urlpassword@h:1",
        ),
        ("DISCORD_BOT_TOKEN", "Bot hunter2"),
    ]));
    assert_eq!(keys_of(&errors), ["discord.token", "nats.url"]);
    assert!(errors[1].message.contains("credentials"), "{}", errors[1]);
    assert!(
        errors[1].message.contains("tls://<redacted>@h:1"),
        "{}",
        errors[1]
    );
    let text = ConfigErrors(errors).to_string();
    assert!(
        !text.contains("urlpassword") && !text.contains("hunter2"),
        "{text}"
    );
}

/// A CA file is read at load time: a file that holds no usable certificate
/// is an error naming the key (for both sides), not a TLS failure later.
#[test]
fn ca_files_must_hold_certificates() {
    let dir = empty_dir();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not PEM at all\n").unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TEST_CA_PEM).unwrap();
    let junk = junk.display().to_string();
    let ca = ca.display().to_string();
    let errors = errors_of(env_only(&[("DISCORD_TLS_CA", &junk), ("NATS_CA", &junk)]));
    assert_eq!(keys_of(&errors), ["discord.tls_ca", "nats.tls_ca"]);
    for e in &errors {
        assert!(e.message.contains("no PEM certificate"), "{e}");
        assert!(e.message.contains("junk.pem"), "{e}");
    }
    let loaded = env_only(&[("DISCORD_TLS_CA", &ca), ("NATS_CA", &ca)]).unwrap();
    assert_eq!(
        loaded.config.discord.tls_ca.as_deref(),
        Some(Path::new(&ca))
    );
    assert_eq!(loaded.config.nats.tls_ca.as_deref(), Some(Path::new(&ca)));
}

/// async-nats connects over one transport: WebSocket and NATS URLs in one
/// list are refused at load time rather than at the first connection.
#[test]
fn websocket_and_nats_urls_do_not_mix() {
    let errors = errors_of(env_only(&[("NATS_URL", "nats://a:4222,ws://b:8080")]));
    assert_eq!(keys_of(&errors), ["nats.url"]);
    assert!(
        errors[0].message.contains("mixes WebSocket"),
        "{}",
        errors[0]
    );
    let loaded = env_only(&[("NATS_URL", "wss://a:443,WS://b:8080")]).unwrap();
    assert_eq!(loaded.config.nats.urls.len(), 2);
    env_only(&[("NATS_URL", "tls://a:4222,nats://b:4222")]).unwrap();
}

/// An nkey seed is decoded at load time: a typo or an account's seed is
/// named as such, without the seed in the message.
#[test]
fn nkey_seeds_must_be_user_seeds() {
    const BROKEN: &str = "SUAJVZAGOHNOYECZYARCXADLZ2HPXB6GXB4VFMUST7KGGYLX7GUVCJT5BA";
    const ACCOUNT: &str = "SAAKYL6EUVVSNWQX6DLJ2I24NXGLEDADITWWKQQRAKE36BIWFAGFYCWAIU";
    for (seed, expected) in [(BROKEN, "is not an nkey seed"), (ACCOUNT, "not of a user")] {
        let errors = errors_of(env_only(&[("NATS_NKEY_SEED", seed)]));
        assert_eq!(keys_of(&errors), ["nats.nkey_seed"]);
        assert!(errors[0].message.contains(expected), "{}", errors[0]);
        assert!(!errors[0].to_string().contains(seed), "{}", errors[0]);
    }
}

#[test]
fn http_listen_takes_ip_and_port_and_says_what_to_write() {
    let c = env_only(&[("BRIDGE_HTTP_LISTEN", "[::]:9090")])
        .unwrap()
        .config;
    assert_eq!(c.http.listen, Some("[::]:9090".parse().unwrap()));
    let c = env_only(&[("BRIDGE_HTTP_LISTEN", "127.0.0.1:0")])
        .unwrap()
        .config;
    assert_eq!(c.http.listen.map(|a| a.port()), Some(0));
    for (bad, hint) in [
        ("9090", "IP:PORT"),
        (":9090", "0.0.0.0:9090"),
        ("localhost:9090", "not a host name"),
        ("0.0.0.0", "add a port, e.g. 0.0.0.0:9090"),
        ("127.0.0.1:99999", "IP:PORT"),
    ] {
        let errors = errors_of(env_only(&[("BRIDGE_HTTP_LISTEN", bad)]));
        assert_eq!(keys_of(&errors), ["http.listen"], "{bad}");
        let text = errors[0].to_string();
        assert!(
            text.starts_with("http.listen (BRIDGE_HTTP_LISTEN): "),
            "{text}"
        );
        assert!(text.contains(hint), "{bad}: {text}");
    }
}

#[test]
fn log_format_is_text_or_json_with_a_suggestion() {
    let c = env_only(&[("BRIDGE_LOG_FORMAT", "JSON")]).unwrap().config;
    assert_eq!(c.log.format, crate::logging::LogFormat::Json);
    let errors = errors_of(env_only(&[("BRIDGE_LOG_FORMAT", "jsn")]));
    assert_eq!(keys_of(&errors), ["log.format"]);
    let text = errors[0].to_string();
    assert_eq!(
        text,
        "log.format (BRIDGE_LOG_FORMAT): \"jsn\" is not a log format: use text or json \
         (did you mean json?)"
    );
}
