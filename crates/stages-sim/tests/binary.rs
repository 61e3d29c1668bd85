//! The `stages-sim` binary: starts on a free port, says where, and serves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Kills the child even when an assertion fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stages-sim"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--username",
            "u",
            "--password",
            "p",
            "--seed-sites",
            "5",
            "--fault",
            "GET /api/v1/lookups/*=error:502,times=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let _guard = Guard(child);

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a line on stdout");
    let base = line
        .trim()
        .strip_prefix("stages-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert!(!base.ends_with(":0"), "{base}");

    let http = reqwest::Client::new();
    let ping = http
        .get(format!("{base}/api/v1/ping"))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    let unauth = http
        .get(format!("{base}/api/v1/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);

    let sites: Value = http
        .get(format!("{base}/api/v1/sites"))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sites["items"].as_array().unwrap().len(), 5);

    let first = http
        .get(format!("{base}/api/v1/lookups/regions"))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 502, "--fault is in force");
    let second = http
        .get(format!("{base}/api/v1/lookups/regions"))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
}

#[tokio::test]
async fn binary_takes_a_callback_target() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stages-sim"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--username",
            "u",
            "--password",
            "p",
            "--callback-url",
            "http://127.0.0.1:9/v1/webhooks/stages/conn-1",
            "--callback-username",
            "cb-user",
            "--callback-password",
            "cb-secret",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let _guard = Guard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a line on stdout");
    let base = line
        .trim()
        .strip_prefix("stages-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_string();
    let status: Value = reqwest::get(format!("{base}/admin/callbacks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["target"]["url"],
        "http://127.0.0.1:9/v1/webhooks/stages/conn-1"
    );
    assert_eq!(status["target"]["username"], "cb-user");
    assert!(!status.to_string().contains("cb-secret"));

    let bad = Command::new(env!("CARGO_BIN_EXE_stages-sim"))
        .args([
            "--username",
            "u",
            "--password",
            "p",
            "--callback-url",
            "not a url",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn help_documents_the_fault_syntax() {
    let out = Command::new(env!("CARGO_BIN_EXE_stages-sim"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--fault",
        "latency:MS",
        "rate_limit",
        "malformed",
        "times=N",
    ] {
        assert!(text.contains(word), "{word} in help:\n{text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_stages-sim"))
        .args([
            "--username",
            "u",
            "--password",
            "p",
            "--fault",
            "GET /x=boom",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
