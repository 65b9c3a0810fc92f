//! The bridge's operations endpoint from the outside: plain HTTP GETs, and
//! a strict reader of the Prometheus text format (0.0.4) for `/metrics`.
//!
//! The reader is deliberately independent of the encoder the bridge uses:
//! it parses what a Prometheus server would, and fails on anything it does
//! not understand, so a malformed exposition fails the test instead of
//! being skipped.

use std::collections::BTreeMap;
use std::time::Duration;

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name, e.g. `discord_bridge_shard_up`.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` of each metric family.
    pub types: BTreeMap<String, String>,
    /// The text it was parsed from.
    pub text: String,
}

impl Scrape {
    /// The value of the series `name` whose labels are exactly `labels`.
    #[must_use]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// The value, or a panic showing the exposition.
    ///
    /// # Panics
    ///
    /// When there is no such series.
    #[must_use]
    pub fn expect(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }
}

/// Parses the Prometheus text format.
///
/// # Errors
///
/// The first line that is not a comment, a blank line or a sample, or a
/// sample whose family has no `# TYPE` before it.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape {
        text: text.to_owned(),
        ..Scrape::default()
    };
    for (n, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            match words.next() {
                Some("TYPE") => {
                    let name = words.next().ok_or_else(|| at("TYPE without a name"))?;
                    let kind = words.next().ok_or_else(|| at("TYPE without a type"))?;
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(at("unknown type"));
                    }
                    scrape.types.insert(name.to_owned(), kind.to_owned());
                }
                Some("HELP") => {}
                _ => {}
            }
            continue;
        }
        let sample = sample(line).map_err(|e| at(&e))?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = sample.name.strip_suffix(suffix)?;
                (scrape.types.get(base).map(String::as_str) == Some("histogram"))
                    .then(|| base.to_owned())
            })
            .unwrap_or_else(|| sample.name.clone());
        if !scrape.types.contains_key(&family) {
            return Err(at("a sample without a # TYPE line"));
        }
        scrape.samples.push(sample);
    }
    Ok(scrape)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn sample(line: &str) -> Result<Sample, String> {
    let (series, value) = line.rsplit_once(' ').ok_or_else(|| "no value".to_owned())?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .ok_or_else(|| "labels without a closing brace".to_owned())?;
            (name, labels(body)?)
        }
    };
    if !is_name(name) {
        return Err(format!("{name:?} is not a metric name"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` (escapes `\\`, `\"`, `\n`).
fn labels(body: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\" in {rest:?}"))?;
        if !is_name(key) {
            return Err(format!("{key:?} is not a label name"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of {key}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {key}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if out.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(out)
}

/// `GET url`: the status and the body; `None` when nothing answers.
pub async fn get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// `GET {base}/metrics`, parsed.
///
/// # Panics
///
/// When nothing answers, the status is not 200 or the text does not parse.
pub async fn metrics(base: &str) -> Scrape {
    let (status, body) = get(&format!("{base}/metrics"))
        .await
        .unwrap_or_else(|| panic!("no answer from {base}/metrics"));
    assert_eq!(status, 200, "{body}");
    parse(&body).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{body}"))
}

/// A localhost port that was free a moment ago.
///
/// # Panics
///
/// When no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_labels_and_histograms() {
        let text = "# HELP up Up.\n# TYPE up gauge\nup{shard=\"0\",why=\"a \\\"b\\\"\\n\"} 1\n\
                    # TYPE t_total counter\nt_total 7\n\
                    # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
        let s = parse(text).unwrap();
        assert_eq!(s.expect("up", &[("shard", "0"), ("why", "a \"b\"\n")]), 1.0);
        assert_eq!(
            s.value("up", &[("shard", "0")]),
            None,
            "labels match exactly"
        );
        assert_eq!(s.expect("t_total", &[]), 7.0);
        assert_eq!(s.expect("h_bucket", &[("le", "+Inf")]), 2.0);
        assert_eq!(s.expect("h_count", &[]), 2.0);
    }

    #[test]
    fn malformed_expositions_are_errors() {
        for bad in [
            "up 1\n",
            "# TYPE up gauge\nup{shard=\"0\" 1\n",
            "# TYPE up gauge\nup{shard=0} 1\n",
            "# TYPE up gauge\nup one\n",
            "# TYPE up gauge\n9up 1\n",
            "# TYPE up gauge\nup{a=\"1\",a=\"2\"} 1\n",
            "# TYPE up thing\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
