//! The suite checks its own wiring, so a green run cannot quietly mean less:
//! every end-to-end file under `tests/` is registered and therefore runs
//! (`crates/api` sets `autotests = false`), and no test holds a literal
//! calendar date later than today, which would turn CI red by itself on the
//! day it passes; and a test on the in-process service that leaves a job
//! behind fails.

mod support;

use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, Utc};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Files under `dir` (recursively) whose names end with one of `exts`.
fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.map(|e| e.expect("a readable directory entry")) {
        let path = entry.path();
        if path.is_dir() {
            files(&path, exts, out);
        } else if exts
            .iter()
            .any(|e| path.extension().is_some_and(|x| x == *e))
        {
            out.push(path);
        }
    }
}

/// The `path`s of the `[[test]]` targets in a Cargo manifest.
fn registered_tests(manifest: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut in_test = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_test = line == "[[test]]";
        } else if in_test {
            if let Some(value) = line.strip_prefix("path") {
                let value = value.trim_start().trim_start_matches('=').trim();
                paths.push(value.trim_matches('"').to_owned());
            }
        }
    }
    paths
}

#[test]
fn every_end_to_end_file_is_registered_and_every_registration_exists() {
    let root = workspace();
    let manifest_path = root.join("crates/api/Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let registered: Vec<PathBuf> = registered_tests(&manifest)
        .iter()
        .map(|p| root.join("crates/api").join(p))
        .collect();
    for path in &registered {
        assert!(
            path.is_file(),
            "{manifest_path:?} registers {path:?}, which does not exist"
        );
    }
    let registered: Vec<PathBuf> = registered
        .iter()
        .map(|p| p.canonicalize().unwrap())
        .collect();
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(root.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "rs") {
            on_disk.push(path.canonicalize().unwrap());
        }
    }
    assert!(
        on_disk.len() >= 10,
        "the end-to-end files were found: {on_disk:?}"
    );
    let unregistered: Vec<_> = on_disk.iter().filter(|p| !registered.contains(p)).collect();
    assert!(
        unregistered.is_empty(),
        "these end-to-end files never run: add a [[test]] for each to {manifest_path:?}: {unregistered:?}"
    );
    // The other crates discover their tests themselves; none may turn that off.
    let mut manifests = Vec::new();
    files(&root.join("crates"), &["toml"], &mut manifests);
    for m in manifests.iter().filter(|m| m.ends_with("Cargo.toml")) {
        if m == &manifest_path {
            continue;
        }
        let text = std::fs::read_to_string(m).unwrap();
        assert!(
            !text.contains("autotests = false"),
            "{m:?} turns off test discovery; register its tests here instead"
        );
    }
}

/// Every `YYYY-MM-DD` in `text` that is a real date later than `today`, with
/// its line number.
fn future_dates(text: &str, today: NaiveDate) -> Vec<(usize, NaiveDate)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        for start in 0..bytes.len().saturating_sub(9) {
            let candidate = &bytes[start..start + 10];
            let shaped = candidate.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                _ => b.is_ascii_digit(),
            });
            // Not the tail of a longer number (a version, a port, an id).
            let free = start == 0 || !bytes[start - 1].is_ascii_digit();
            if !shaped || !free {
                continue;
            }
            let text = std::str::from_utf8(candidate).unwrap();
            if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                if date > today {
                    found.push((n + 1, date));
                }
            }
        }
    }
    found
}

/// The part of a source file that is test code: a crate's `src` files from
/// their first `#[cfg(test)]` on, every other file whole.
fn test_part(path: &Path, text: &str) -> String {
    let in_src = path.components().any(|c| c.as_os_str() == "src");
    if !in_src {
        return text.to_owned();
    }
    match text.find("#[cfg(test)]") {
        Some(at) => {
            // Keep line numbers true: blank out what comes before.
            "\n".repeat(text[..at].matches('\n').count()) + &text[at..]
        }
        None => String::new(),
    }
}

