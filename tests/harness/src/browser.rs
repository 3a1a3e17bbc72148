//! The web chat page driven in Debian's Chromium by playwright-core
//! (tests/browser/webchat.mjs): open the page, start a chat with the
//! channel's secret, talk to BigCorp's helpdesk flow, take a screenshot.

use std::path::Path;

use serde_json::Value;

/// Runs the browser script against the platform at `base_url` and answers
/// its JSON report; the screenshot goes to `target/test-output/{screenshot}`.
pub fn chat_in_the_web_chat_page(base_url: &str, webchat_secret: &str, screenshot: &str) -> Value {
    let browser = crate::workspace_dir().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "the browser test needs playwright-core: scripts/setup test (or: cd tests/browser && npm ci)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the browser test needs Debian's Chromium: scripts/setup test (or apt-get install chromium, or set CHROMIUM)"
    );
    let out_dir = crate::workspace_dir().join("target/test-output");
    std::fs::create_dir_all(&out_dir).unwrap();
    let screenshot = out_dir.join(screenshot);
    let run = std::process::Command::new("node")
        .arg(browser.join("webchat.mjs"))
        .env("GREENTIC_URL", base_url)
        .env("WEBCHAT_SECRET", webchat_secret)
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    assert!(
        run.status.success(),
        "browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(screenshot.is_file());
    serde_json::from_slice(&run.stdout).expect("the browser script reports JSON")
}
