//! Headless Chromium through chromedriver for the dashboard tests: start, drive, read, clean up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use gridsync_e2e::TestServer;
use serde_json::json;

/// Debian's binaries; `GRIDSYNC_CHROMIUM` / `GRIDSYNC_CHROMEDRIVER` point elsewhere.
fn chromium() -> String {
    std::env::var("GRIDSYNC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("GRIDSYNC_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

/// Why the browser cannot run here, if it cannot.
pub fn missing_browser() -> Option<String> {
    let missing: Vec<String> = [chromium(), chromedriver()]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not installed (apt-get install chromium chromium-driver)",
            missing.join(" and ")
        )
    })
}

/// Skips (loudly) or, where a browser is required, fails.
pub fn browser_or_skip(test: &str) -> bool {
    let Some(why) = missing_browser() else {
        return true;
    };
    if std::env::var("GRIDSYNC_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("{test}: GRIDSYNC_REQUIRE_BROWSER=1 but {why}");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests, and a
    // skip must be seen.
    let line = format!("SKIPPED {test}: {why}. Set GRIDSYNC_REQUIRE_BROWSER=1 to fail instead.\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    false
}

/// A chromedriver on a free 127.0.0.1 port and a headless Chromium session with a fresh
/// profile and its own download folder. Dropping it ends both.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    downloads: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // A browser in another time zone than the community's (the relay's default +8:00):
        // every time the dashboard shows must still be the community's.
        let driver = Command::new(chromedriver())
            .env("TZ", "America/New_York")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--disable-breakpad", "--disable-crash-reporter",
                    "--window-size=1280,900", "--lang=zh-CN",
                    format!("--user-data-dir={}", profile.path().join("chrome").display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "safebrowsing.enabled": false,
                },
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut client = None;
        // Bounded: chromedriver listens within a second or two.
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let client = client.expect("connect to chromedriver and start chromium");
        Browser {
            client: Some(client),
            driver,
            downloads,
            _profile: profile,
        }
    }

    pub fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    pub async fn goto(&self, url: &str) {
        self.c().goto(url).await.unwrap();
    }

    /// The text of the first element matching `css`. An element replaced between finding and
    /// reading it (a navigation, a live refresh) is looked up again, a bounded number of times.
    pub async fn text(&self, css: &str) -> String {
        let mut last = None;
        for _ in 0..50 {
            match self.c().find(Locator::Css(css)).await {
                Ok(el) => match el.text().await {
                    Ok(t) => return t,
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot read {css}: {last:?}");
    }

    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// Waits (bounded) until the page's text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str, secs: u64) -> bool {
        for _ in 0..secs * 10 {
            if self.page_text().await.contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.c().find(Locator::Css(css)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        let mut last = None;
        for _ in 0..50 {
            match self.c().find(Locator::Css(css)).await {
                Ok(el) => match el.click().await {
                    Ok(()) => return,
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot click {css}: {last:?}");
    }

    pub async fn sign_in(&self, server: &TestServer, user: &str, password: &str) {
        self.goto(&format!("{}/login", server.url())).await;
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("#sign-in").await;
    }

    pub async fn screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("GRIDSYNC_SCREENSHOTS") {
            let png = self.c().screenshot().await.unwrap();
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Waits (bounded) for a finished download with this extension.
    pub async fn download(&self, ext: &str) -> Vec<u8> {
        for _ in 0..150 {
            let files: Vec<_> = std::fs::read_dir(&self.downloads)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
            // Chromium names the file early, empty, and writes it as a `.crdownload` beside it,
            // renamed over the name once the download is whole.
            let writing = files
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "crdownload"));
            let found = files
                .iter()
                .find(|p| p.extension().is_some_and(|e| e == ext));
            if let Some(path) = found.filter(|_| !writing) {
                let bytes = std::fs::read(path).unwrap();
                if !bytes.is_empty() {
                    return bytes;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no .{ext} file was downloaded to {}",
            self.downloads.display()
        );
    }

    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A test that panicked never closed its session: end the Chromium processes of this
        // browser's own profile (and only those), by process id.
        let profile = self._profile.path().display().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.filter_map(Result::ok) {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&profile) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}