#[test]
fn no_test_holds_a_literal_date_later_than_today() {
    let root = workspace();
    let mut paths = Vec::new();
    files(&root.join("tests"), &["rs"], &mut paths);
    files(&root.join("crates"), &["rs"], &mut paths);
    files(&root.join("scripts/client-scenario"), &["py"], &mut paths);
    files(&root.join("scripts/fuzz"), &["py"], &mut paths);
    assert!(paths.len() > 50, "the sources were found: {}", paths.len());
    let today = Utc::now().date_naive();
    let mut offenders = Vec::new();
    for path in &paths {
        if path.components().any(|c| c.as_os_str() == "target") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for (line, date) in future_dates(&test_part(path, &text), today) {
            offenders.push(format!("{}:{line}: {date}", path.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "tests must compute future dates from today (see tests/support/clock.rs), not write them:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_date_scan_finds_a_future_date_and_nothing_else() {
    let today = NaiveDate::from_ymd_opt(2026, 6, 15).unwrap();
    let next_year = today.year() + 1;
    let text = format!(
        "let a = \"{next_year}-01-10T09:00\";\nlet b = \"2025-03-09\"; // past\nv1.{next_year}-01-10 12{next_year}-02-03 {next_year}-13-40\n"
    );
    let found = future_dates(&text, today);
    assert_eq!(
        found,
        vec![
            (1, NaiveDate::from_ymd_opt(next_year, 1, 10).unwrap()),
            (3, NaiveDate::from_ymd_opt(next_year, 1, 10).unwrap())
        ]
    );
    // Source files count from their tests module on.
    let src = Path::new("crates/x/src/lib.rs");
    let code = format!(
        "// until {next_year}-05-01\n#[cfg(test)]\nmod tests {{ // {next_year}-05-02\n}}\n"
    );
    let part = test_part(src, &code);
    assert_eq!(
        future_dates(&part, today),
        vec![(3, NaiveDate::from_ymd_opt(next_year, 5, 2).unwrap())]
    );
}

/// Where `text` (non-test source) builds a job by hand: a `NewJob {` literal
/// or a `json!` payload (one written within two lines of `payload`,
/// `enqueue` or `new_job`). Jobs are built by `domain::jobs::new_job` from
/// their kind's typed payload.
fn hand_built_jobs(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let literal = code.match_indices("NewJob {").any(|(at, _)| {
            // `-> crate::jobs::NewJob {` is a signature, not a literal.
            let before = code[..at]
                .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                .trim_end();
            !["->", "struct", "impl", "for"]
                .iter()
                .any(|w| before.ends_with(w))
        });
        if literal {
            found.push((i + 1, line.trim().to_owned()));
            continue;
        }
        if code.contains("json!") {
            let context = lines[i.saturating_sub(2)..=i].join("\n");
            if ["payload", "enqueue", "new_job"]
                .iter()
                .any(|w| context.contains(w))
            {
                found.push((i + 1, line.trim().to_owned()));
            }
        }
    }
    found
}

/// The part of a `src` file before its tests module.
fn code_part(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

#[test]
fn jobs_are_built_only_from_their_definitions() {
    let root = workspace();
    let mut paths = Vec::new();
    files(&root.join("crates"), &["rs"], &mut paths);
    // The one place a queue row is built (`new_job`).
    let builder = root.join("crates/domain/src/jobs.rs");
    let mut offenders = Vec::new();
    let mut definitions = Vec::new();
    let mut checked = 0;
    for path in &paths {
        let in_src = path.components().any(|c| c.as_os_str() == "src");
        if !in_src || path.components().any(|c| c.as_os_str() == "target") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let code = code_part(&text);
        for rest in code.split("JobKind for ").skip(1) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            definitions.push(name);
        }
        if *path == builder {
            continue;
        }
        checked += 1;
        for (line, what) in hand_built_jobs(code) {
            offenders.push(format!("{}:{line}: {what}", path.display()));
        }
    }
    assert!(checked > 50, "the sources were found: {checked}");
    assert!(
        offenders.is_empty(),
        "build jobs with their kind's definition (domain::jobs::new_job), not by hand:\n{}",
        offenders.join("\n")
    );
    // Every kind declared is one the worker runs.
    let worker = std::fs::read_to_string(root.join("crates/api/src/worker.rs")).unwrap();
    assert!(definitions.len() >= 5, "job kinds found: {definitions:?}");
    let unregistered: Vec<_> = definitions
        .iter()
        .filter(|d| !worker.contains(&format!("register::<{d}>()")))
        .collect();
    assert!(
        unregistered.is_empty(),
        "job kinds the worker's registry does not run: {unregistered:?}"
    );
}

#[test]
fn the_job_scan_finds_hand_built_jobs_and_nothing_else() {
    let text = "let job = NewJob {\n    id: JobId::new(),\n    kind: \"x\".into(),\n    payload: serde_json::json!({\"a\": 1}),\n};\n\
        pub struct NewJob {\n\
        fn new_job(&self) -> crate::jobs::NewJob {\n\
        }\n\
        }\n\
        let body = serde_json::to_vec(&serde_json::json!({\"type\": t}));\n\
        store.enqueue(\n    json!({\"link_id\": 1}),\n);\n";
    let lines: Vec<usize> = hand_built_jobs(text).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, vec![1, 4, 12]);
    assert_eq!(
        code_part("a\n#[cfg(test)]\nmod tests { NewJob { } }"),
        "a\n"
    );
}

/// The ids of `FEATURES.md` (seed features S, Alarm.com A, isp I, beyond B).
fn feature_ids() -> Vec<String> {
    [("S", 20), ("A", 5), ("I", 5), ("B", 15)]
        .into_iter()
        .flat_map(|(prefix, n)| (1..=n).map(move |i| format!("{prefix}{i}")))
        .collect()
}

/// The ids named in the `//!` module headers of `text`, as whole words (a
/// range such as `S4-S9` names only its ends).
fn header_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("//!"))
        .flat_map(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Each feature is found, by its id, in the header of a module that does it
/// (`grep -rw S7 crates` leads to the code).
#[test]
fn every_feature_id_is_in_a_module_header() {
    let mut sources = Vec::new();
    files(&workspace().join("crates"), &["rs"], &mut sources);
    let mut named = std::collections::BTreeSet::new();
    for path in &sources {
        let text = std::fs::read_to_string(path).expect("a readable source file");
        named.extend(header_ids(&text));
    }
    let missing: Vec<String> = feature_ids()
        .into_iter()
        .filter(|id| !named.contains(id))
        .collect();
    assert!(missing.is_empty(), "no module header names {missing:?}");
}

#[test]
fn the_header_scan_reads_only_headers_and_whole_ids() {
    let text = "//! Pushes (S5, S9) and ranges S4-S6.\n// S7 in a plain comment\nfn s10() {}\n";
    assert_eq!(
        header_ids(text)
            .iter()
            .filter(|w| w.starts_with('S') && w.len() <= 3)
            .collect::<Vec<_>>(),
        ["S5", "S9", "S4", "S6"]
    );
}

/// Longest source file and longest function (of `crates/*/src`) a newcomer
/// is asked to hold in their head (issue 17). The simulators, which stand in for whole upstream
/// systems, and diesel's generated schema are outside the rule.
const MAX_FILE_LINES: usize = 800;
const MAX_FUNCTION_LINES: usize = 120;

fn outside_the_size_rule(path: &Path) -> bool {
    let text = path.to_string_lossy();
    [
        "crates/stages-sim/",
        "crates/adc-sim/",
        "link-store/src/schema.rs",
    ]
    .iter()
    .any(|p| text.contains(p))
}

/// Functions of `text` longer than `max` lines, as (first line, name,
/// lines): from the line of `fn` to the `}` at the same indentation.
fn long_functions(text: &str, max: usize) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = &line[..line.len() - code.len()];
        let mut rest = code;
        for qualifier in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
        ] {
            rest = rest.strip_prefix(qualifier).unwrap_or(rest);
        }
        let Some(signature) = rest.strip_prefix("fn ") else {
            continue;
        };
        let name: String = signature
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The signature ends at `{` (a body follows), `;` (none) or `}` (a
        // body on one line).
        let Some(open) = (start..lines.len()).find(|&i| {
            let l = lines[i].trim_end();
            l.ends_with('{') || l.ends_with(';') || l.ends_with('}')
        }) else {
            continue;
        };
        if !lines[open].trim_end().ends_with('{') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = (open + 1..lines.len()).find(|&i| lines[i].trim_end() == close) {
            let length = end - start + 1;
            if length > max {
                out.push((start + 1, name, length));
            }
        }
    }
    out
}

