//! A headless Chromium driven through chromedriver over the W3C WebDriver protocol, for the
//! admin UI tests. The dozen commands they need are plain JSON over HTTP, spoken here with the
//! reqwest the tests already use, rather than adding a WebDriver client crate and its tree.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use test_servers::Program;

/// W3C's key for an element reference in answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait for the page may take before the test fails (a deadline, not a speed check).
const WAIT: Duration = Duration::from_secs(20);

/// Chromium's binary; `None` when Chromium or chromedriver is not installed (the test is
/// skipped: see `test_servers::Program::require`).
pub fn chromium() -> Option<PathBuf> {
    Program::CHROMEDRIVER.require()?;
    Program::CHROMIUM.require()
}

/// Where the tests save screenshots of the pages they check.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/admin-ui-screenshots")
}

pub struct Browser {
    chromedriver: Child,
    http: reqwest::Client,
    session: String,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session of `chromium`.
    pub async fn start(chromium: &Path) -> Self {
        let port = super::free_port();
        let chromedriver =
            Command::new(Program::CHROMEDRIVER.locate().expect("chromium() found it"))
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so dropping the browser ends Chromium's processes too.
                .process_group(0)
                .spawn()
                .expect("start chromedriver");
        let endpoint = format!("http://127.0.0.1:{port}");
        // A command that hangs fails the test instead of blocking it.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        while !ready(&http, &endpoint).await {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // --no-sandbox: test machines run as root, where Chromium's sandbox refuses to start.
                // --disable-breakpad: no crash handler, which would outlive the test in a session of its own.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-breakpad", "--window-size=1440,900", "--lang=en-US"],
            },
        }}});
        let answer: Value = http
            .post(format!("{endpoint}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"));
        Self {
            chromedriver,
            http,
            session: format!("{endpoint}/session/{id}"),
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = match request.send().await {
            Ok(r) => r.json().await.unwrap(),
            Err(e) => panic!("WebDriver {path}: {e}"),
        };
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The first element matching `css`, if there is one now.
    pub async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT_KEY].as_str().map(str::to_owned)
    }

    /// Waits until an element matches `css`.
    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(element) = self.find(css).await {
                return element;
            }
            if Instant::now() > deadline {
                panic!("no element {css} on the page:\n{}", self.page_text().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until an element matching `css` shows text containing `expected`; returns its text.
    /// Elements are looked up again each time, since the UI re-renders.
    pub async fn wait_text(&self, css: &str, expected: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(element) = self.find(css).await {
                if let Some(text) = self.text(&element).await {
                    if text.contains(expected) {
                        return text;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{css} did not show '{expected}'; the page:\n{}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until nothing matches `css` any more.
    pub async fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while self.find(css).await.is_some() {
            if Instant::now() > deadline {
                panic!("{css} is still on the page:\n{}", self.page_text().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element's rendered text; `None` when it went stale meanwhile.
    pub async fn text(&self, element: &str) -> Option<String> {
        self.get(&format!("/element/{element}/text"))
            .await
            .as_str()
            .map(str::to_owned)
    }

    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        let answer = self
            .post(&format!("/element/{element}/click"), json!({}))
            .await;
        assert!(answer.is_null(), "clicking {css} failed: {answer}");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        self.post(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Runs `script` (a function body) in the page and returns its result.
    pub async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    pub async fn page_text(&self) -> String {
        self.script("return document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a PNG of the window to `screenshot_dir()/name`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Closes the session (Chromium exits) before chromedriver is stopped.
    pub async fn quit(self) {
        self.command(reqwest::Method::DELETE, "", None).await;
    }
}

async fn ready(http: &reqwest::Client, endpoint: &str) -> bool {
    match http.get(format!("{endpoint}/status")).send().await {
        Ok(r) => r
            .json::<Value>()
            .await
            .is_ok_and(|v| v["value"]["ready"] == true),
        Err(_) => false,
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium it started.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.chromedriver.id()))
            .status();
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}
