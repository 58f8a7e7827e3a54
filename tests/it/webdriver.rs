//! A small W3C WebDriver client over reqwest, enough to drive Debian's
//! headless Chromium through chromedriver: open pages, fill and submit
//! forms, read text and take screenshots.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Driver {
    _process: Child,
    base: String,
    http: reqwest::Client,
}

pub struct Browser {
    base: String,
    http: reqwest::Client,
}

/// Where chromedriver and chromium are (Debian's packages; `.ci/run`
/// installs them).
fn chromedriver() -> String {
    std::env::var("SHOKAI_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned())
}

impl Driver {
    pub async fn start() -> Driver {
        let port = crate::chaos::free_port();
        let process = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        crate::support::eventually("chromedriver", Duration::from_secs(20), || {
            let (http, url) = (http.clone(), format!("{base}/status"));
            async move { http.get(url).send().await.is_ok() }
        })
        .await;
        Driver {
            _process: process,
            base,
            http,
        }
    }

    /// A fresh headless browser with no cookies.
    pub async fn browser(&self) -> Browser {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("SHOKAI_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--lang=ja-JP", "--no-proxy-server"]
            }
        }}});
        let v = post(&self.http, &format!("{}/session", self.base), caps).await;
        let id = v["sessionId"].as_str().expect("session id").to_owned();
        Browser {
            base: format!("{}/session/{id}", self.base),
            http: self.http.clone(),
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let resp = http.post(url).json_body(&body).send().await.unwrap();
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(v["value"].get("error").is_none(), "{url}: {v}");
    v["value"].clone()
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.unwrap();
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(v["value"].get("error").is_none(), "{url}: {v}");
    v["value"].clone()
}

trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

pub struct Element {
    id: String,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        post(
            &self.http,
            &format!("{}/url", self.base),
            json!({"url": url}),
        )
        .await;
    }

    pub async fn find(&self, css: &str) -> Element {
        let v = post(
            &self.http,
            &format!("{}/element", self.base),
            json!({"using": "css selector", "value": css}),
        )
        .await;
        Element {
            id: v[ELEMENT].as_str().expect("element").to_owned(),
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        let v = post(
            &self.http,
            &format!("{}/elements", self.base),
            json!({"using": "css selector", "value": css}),
        )
        .await;
        v.as_array().map_or(0, Vec::len)
    }

    /// Waits until an element matching `css` is on the page (after a click
    /// that submits a form, the next page may still be loading).
    pub async fn wait_for(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.count(css).await == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} did not appear; at {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the address contains `part` (a form's redirect landed).
    pub async fn wait_url(&self, part: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.url().await;
            if url.contains(part) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "still at {url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        post(
            &self.http,
            &format!("{}/element/{}/clear", self.base, e.id),
            json!({}),
        )
        .await;
        post(
            &self.http,
            &format!("{}/element/{}/value", self.base, e.id),
            json!({"text": text}),
        )
        .await;
    }

    /// Sets a field's value directly (date inputs take typed keys in the
    /// browser's locale format, which a test should not depend on).
    pub async fn set_value(&self, css: &str, value: &str) {
        post(
            &self.http,
            &format!("{}/execute/sync", self.base),
            json!({"script": "document.querySelector(arguments[0]).value = arguments[1];",
                   "args": [css, value]}),
        )
        .await;
    }

    /// Types into a field without clearing it first (a file input takes a
    /// path this way).
    pub async fn send_keys(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        post(
            &self.http,
            &format!("{}/element/{}/value", self.base, e.id),
            json!({"text": text}),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        post(
            &self.http,
            &format!("{}/element/{}/click", self.base, e.id),
            json!({}),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        get(&self.http, &format!("{}/element/{}/text", self.base, e.id))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn title(&self) -> String {
        get(&self.http, &format!("{}/title", self.base))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn url(&self) -> String {
        get(&self.http, &format!("{}/url", self.base))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let v = get(&self.http, &format!("{}/screenshot", self.base)).await;
        let png = base64_decode(v.as_str().expect("base64 PNG"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

/// Standard base64 (what WebDriver returns screenshots in).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
}
