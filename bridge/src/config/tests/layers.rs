//! Layers, sources, every variable, the file, the report.

use super::*;

#[test]
fn defaults_are_config_default_and_come_from_default() {
    let loaded = env_only(&[]).unwrap();
    let default = Config::default();
    for key in KEYS {
        assert_eq!(
            shown(&loaded.config, key.key),
            shown(&default, key.key),
            "{}",
            key.key
        );
        assert_eq!(
            loaded.source(key.key),
            Some(&Source::Default),
            "{}",
            key.key
        );
    }
    assert_eq!(loaded.file, None);
    assert_eq!(loaded.config.discord.token, None);
    // Exactly, not just key by key: every field, including those no key
    // renders on its own.
    assert_eq!(format!("{:?}", loaded.config), format!("{default:?}"));
}

/// The defaults are stated once, as strings in the key table; this pins what
/// they mean once typed, and that they agree with the defaults of the types
/// the gateway and codec use on their own.
#[test]
fn the_typed_defaults() {
    assert!(super::super::load::defaults().is_ok());
    let Config {
        discord: d,
        nats: n,
        http,
        log,
    } = Config::default();
    assert_eq!(http.listen, None, "no HTTP server unless asked for");
    assert_eq!(log.format, crate::logging::LogFormat::Text);
    assert_eq!(d.token, None);
    assert_eq!(d.intents, Intents::default());
    assert_eq!(d.api_base, "https://discord.com/api/v10");
    assert_eq!(d.gateway_url, None);
    assert!(!d.allow_insecure_gateway);
    assert_eq!(d.tls_ca, None);
    assert_eq!(d.compression, crate::codec::Compression::default());
    assert_eq!(d.shards, crate::gateway::ShardSpec::Auto);
    assert_eq!(d.max_frame_bytes, 32 << 20);
    assert_eq!(d.backoff_base, Duration::from_secs(1));
    assert_eq!(d.backoff_max, Duration::from_secs(60));
    assert_eq!(n.urls, ["nats://127.0.0.1:4222"]);
    assert_eq!(
        (&n.creds_file, &n.user, &n.tls_ca, &n.tls_cert, &n.tls_key),
        (&None, &None, &None, &None, &None)
    );
    assert!(n.password.is_none() && n.token.is_none() && n.nkey_seed.is_none());
    assert_eq!(
        n.subject_prefix,
        discord_bridge_schemas::subject::DEFAULT_PREFIX
    );
    assert_eq!(n.publish, PublishMode::JetStream);
    assert_eq!(n.stream, "ASTRID_DISCORD");
    assert!(n.raw_dispatch.is_empty());
    assert_eq!(n.duplicate_window, Duration::from_secs(120));
    assert_eq!(n.stream_max_age, Some(Duration::from_secs(7 * 24 * 3600)));
    assert_eq!(n.stream_max_bytes, None);
    assert_eq!(n.buffer_events, 10_000);
    assert_eq!(n.buffer_bytes, 64 << 20);
    assert_eq!(n.max_inflight, 1024);
    assert_eq!(n.ack_timeout, Duration::from_secs(5));
    assert_eq!(
        format!("{:?}", DiscordConfig::default()),
        format!("{:?}", Config::default().discord)
    );
    assert_eq!(
        format!("{:?}", NatsConfig::default()),
        format!("{:?}", Config::default().nats)
    );
}

#[test]
fn env_wins_over_file_and_file_over_defaults() {
    let dir = empty_dir();
    let path = dir.path().join("custom.toml");
    std::fs::write(
        &path,
        "[discord]\nintents = [\"GUILDS\", \"MESSAGE_CONTENT\"]\ncompression = \"none\"\n\
         [nats]\nstream = \"FROM_FILE\"\nurl = [\"nats://a:4222\", \"tls://b:4222\"]\n",
    )
    .unwrap();
    let loaded = try_load(
        &[("BRIDGE_STREAM", "FROM_ENV")],
        Some(path.clone()),
        dir.path(),
        false,
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.nats.stream, "FROM_ENV");
    assert_eq!(
        loaded.source("nats.stream"),
        Some(&Source::Env("BRIDGE_STREAM"))
    );
    assert_eq!(c.discord.intents, Intents((1 << 0) | (1 << 15)));
    assert_eq!(c.discord.compression, crate::codec::Compression::None);
    assert_eq!(c.nats.urls, ["nats://a:4222", "tls://b:4222"]);
    assert_eq!(loaded.source("nats.url"), Some(&Source::File(path.clone())));
    assert_eq!(loaded.source("nats.publish"), Some(&Source::Default));
    assert_eq!(loaded.file, Some(path));
}

