//! The `adc-sim` binary: starts on a free port, says where, and serves.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{envelope_as, reply, texts, CM, DM, NS};

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_adc-sim"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--username",
            "u",
            "--password",
            "p",
            "--seed-customers",
            "25",
            "--fault",
            "GetDealerId=http_500,times=1",
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
        .trim_end()
        .strip_prefix("adc-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert!(!base.ends_with(":0") && !base.ends_with('/'), "{base}");

    let http = reqwest::Client::new();
    let call = |path: &str, op: &str, params: &str| {
        http.post(format!("{base}{path}"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{NS}/{op}\""))
            .body(envelope_as("u", "p", op, params))
            .send()
    };
    let r = reply(
        call(CM, "GetCustomerList", "<includeTermed>true</includeTermed>")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(texts(&r.body, "int").len(), 25);

    let first = reply(call(DM, "GetDealerId", "").await.unwrap()).await;
    assert_eq!(first.status, 500, "--fault is in force");
    let second = reply(call(DM, "GetDealerId", "").await.unwrap()).await;
    assert_eq!(second.status, 200);
    assert_eq!(texts(&second.body, "GetDealerIdResult"), vec!["7104"]);
}

#[test]
fn help_documents_the_fault_syntax_and_bad_rules_fail() {
    let out = Command::new(env!("CARGO_BIN_EXE_adc-sim"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--fault",
        "latency:MS",
        "http_500",
        "throttle",
        "fault:TEXT",
        "bad_credentials",
        "probability=P",
        "--seed-customers",
    ] {
        assert!(text.contains(word), "{word} in help:\n{text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_adc-sim"))
        .args(["--username", "u", "--password", "p", "--fault", "X=boom"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
