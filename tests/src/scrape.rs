//! Scraping a `/metrics` endpoint as Prometheus does: one HTTP/1.1 GET, and a parser of the
//! OpenMetrics text it answers with, so tests check series by name and labels rather than by
//! matching text.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::WAIT;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Everything one scrape returned.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// Metric family name -> type, from the `# TYPE` lines.
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    /// The samples named `name` whose labels include every pair of `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample named `name` with `labels`; panics (naming what there is)
    /// when there is none or more than one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.find(name, labels).collect();
        match found.as_slice() {
            [one] => one.value,
            _ => panic!(
                "{} samples {name}{labels:?}; samples of that name: {:?}",
                found.len(),
                self.find(name, &[]).collect::<Vec<_>>()
            ),
        }
    }

    /// The value of the sample named `name` with `labels`, if there is exactly one.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.find(name, labels);
        let first = found.next()?;
        found.next().is_none().then_some(first.value)
    }

    /// The sum of every sample named `name` with `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).map(|s| s.value).sum()
    }

    /// Every sample name (with suffixes: `_total`, `_bucket`, `_count`, `_sum`).
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }
}

/// `GET http://addr/metrics`; panics unless it answers 200 with OpenMetrics text within
/// [`WAIT`].
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, headers, body) = tokio::time::timeout(WAIT, http_get(addr, "/metrics"))
        .await
        .unwrap_or_else(|_| panic!("no answer from http://{addr}/metrics within {WAIT:?}"));
    assert_eq!(status, 200, "GET http://{addr}/metrics: {body}");
    let content_type = headers.get("content-type").map(String::as_str).unwrap_or_default();
    assert!(content_type.starts_with("application/openmetrics-text"), "content type {content_type:?}");
    parse(&body).unwrap_or_else(|e| panic!("http://{addr}/metrics is not OpenMetrics text: {e}\n{body}"))
}

/// One HTTP/1.1 GET with `Connection: close`: the status, the headers (lowercase names) and
/// the body (chunked transfer decoded).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, BTreeMap<String, String>, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read the answer");
    let raw = String::from_utf8(raw).expect("a text answer");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status =
        status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{status_line:?}"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, headers, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// Parses OpenMetrics text: `# TYPE`, `# HELP`, `# UNIT` and `# EOF` lines, and samples with
/// quoted, escaped label values.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    let mut saw_eof = false;
    for (number, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if saw_eof {
            return Err(at("after # EOF"));
        }
        if line == "# EOF" {
            saw_eof = true;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("TYPE without a type"))?;
            scrape.types.insert(name.to_string(), kind.to_string());
        } else if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("unexpected line"));
        } else {
            scrape.samples.push(parse_sample(line).map_err(|e| at(&e))?);
        }
    }
    if !saw_eof {
        return Err("no # EOF".into());
    }
    Ok(scrape)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let mut chars = after_brace.char_indices().peekable();
        let mut consumed = None;
        loop {
            match chars.peek() {
                Some((i, '}')) => {
                    consumed = Some(i + 1);
                    break;
                }
                Some((_, ',')) => {
                    chars.next();
                }
                Some(_) => {}
                None => break,
            }
            let key: String = chars.by_ref().map(|(_, c)| c).take_while(|c| *c != '=').collect();
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => return Err("a dangling escape".into()),
                    },
                    Some(c) => value.push(c),
                    None => return Err("an unterminated label value".into()),
                }
            }
            labels.insert(key, value);
        }
        let consumed = consumed.ok_or("an unterminated label set")?;
        rest = &after_brace[consumed..];
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample { name, labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_labels_and_escapes() {
        let text = "# HELP a_total Things.\n# TYPE a counter\na_total{x=\"1\",y=\"q\\\"uo\\\\te\"} 3\n\
                    b 2.5\nc_bucket{le=\"+Inf\"} 7\n# EOF\n";
        let scrape = parse(text).unwrap();
        assert_eq!(scrape.value("a_total", &[("x", "1")]), 3.0);
        assert_eq!(scrape.find("a_total", &[]).next().unwrap().labels["y"], "q\"uo\\te");
        assert_eq!(scrape.value("b", &[]), 2.5);
        assert_eq!(scrape.value("c_bucket", &[("le", "+Inf")]), 7.0);
        assert_eq!(scrape.types["a"], "counter");
        assert!(parse("a 1\n").is_err(), "no EOF");
        assert!(parse("a{x=1} 1\n# EOF\n").is_err(), "unquoted");
        assert!(parse("a{x=\"1\" 1\n# EOF\n").is_err(), "unterminated");
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
