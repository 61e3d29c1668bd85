//! The service in the test's own process, as crates.io's `TestApp`: the same
//! state, routes and middleware as `crosslink serve`, on a free loopback
//! port, but with no job runner. The test runs the queue itself
//! (`run_pending_jobs`), so it never waits for a runner to come round, and a
//! test that leaves a job queued or running fails when the service drops.
//!
//! Replicas, crashes, logs and the command line keep the real binary
//! (`Service::start_on`).

use actix_web::web;
use api::state::AppState;

pub struct InProcess {
    pub state: web::Data<AppState>,
    server: actix_web::dev::ServerHandle,
}

impl InProcess {
    /// Builds the state from `vars` (`CROSSLINK__…` as the binary reads its
    /// environment) and starts serving; returns it and its base URL.
    pub async fn start(vars: Vec<(String, String)>) -> (Self, String) {
        let vars = vars.into_iter().collect();
        let settings = api::config::Settings::load_strict(None, Some(vars))
            .expect("the in-process settings load");
        let state = web::Data::new(
            api::app::build_state(settings)
                .await
                .expect("the in-process service starts"),
        );
        let (server, addrs) = api::app::http_server(state.clone(), "127.0.0.1:0", 1)
            .expect("the in-process service listens");
        let handle = server.handle();
        tokio::spawn(server);
        let base = format!("http://{}", addrs[0]);
        (
            Self {
                state,
                server: handle,
            },
            base,
        )
    }

    /// Runs every due job to its end; how many attempts ran.
    pub async fn run_pending_jobs(&self) -> usize {
        api::worker::run_pending(&self.state)
            .await
            .expect("the queue can be run")
    }

    /// Jobs still queued or running, by kind and state.
    pub async fn unfinished_jobs(&self) -> Vec<(String, String, u64)> {
        unfinished_jobs(&self.state).await
    }

    /// Fails the test when it left a job behind (not while it is failing
    /// already). Drop cannot wait, so the look runs on a runtime of its own.
    pub fn check_no_jobs_left(&self) {
        if std::thread::panicking() {
            return;
        }
        let state = self.state.clone();
        let left = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move { unfinished_jobs(&state).await })
        })
        .join()
        .expect("the job figures read");
        assert!(
            left.is_empty(),
            "the test left jobs behind (kind, state, count): {left:?}; run them (run_pending_jobs, quiesce) or cancel them"
        );
    }

    pub fn stop(&self) {
        drop(self.server.stop(false));
    }
}

async fn unfinished_jobs(state: &web::Data<AppState>) -> Vec<(String, String, u64)> {
    let stats = state
        .store
        .job_stats(chrono::Utc::now())
        .await
        .expect("the job figures read");
    stats
        .by_state
        .into_iter()
        .filter(|(_, state, n)| matches!(state.as_str(), "queued" | "running") && *n > 0)
        .collect()
}
