//! A small W3C WebDriver client for the web UI tests: drives headless Chromium through the
//! chromedriver that `scripts/test` starts (`scripts/lib/chromium.sh`), whose address it reads
//! from `CREDVAULT_TEST_WEBDRIVER_URL`. Every call panics with WebDriver's error message when
//! it fails: this is test code.
//!
//! There is no `Drop` for [`Browser`]: reqwest's `blocking` feature is not enabled in this
//! workspace, and an async request cannot run in `drop`. Call [`Browser::quit`] at the end of
//! every test; a session a panicking test leaves behind lives until chromedriver stops
//! (`chromedriver_stop` kills its browsers too).
//!
//! ```ignore
//! let b = Browser::start().await;
//! b.goto(&format!("{}/", server.base)).await;
//! b.find("input[name=token]").await.send_keys(&server.admin).await;
//! b.find("button[type=submit]").await.click().await;
//! b.wait_for_text("h1", "Credentials").await;
//! b.quit().await;
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::TempDir;

/// The key under which WebDriver returns (and accepts) element references: the W3C "web
/// element identifier" (https://www.w3.org/TR/webdriver2/#elements).
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long [`Browser::find`], [`Element::find`] and [`Browser::wait_for_text`] wait.
pub const WAIT: Duration = Duration::from_secs(5);

const POLL: Duration = Duration::from_millis(50);

/// The Tab key, for [`Browser::press_keys`].
pub const TAB: &str = "\u{E004}";
/// The Enter key, for [`Browser::press_keys`].
pub const ENTER: &str = "\u{E007}";

/// The Chromium binary the sessions run (Debian's package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The Firefox binary (Debian's package `firefox-esr`).
pub const FIREFOX: &str = "/usr/bin/firefox-esr";

/// A WebDriver error: HTTP status, error code (`no such element`, …) and message.
#[derive(Clone, Debug)]
pub struct WdError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl WdError {
    /// The element went away because the page changed under it. Chromium sometimes reports
    /// this as an `unknown error` from its inspector ("Node with given id does not belong to
    /// the document") instead of the standard `stale element reference`.
    pub fn is_stale(&self) -> bool {
        self.error == "stale element reference"
            || (self.error == "unknown error" && self.message.contains("does not belong to the document"))
    }
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.error, self.status, self.message)
    }
}

/// One session's endpoint, shared by the browser and its elements.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    /// `{webdriver}/session/{id}`
    url: String,
}

impl Session {
    /// Sends one command; `Ok(value)` is the response's `value`.
    async fn try_cmd(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        send(&self.http, method, &format!("{}{path}", self.url), body).await
    }

    /// Sends one command and panics on a WebDriver error.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{method} {path}");
        match self.try_cmd(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {what}: {e}"),
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.cmd(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(Method::POST, path, Some(body)).await
    }

    fn element(&self, v: &Value, what: &str) -> Element {
        let id = v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("WebDriver {what}: no element reference in {v}"));
        Element {
            session: self.clone(),
            id: id.to_owned(),
        }
    }

    /// Polls `POST {path}` (a find command) until it finds an element or [`WAIT`] passes.
    async fn find_waiting(&self, path: &str, css: &str) -> Result<Element, WdError> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.try_cmd(Method::POST, path, Some(by_css(css))).await {
                Ok(v) => return Ok(self.element(&v, &format!("find {css:?}"))),
                Err(e) if e.error == "no such element" && Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or_default().to_owned()
    }
}

async fn send(http: &reqwest::Client, method: Method, url: &str, body: Option<Value>) -> Result<Value, WdError> {
    let mut req = http.request(method.clone(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| {
        panic!("cannot reach chromedriver ({method} {url}): {e}; is CREDVAULT_TEST_WEBDRIVER_URL right?")
    });
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading chromedriver's answer to {method} {url}: {e}"));
    let mut v: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "value": text }));
    let value = v["value"].take();
    // W3C: every error has a 4xx/5xx status and a `value` of `{error, message, stacktrace}`.
    if (200..300).contains(&status) {
        return Ok(value);
    }
    Err(WdError {
        status,
        error: value["error"].as_str().unwrap_or("unknown error").to_owned(),
        message: match value["message"].as_str() {
            Some(m) => m.to_owned(),
            None => value.to_string(),
        },
    })
}

