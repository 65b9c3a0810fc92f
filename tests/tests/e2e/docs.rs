//! The documentation and deployment files against the code: the README's
//! configuration reference is the real key table, docker-compose.yml parses
//! and only sets variables the bridge reads, and the Dockerfile builds what
//! the README says it builds.

use std::collections::BTreeSet;

use discord_bridge::config::keys::KEYS;
use discord_bridge_e2e::workspace::root;
use yaml_rust2::{Yaml, YamlLoader};

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The README table rows, one per key, in table order.
fn expected_rows() -> Vec<String> {
    KEYS.iter()
        .map(|k| {
            let default = match (k.secret, k.default) {
                (true, _) => "secret, unset".to_owned(),
                (false, Some(d)) => format!("`{d}`"),
                (false, None) => "unset".to_owned(),
            };
            format!(
                "| `{}` | `{}` | {default} | {} |",
                k.key,
                k.env,
                k.description.replace('|', "\\|")
            )
        })
        .collect()
}

#[test]
fn readme_configuration_reference_is_the_key_table() {
    let readme = read("README.md");
    let start = readme
        .find("<!-- config-table:start -->")
        .expect("start marker in README");
    let end = readme
        .find("<!-- config-table:end -->")
        .expect("end marker in README");
    let rows: Vec<String> = readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(str::to_owned)
        .collect();
    let expected = expected_rows();
    assert!(
        rows == expected,
        "README's configuration table is out of date; replace its rows with:\n{}",
        expected.join("\n")
    );
}

/// Resolves YAML merge keys (`<<: *anchor`) the way docker compose does.
fn merged(node: &Yaml) -> Vec<(String, Yaml)> {
    let mut out: Vec<(String, Yaml)> = Vec::new();
    let Some(map) = node.as_hash() else {
        return out;
    };
    if let Some(base) = map.get(&Yaml::String("<<".into())) {
        out.extend(merged(base));
    }
    for (k, v) in map {
        let Some(k) = k.as_str() else { continue };
        if k == "<<" {
            continue;
        }
        out.retain(|(key, _)| key != k);
        out.push((k.to_owned(), v.clone()));
    }
    out
}

fn field<'a>(fields: &'a [(String, Yaml)], name: &str) -> Option<&'a Yaml> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A bridge service of the compose file serves the operations endpoint on
/// an address the bridge accepts, exposes that port, publishes it (if at
/// all) on a host port no other bridge uses, and is health-checked by
/// `discord-bridge healthcheck` at the path the Dockerfile installs, which
/// asks that same endpoint.
fn check_probes(
    name: &str,
    fields: &[(String, Yaml)],
    env: &[(String, Yaml)],
    host_ports: &mut BTreeSet<String>,
) {
    let listen = field(env, "BRIDGE_HTTP_LISTEN")
        .and_then(Yaml::as_str)
        .unwrap_or_else(|| panic!("{name} sets BRIDGE_HTTP_LISTEN"));
    let addr: std::net::SocketAddr = listen
        .parse()
        .unwrap_or_else(|e| panic!("{name}: BRIDGE_HTTP_LISTEN {listen}: {e}"));
    assert!(
        addr.ip().is_unspecified(),
        "{name} listens on every interface of its container: {listen}"
    );
    let port = addr.port().to_string();
    let exposed: Vec<String> = field(fields, "expose")
        .and_then(Yaml::as_vec)
        .map(|v| {
            v.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        exposed.contains(&port),
        "{name} exposes {port}: {exposed:?}"
    );
    for mapping in field(fields, "ports")
        .and_then(Yaml::as_vec)
        .into_iter()
        .flatten()
    {
        let mapping = mapping.as_str().expect("a port mapping");
        let (host, container) = mapping
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{name}: {mapping} is HOST:CONTAINER"));
        assert_eq!(container, port, "{name} publishes its endpoint: {mapping}");
        assert!(
            host_ports.insert(host.to_owned()),
            "{name} publishes host port {host}, which another bridge uses"
        );
    }
    let check = field(fields, "healthcheck").unwrap_or_else(|| panic!("{name} has a healthcheck"));
    let test: Vec<&str> = check["test"]
        .as_vec()
        .unwrap_or_else(|| panic!("{name}: healthcheck.test is a list"))
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(
        test,
        ["CMD", "/usr/local/bin/discord-bridge", "healthcheck"],
        "{name}: the image has no shell or curl; the bridge asks its own /readyz"
    );
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains(&format!("COPY --from=build /discord-bridge {}", test[1])),
        "the healthcheck runs the binary the Dockerfile installs"
    );
    // The command reads http.listen from the same environment: it asks
    // the endpoint the bridge serves.
    assert_eq!(
        discord_bridge::healthcheck::readiness_url(Some(addr), None).expect("a URL"),
        format!("http://127.0.0.1:{port}/readyz")
    );
}