/// A valid, non-default value for every key, and the variables it needs.
fn sample(key: &str, dir: &Path) -> (String, Vec<(&'static str, String)>) {
    let file = |name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, "x").unwrap();
        p.display().to_string()
    };
    let ca = |name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, TEST_CA_PEM).unwrap();
        p.display().to_string()
    };
    let other = |var: &'static str, v: &str| vec![(var, v.to_owned())];
    match key {
        "discord.token" => (TOKEN.into(), vec![]),
        "discord.intents" => ("513".into(), vec![]),
        "discord.api_base" => ("http://127.0.0.1:9/api/v10".into(), vec![]),
        "discord.gateway_url" => ("wss://us-east1-b.gateway.discord.gg".into(), vec![]),
        "discord.allow_insecure_gateway" => ("true".into(), vec![]),
        "discord.tls_ca" => (ca("discord-ca.pem"), vec![]),
        "discord.compression" => ("zstd-stream".into(), vec![]),
        "discord.shards" => ("0-3/8".into(), vec![]),
        "discord.max_frame_bytes" => ("1048576".into(), vec![]),
        "discord.backoff_base_ms" => ("500".into(), vec![]),
        "discord.backoff_max_ms" => ("30000".into(), vec![]),
        "discord.shard_lease_secs" => ("4".into(), vec![]),
        "discord.session_start_reserve" => ("5".into(), vec![]),
        "nats.stream_replicas" => ("3".into(), vec![]),
        "nats.url" => ("wss://a:443,ws://b:8080".into(), vec![]),
        "nats.creds_file" => (file("user.creds"), vec![]),
        "nats.user" => ("alice".into(), other("NATS_PASSWORD", "pw")),
        "nats.password" => ("pw".into(), other("NATS_USER", "alice")),
        "nats.token" => ("tok".into(), vec![]),
        "nats.nkey_seed" => (
            "SUANFE7RJQDCMFI2UMDZ4RTMMFZLQPW6IZQDODVPNVRXTZXUYGPFSYVVYE".into(),
            vec![],
        ),
        "nats.tls_ca" => (ca("ca.pem"), vec![]),
        "nats.tls_cert" => (file("cert.pem"), vec![("NATS_KEY", file("key.pem"))]),
        "nats.tls_key" => (file("key.pem"), vec![("NATS_CERT", file("cert.pem"))]),
        "nats.subject_prefix" => ("my-capsule".into(), vec![]),
        "nats.publish" => ("core".into(), vec![]),
        "nats.stream" => ("OTHER_STREAM".into(), vec![]),
        "nats.raw_dispatch" => ("GUILD_CREATE,MESSAGE_REACTION_ADD".into(), vec![]),
        "nats.duplicate_window_secs" => ("300".into(), vec![]),
        "nats.stream_max_age_secs" => ("3600".into(), vec![]),
        "nats.stream_max_bytes" => ("1000000".into(), vec![]),
        "nats.buffer_events" => ("5".into(), vec![]),
        "nats.buffer_bytes" => ("4096".into(), vec![]),
        "nats.max_inflight" => ("7".into(), vec![]),
        "nats.ack_timeout_ms" => ("250".into(), vec![]),
        "nats.stall_timeout_secs" => ("5".into(), vec![]),
        "http.listen" => ("127.0.0.1:9464".into(), vec![]),
        "log.format" => ("json".into(), vec![]),
        other => panic!("no sample for {other}: add one"),
    }
}

#[test]
fn every_environment_variable_reaches_its_key() {
    let dir = empty_dir();
    for key in KEYS {
        let (value, mut vars) = sample(key.key, dir.path());
        vars.push((key.env, value.clone()));
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let loaded = try_load(&pairs, None, dir.path(), false)
            .unwrap_or_else(|e| panic!("{}: {e}", key.env));
        assert_eq!(
            loaded.source(key.key),
            Some(&Source::Env(key.env)),
            "{}",
            key.env
        );
        let got = shown(&loaded.config, key.key).unwrap();
        if key.secret {
            assert_eq!(got, Shown::Redacted, "{}", key.env);
        } else {
            assert_eq!(got.env_text(), Some(value), "{}", key.env);
            assert_ne!(
                got,
                shown(&Config::default(), key.key).unwrap(),
                "{}",
                key.env
            );
        }
    }
    let c = env_only(&[("DISCORD_BOT_TOKEN", TOKEN), ("NATS_TOKEN", "tok")])
        .unwrap()
        .config;
    assert_eq!(c.discord.token.as_ref().map(Secret::expose), Some(TOKEN));
    assert_eq!(c.nats.token.as_ref().map(Secret::expose), Some("tok"));
}