fn by_css(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

/// A CSS string literal (double quoted) holding `s`.
fn css_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\a "),
            '\r' => out.push_str("\\d "),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A headless Chromium session.
pub struct Browser {
    session: Session,
    session_id: String,
    webdriver: String,
    /// Chromium's profile (`--user-data-dir`), fresh for each session.
    profile: TempDir,
}

impl Browser {
    /// Starts a fresh headless Chromium (1280×800, empty profile) through the chromedriver at
    /// `CREDVAULT_TEST_WEBDRIVER_URL`.
    pub async fn start() -> Browser {
        let profile = TempDir::new();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        Self::open(
            "CREDVAULT_TEST_WEBDRIVER_URL",
            "chromedriver (scripts/lib/chromium.sh: chromedriver_start DIR PORT)",
            Duration::from_secs(60),
            caps,
            profile,
        )
        .await
    }

    /// Starts a fresh headless Firefox (1280×800, empty profile) through the geckodriver at
    /// `CREDVAULT_TEST_GECKODRIVER_URL`.
    pub async fn start_firefox() -> Browser {
        let caps = json!({
            "browserName": "firefox",
            "moz:firefoxOptions": {
                "binary": FIREFOX,
                "args": ["-headless", "-width", "1280", "-height", "800"],
                "prefs": { "browser.download.folderList": 2, "dom.disable_beforeunload": true },
            },
        });
        Self::open(
            "CREDVAULT_TEST_GECKODRIVER_URL",
            "geckodriver (scripts/lib/chromium.sh: geckodriver_start DIR PORT)",
            Duration::from_secs(90),
            caps,
            TempDir::new(),
        )
        .await
    }

    /// Opens a session at the driver named by the environment variable `var` with the
    /// browser-specific capabilities `caps` (the timeouts are added here).
    async fn open(var: &str, driver: &str, timeout: Duration, mut caps: Value, profile: TempDir) -> Browser {
        let webdriver = std::env::var(var)
            .unwrap_or_else(|_| panic!("{var} must name a {driver} at http://127.0.0.1:PORT; scripts/test starts it"));
        let webdriver = webdriver.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
        caps["timeouts"] = json!({ "implicit": 0, "pageLoad": 30_000, "script": 30_000 });
        let browser = caps["browserName"].clone();
        let body = json!({ "capabilities": { "alwaysMatch": caps } });
        let v = send(&http, Method::POST, &format!("{webdriver}/session"), Some(body))
            .await
            .unwrap_or_else(|e| panic!("WebDriver: cannot start a {browser} session at {webdriver}: {e}"));
        let session_id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("WebDriver: no sessionId in {v}"))
            .to_owned();
        Browser {
            session: Session {
                http,
                url: format!("{webdriver}/session/{session_id}"),
            },
            session_id,
            webdriver,
            profile,
        }
    }

    /// The WebDriver session ID.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.session.post("/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.session.current_url().await
    }

    pub async fn title(&self) -> String {
        self.session.get("/title").await.as_str().unwrap_or_default().to_owned()
    }

    /// The page source (the serialized DOM as it is now).
    pub async fn source(&self) -> String {
        self.session
            .get("/source")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css`, waiting up to [`WAIT`] for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        match self.session.find_waiting("/element", css).await {
            Ok(e) => e,
            Err(e) => {
                let url = self.current_url().await;
                let title = self.title().await;
                panic!("no element matches {css:?} after {WAIT:?} on {url} (title {title:?}): {e}")
            }
        }
    }

    /// Every element matching `css` now (no waiting; may be empty).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.session.post("/elements", by_css(css)).await;
        let what = format!("find_all {css:?}");
        v.as_array()
            .map(|a| a.iter().map(|e| self.session.element(e, &what)).collect())
            .unwrap_or_default()
    }

    /// The first element matching `css` now, if any (no waiting).
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        match self.session.try_cmd(Method::POST, "/element", Some(by_css(css))).await {
            Ok(v) => Some(self.session.element(&v, &format!("try_find {css:?}"))),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("WebDriver try_find {css:?}: {e}"),
        }
    }

    /// Waits up to [`WAIT`] until an element matching `css` has a visible text containing
    /// `needle`, and returns it.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            seen.clear();
            let found = self
                .session
                .try_cmd(Method::POST, "/elements", Some(by_css(css)))
                .await
                .unwrap_or_else(|e| panic!("WebDriver wait_for_text {css:?}: {e}"));
            for v in found.as_array().into_iter().flatten() {
                let el = self.session.element(v, &format!("wait_for_text {css:?}"));
                // The page may replace the element between the two calls: try again then.
                match el
                    .session
                    .try_cmd(Method::GET, &format!("/element/{}/text", el.id), None)
                    .await
                {
                    Ok(t) => {
                        let t = t.as_str().unwrap_or_default().to_owned();
                        if t.contains(needle) {
                            return el;
                        }
                        seen.push(t);
                    }
                    Err(e) if e.is_stale() => {}
                    Err(e) => panic!("WebDriver wait_for_text {css:?}: {e}"),
                }
            }
            if Instant::now() >= deadline {
                let url = self.current_url().await;
                panic!("no element matching {css:?} shows {needle:?} after {WAIT:?} on {url}; texts seen: {seen:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `script` (a function body: use `arguments[0]` and `return`) synchronously in the
    /// page and returns its result. Pass elements as [`Element::to_arg`].
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.session
            .post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs `script` asynchronously in the page: it finishes by calling the callback passed
    /// as its last argument (`arguments[arguments.length - 1]`), whose value is returned.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.session
            .post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    /// Types `keys` on the keyboard into whatever has the focus, like a person would: each
    /// character is pressed and released in turn. [`TAB`] and [`ENTER`] are keys.
    pub async fn press_keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                let k = c.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.session
            .post(
                "/actions",
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
            )
            .await;
    }

    /// What has the keyboard focus: its `id`, or `tag.class` when it has none.
    pub async fn focused(&self) -> String {
        let v = self
            .execute(
                "var e = document.activeElement; if (!e) { return ''; } \
                 return e.id || (e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''));",
                vec![],
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Writes a PNG of the viewport to `path` (creating its parent directories).
    pub async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let b64 = self.session.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("WebDriver screenshot: not base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Resizes the window (outer size, in CSS pixels).
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.session
            .post("/window/rect", json!({ "width": width, "height": height }))
            .await;
    }

    /// The cookies visible to the current page, as WebDriver cookie objects (`name`, `value`,
    /// `path`, `domain`, `secure`, `httpOnly`, `sameSite`, `expiry`).
    pub async fn cookies(&self) -> Vec<Value> {
        match self.session.get("/cookie").await {
            Value::Array(a) => a,
            other => panic!("WebDriver GET /cookie: not an array: {other}"),
        }
    }

    pub async fn delete_all_cookies(&self) {
        self.session.cmd(Method::DELETE, "/cookie", None).await;
    }

    pub async fn back(&self) {
        self.session.post("/back", json!({})).await;
    }

    /// Ends the session (Chromium exits). Call it at the end of every test: there is no `Drop`.
    pub async fn quit(self) {
        // Not through `self.session.cmd`: a failure here only leaks a browser until
        // chromedriver stops, which is no reason to fail a test that passed.
        if let Err(e) = send(&self.session.http, Method::DELETE, &self.session.url, None).await {
            eprintln!(
                "WebDriver: ending session {} at {}: {e}",
                self.session_id, self.webdriver
            );
        }
        drop(self.profile);
    }
}

/// An element of the current page.
#[derive(Clone)]
pub struct Element {
    session: Session,
    id: String,
}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({})", self.id)
    }
}

impl Element {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    /// The WebDriver element ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This element as an argument for [`Browser::execute`].
    pub fn to_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// Scrolls the element into view and clicks its center (fails if something covers it).
    pub async fn click(&self) {
        self.session.post(&self.path("/click"), json!({})).await;
    }

    /// Types `text` into the element (focusing it first); it is appended to what is there.
    pub async fn send_keys(&self, text: &str) {
        self.session.post(&self.path("/value"), json!({ "text": text })).await;
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) {
        self.session.post(&self.path("/clear"), json!({})).await;
    }

    /// The rendered (visible) text.
    pub async fn text(&self) -> String {
        self.session
            .get(&self.path("/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The HTML attribute `name` as in the markup, through WebDriver's Get Element Attribute
    /// (`/attribute/{name}`): `None` if the element does not have it. Not the current state:
    /// after typing, `attr("value")` is still the markup's `value=`; use [`Element::value`] or
    /// [`Element::property`] (`/property/{name}`) for what the user typed or ticked.
    pub async fn attr(&self, name: &str) -> Option<String> {
        match self.session.get(&self.path(&format!("/attribute/{name}"))).await {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    /// The DOM property `name` (`/property/{name}`), as JSON: `value` of an input is what it
    /// holds now, `checked` a boolean.
    pub async fn property(&self, name: &str) -> Value {
        self.session.get(&self.path(&format!("/property/{name}"))).await
    }

    /// The current value of an input, textarea or select (the `value` property).
    pub async fn value(&self) -> String {
        match self.property("value").await {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    /// Chooses the `<option value="…">` of this `<select>` by clicking it (which fires `input`
    /// and `change` like a user's choice).
    pub async fn select_value(&self, value: &str) {
        let css = format!("option[value={}]", css_string(value));
        self.find(&css).await.click().await;
    }

    /// The first descendant matching `css`, waiting up to [`WAIT`] for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        match self.session.find_waiting(&self.path("/element"), css).await {
            Ok(e) => e,
            Err(e) => {
                let url = self.session.current_url().await;
                panic!("no element inside {self:?} matches {css:?} after {WAIT:?} on {url}: {e}")
            }
        }
    }

    /// Every descendant matching `css` now (no waiting).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.session.post(&self.path("/elements"), by_css(css)).await;
        let what = format!("find_all {css:?}");
        v.as_array()
            .map(|a| a.iter().map(|e| self.session.element(e, &what)).collect())
            .unwrap_or_default()
    }

    /// Whether the element is rendered visibly (WebDriver's "element displayedness").
    pub async fn is_displayed(&self) -> bool {
        self.session
            .get(&self.path("/displayed"))
            .await
            .as_bool()
            .unwrap_or(false)
    }
}