#[test]
fn compose_file_parses_and_sets_only_variables_the_bridge_reads() {
    let docs = YamlLoader::load_from_str(&read("docker-compose.yml")).expect("valid YAML");
    let compose = &docs[0];
    let services = compose["services"].as_hash().expect("services");
    let known: BTreeSet<&str> = KEYS
        .iter()
        .map(|k| k.env)
        .chain(["RUST_LOG", "DISCORD_BRIDGE_CONFIG"])
        .collect();
    let mut bridges = Vec::new();
    let mut host_ports = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().expect("service name");
        let fields = merged(service);
        let is_bridge =
            field(&fields, "image").and_then(Yaml::as_str) == Some("discord-bridge:latest");
        if !is_bridge {
            continue;
        }
        let env = merged(field(&fields, "environment").expect("environment"));
        for (var, _) in &env {
            assert!(
                known.contains(var.as_str()),
                "{name} sets {var}, which the bridge does not read"
            );
        }
        let profiles: Vec<String> = field(&fields, "profiles")
            .and_then(Yaml::as_vec)
            .map(|v| {
                v.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let url = field(&env, "NATS_URL").and_then(Yaml::as_str);
        if profiles.iter().any(|p| p == "cluster") {
            assert_eq!(
                url,
                Some("nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"),
                "{name} lists every node"
            );
            assert_eq!(
                field(&env, "BRIDGE_STREAM_REPLICAS").and_then(Yaml::as_str),
                Some("3"),
                "{name}"
            );
        } else {
            assert_eq!(url, Some("nats://nats:4222"), "{name}");
        }
        assert!(
            field(&env, "DISCORD_BOT_TOKEN").is_some(),
            "{name} passes the token"
        );
        let shards = field(&env, "DISCORD_SHARDS")
            .and_then(Yaml::as_str)
            .expect("DISCORD_SHARDS")
            .to_owned();
        check_probes(name, &fields, &env, &mut host_ports);
        bridges.push((name.to_owned(), shards, profiles));
    }
    bridges.sort();
    assert_eq!(
        bridges,
        [
            (
                "bridge".to_owned(),
                "${DISCORD_SHARDS:-auto}".to_owned(),
                vec![]
            ),
            (
                "bridge-0".to_owned(),
                "0/2".to_owned(),
                vec!["sharded".to_owned()]
            ),
            (
                "bridge-1".to_owned(),
                "1/2".to_owned(),
                vec!["sharded".to_owned()]
            ),
            (
                "bridge-a".to_owned(),
                "${DISCORD_SHARDS:-auto}".to_owned(),
                vec!["cluster".to_owned()]
            ),
            (
                "bridge-b".to_owned(),
                "${DISCORD_SHARDS:-auto}".to_owned(),
                vec!["cluster".to_owned()]
            ),
        ]
    );
    for (_, shards, _) in &bridges {
        let value = shards
            .trim_start_matches("${DISCORD_SHARDS:-")
            .trim_end_matches('}');
        discord_bridge::gateway::ShardSpec::parse(value).expect("a valid shard spec");
    }
    let nats = merged(&compose["services"]["nats"]);
    let command: Vec<&str> = field(&nats, "command")
        .and_then(Yaml::as_vec)
        .expect("command")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        command.contains(&"--jetstream"),
        "JetStream on: {command:?}"
    );
    let volumes = field(&nats, "volumes")
        .and_then(Yaml::as_vec)
        .expect("a volume");
    assert!(
        volumes
            .iter()
            .any(|v| v.as_str().is_some_and(|v| v.ends_with(":/data"))),
        "persistent store"
    );
    assert!(
        compose["volumes"]["nats-data"].is_null()
            || compose["volumes"]["nats-data"].as_hash().is_some()
    );
    for node in ["nats-1", "nats-2", "nats-3"] {
        let n = merged(&compose["services"][node]);
        let command: Vec<&str> = field(&n, "command")
            .and_then(Yaml::as_vec)
            .expect("command")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        for flag in ["--jetstream", "--cluster_name", "--routes", "--name"] {
            assert!(command.contains(&flag), "{node}: {command:?}");
        }
        assert!(command.contains(&node), "{node} names itself: {command:?}");
    }
    let natsbox = merged(&compose["services"]["nats-box"]);
    assert!(
        field(&natsbox, "image")
            .and_then(Yaml::as_str)
            .is_some_and(|i| i.starts_with("natsio/nats-box"))
    );
}

#[test]
fn dockerfile_is_multi_stage_small_and_non_root_and_documented() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    assert!(stages[0].contains(" AS build"), "{stages:?}");
    assert!(
        stages[1].contains("distroless") || stages[1].contains("slim"),
        "a small runtime image: {stages:?}"
    );
    assert!(
        dockerfile
            .contains("cargo build --release --locked -p discord-bridge --no-default-features"),
        "the image leaves the demo out"
    );
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    let who = user
        .trim_start_matches("USER ")
        .split(':')
        .next()
        .unwrap_or_default()
        .trim();
    assert!(
        !matches!(who, "root" | "0" | ""),
        "runs as non-root: {user}"
    );
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/discord-bridge"]"#));
    // Every workspace member is copied into the build stage: cargo cannot
    // load the workspace without each member's manifest.
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace members");
    for member in members.iter().filter_map(|m| m.as_str()) {
        assert!(
            dockerfile.contains(&format!("COPY {member} {member}")),
            "{member} is copied"
        );
    }
    // Only the simulator embeds the corpus, and the image does not compile
    // it: the fixtures stay out of the build context's copy.
    assert!(
        !dockerfile.contains("COPY fixtures"),
        "the production build needs no fixtures"
    );
    let readme = read("README.md");
    for step in [
        "docker build -t discord-bridge .",
        "docker compose up -d",
        "docker compose --profile sharded up -d nats bridge-0 bridge-1",
    ] {
        assert!(readme.contains(step), "README documents `{step}`");
        let compose = read("docker-compose.yml");
        if step.starts_with("docker compose") {
            assert!(
                compose.contains(
                    step.trim_start_matches("docker compose ")
                        .split(" -d")
                        .next()
                        .unwrap_or_default()
                ),
                "{step}"
            );
        }
    }
}

#[test]
fn readme_quick_start_gives_the_two_commands_first() {
    let readme = read("README.md");
    let quick = readme.find("## Quick start").expect("a quick start");
    let block = &readme[quick..];
    let code: Vec<&str> = block
        .split("```")
        .nth(1)
        .expect("a code block")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("sh"))
        .collect();
    assert_eq!(code, ["scripts/demo", "scripts/test"]);
}