#[test]
fn empty_variables_count_as_unset() {
    let loaded = env_only(&[("DISCORD_GATEWAY_INTENTS", ""), ("BRIDGE_STREAM", "  ")]).unwrap();
    assert_eq!(loaded.config.discord.intents, Intents::default());
    assert_eq!(loaded.source("nats.stream"), Some(&Source::Default));
}

#[test]
fn intents_by_number_names_and_toml_list() {
    let by_number = env_only(&[("DISCORD_GATEWAY_INTENTS", "33281")]).unwrap();
    assert_eq!(by_number.config.discord.intents, Intents(33281));
    let by_names = env_only(&[(
        "DISCORD_GATEWAY_INTENTS",
        "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT",
    )])
    .unwrap();
    assert_eq!(
        by_names.config.discord.intents,
        Intents(1 | (1 << 9) | (1 << 15))
    );
    let dir = empty_dir();
    std::fs::write(
        dir.path().join(DEFAULT_FILE),
        "discord.intents = [\"GUILDS\", \"DIRECT_MESSAGES\"]\n",
    )
    .unwrap();
    let by_list = try_load(&[], None, dir.path(), false).unwrap();
    assert_eq!(by_list.config.discord.intents, Intents(1 | (1 << 12)));
    assert_eq!(by_list.file, Some(dir.path().join(DEFAULT_FILE)));
    std::fs::write(dir.path().join(DEFAULT_FILE), "[discord]\nintents = 4609\n").unwrap();
    let by_toml_number = try_load(&[], None, dir.path(), false).unwrap();
    assert_eq!(by_toml_number.config.discord.intents, Intents::default());
}

#[test]
fn a_named_file_must_exist_and_parse() {
    let dir = empty_dir();
    let missing = dir.path().join("nope.toml");
    let errors = errors_of(try_load(&[], Some(missing.clone()), dir.path(), false));
    assert_eq!(keys_of(&errors), ["--config"]);
    assert!(errors[0].message.contains(&missing.display().to_string()));
    let by_env = errors_of(try_load(
        &[(CONFIG_FILE_ENV, missing.to_str().unwrap())],
        None,
        dir.path(),
        false,
    ));
    assert!(by_env[0].message.contains(CONFIG_FILE_ENV), "{}", by_env[0]);
    // A parse error gives the position, never the line (it may hold a token).
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[discord]\ntoken = \"secret-in-broken-file\n").unwrap();
    let errors = errors_of(try_load(
        &[("DISCORD_SHARDS", "x")],
        Some(broken),
        dir.path(),
        false,
    ));
    assert_eq!(keys_of(&errors), ["--config", "discord.shards"]);
    assert!(errors[0].message.contains("line 2"), "{}", errors[0]);
    assert!(!errors[0].to_string().contains("secret-in-broken-file"));
}

#[test]
fn render_lists_every_key_with_its_source_and_is_toml() {
    let dir = empty_dir();
    let path = dir.path().join(DEFAULT_FILE);
    std::fs::write(&path, "[nats]\nstream = \"FILE_STREAM\"\n").unwrap();
    let loaded = try_load(&[("BRIDGE_CAPSULE_ID", "cap")], None, dir.path(), false).unwrap();
    let render = loaded.render();
    for key in KEYS {
        let name = key.split().1;
        assert!(
            render.lines().any(|l| l.starts_with(&format!("{name} = "))
                || l.starts_with(&format!("# {name} (unset)"))),
            "{} missing:\n{render}",
            key.key
        );
    }
    assert!(
        render.contains(&format!("# file {}", path.display())),
        "{render}"
    );
    assert!(render.contains("# env BRIDGE_CAPSULE_ID"), "{render}");
    assert!(
        render.contains("GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES"),
        "{render}"
    );
    let parsed: toml::Table = toml::from_str(&render).unwrap();
    assert_eq!(parsed["nats"]["stream"].as_str(), Some("FILE_STREAM"));
    assert_eq!(parsed["discord"]["intents"].as_integer(), Some(4609));
}