#[test]
fn no_source_file_or_function_is_too_long_to_hold() {
    let mut sources = Vec::new();
    files(&workspace().join("crates"), &["rs"], &mut sources);
    let mut too_long = Vec::new();
    let source = |p: &&PathBuf| p.to_string_lossy().contains("/src/") && !outside_the_size_rule(p);
    for path in sources.iter().filter(source) {
        let text = std::fs::read_to_string(path).expect("a readable source file");
        let shown = path.strip_prefix(workspace()).unwrap_or(path).display();
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            too_long.push(format!("{shown}: {lines} lines"));
        }
        for (line, name, length) in long_functions(&text, MAX_FUNCTION_LINES) {
            too_long.push(format!("{shown}:{line}: fn {name} is {length} lines"));
        }
    }
    assert!(
        too_long.is_empty(),
        "over {MAX_FILE_LINES} lines a file or {MAX_FUNCTION_LINES} a function: {too_long:#?}"
    );
}

#[test]
fn the_function_scan_measures_bodies_and_skips_declarations() {
    let body = "        x += 1;\n".repeat(3);
    let text = format!(
        "impl A {{\n    pub(crate) async fn long(\n        a: u8,\n    ) -> u8 {{\n{body}    }}\n    fn decl(&self);\n    fn short() {{}}\n}}\n"
    );
    assert_eq!(long_functions(&text, 5), [(2, "long".to_owned(), 7)]);
    assert!(long_functions(&text, 7).is_empty());
}

/// An in-process service with a Stages connection whose working credentials
/// have just queued its migration (S20); the simulator stays up with it.
async fn a_queued_migration() -> (stages_sim::Sim, support::Service) {
    let sim = support::start_sim(0).await;
    let svc = support::Service::in_process(support::Backend::Sqlite, Vec::new()).await;
    let admin = support::Who::admin("acme");
    let cid = svc
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    let put = svc
        .call(
            reqwest::Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(serde_json::json!({"username": support::SIM_USER, "password": support::SIM_PASSWORD})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    (sim, svc)
}

/// A test on the in-process service fails when it leaves a job queued: a
/// green run cannot hide work that never ran.
#[tokio::test]
#[should_panic(expected = "left jobs behind")]
async fn a_test_that_leaves_a_job_queued_fails() {
    let (_sim, _svc) = a_queued_migration().await;
}

/// The same test passes once the queue has run.
#[tokio::test]
async fn a_test_that_runs_its_jobs_leaves_none() {
    let (_sim, svc) = a_queued_migration().await;
    assert!(svc.run_pending_jobs().await >= 1, "the migration ran here");
}
