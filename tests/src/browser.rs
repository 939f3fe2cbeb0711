//! Headless Chromium (Debian's `chromium` package) for the page tests: load a URL as a browser
//! does and return the DOM after the page has loaded.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// How long one page load may take on a loaded 2-core machine.
const LOAD_BOUND: Duration = Duration::from_secs(60);

/// The browser binary: `CHROMIUM` when set, else `chromium` or `chromium-headless-shell` on
/// the PATH. Panics with the install hint when there is none: the test needs a real browser.
pub fn chromium() -> PathBuf {
    if let Some(bin) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-headless-shell", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("this test needs headless Chromium: apt-get install chromium (or set CHROMIUM=/path/to/binary)");
}

/// Loads `url` in a fresh headless browser profile and returns the serialized DOM.
pub async fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("browser profile dir");
    let mut command = tokio::process::Command::new(chromium());
    command
        .args(["--headless", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        // The browser's sandbox needs user namespaces or a setuid helper, which CI (root in a
        // container) does not give; the page is our own, served on loopback.
        .arg("--no-sandbox")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(LOAD_BOUND, command.output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not load {url} within {LOAD_BOUND:?}"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium().display()));
    assert!(
        output.status.success(),
        "chromium failed on {url} ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

/// The opening tags in `dom` whose name is `tag` and that carry `class` among their classes,
/// each as its attributes (name, value), in document order. Enough for reading our own
/// server-rendered pages, which quote every attribute value with `"`.
pub fn elements_with_class(dom: &str, tag: &str, class: &str) -> Vec<Vec<(String, String)>> {
    let open = format!("<{tag} ");
    let mut found = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find('>').unwrap_or(after.len());
        let attributes = parse_attributes(&after[..end]);
        let has_class =
            attributes.iter().any(|(name, value)| name == "class" && value.split_whitespace().any(|c| c == class));
        if has_class {
            found.push(attributes);
        }
        rest = &after[end..];
    }
    found
}

/// The value of attribute `name` in a list from [`elements_with_class`].
pub fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn parse_attributes(mut text: &str) -> Vec<(String, String)> {
    let mut attributes = Vec::new();
    loop {
        text = text.trim_start();
        let Some(eq) = text.find("=\"") else { break };
        let name = text[..eq].trim().to_string();
        let value_start = &text[eq + 2..];
        let Some(close) = value_start.find('"') else { break };
        attributes.push((name, value_start[..close].to_string()));
        text = &value_start[close + 1..];
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_elements_by_class_with_their_attributes() {
        let dom = r#"<table><tr class="node leader" data-node-id="1" data-role="leader"><td>1</td></tr>
            <tr class="node" data-node-id="2" data-role="follower"></tr><tr class="header"></tr></table>"#;
        let rows = elements_with_class(dom, "tr", "node");
        assert_eq!(rows.len(), 2);
        assert_eq!(attribute(&rows[0], "data-role"), Some("leader"));
        assert_eq!(attribute(&rows[1], "data-node-id"), Some("2"));
        assert_eq!(attribute(&rows[1], "data-missing"), None);
        assert!(elements_with_class(dom, "tr", "nodes").is_empty());
    }
}
