//! A closed-loop HTTP load driver: a fixed number of workers, each sending its
//! next request as soon as the last one is answered, over keep-alive
//! connections. A figure and its baseline go through the same driver so the
//! client's own cost cancels out of the ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

/// A small, fast, seedable generator (SplitMix64) for picking random ids.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `1..=n` (n > 0; the modulo bias is negligible here).
    pub fn one_to(&mut self, n: u64) -> u64 {
        self.next_u64() % n + 1
    }
}

/// How to load: workers, warm-up (not counted) and measured time.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What a measured run saw.
#[derive(Debug)]
pub struct LoadResult {
    pub requests: u64,
    pub elapsed: Duration,
    /// Sorted, in microseconds.
    latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The nearest-rank percentile `p` (0..=100), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies_us.len()) - 1;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// Sends `GET url(rng)` with `headers` from `load.concurrency` workers;
/// any answer but 200 (or a transport error) fails the run.
pub async fn run_get(
    http: &reqwest::Client,
    headers: reqwest::header::HeaderMap,
    url: Arc<dyn Fn(&mut Rng) -> String + Send + Sync>,
    load: Load,
) -> anyhow::Result<LoadResult> {
    let http = http.clone();
    run(
        Arc::new(move |_: &Turn, rng: &mut Rng| http.get(url(rng)).headers(headers.clone())),
        &[200],
        load,
    )
    .await
}

/// Who is sending a request of [`run`]: the worker and its how-many-th request.
pub struct Turn {
    pub worker: usize,
    pub seq: u64,
}

/// Builds the next request of a worker.
pub type MakeRequest = Arc<dyn Fn(&Turn, &mut Rng) -> reqwest::RequestBuilder + Send + Sync>;

/// Sends `make(turn, rng)` from `load.concurrency` workers; any answer whose
/// status is not in `ok` (or a transport error) fails the run.
pub async fn run(make: MakeRequest, ok: &'static [u16], load: Load) -> anyhow::Result<LoadResult> {
    let until = Instant::now() + load.warmup + load.duration;
    run_until(
        make,
        ok,
        load.concurrency,
        load.warmup,
        None,
        Arc::new(move || Instant::now() >= until),
    )
    .await
}

/// Whether a run of [`run_until`] is over; asked before each request.
pub type Stop = Arc<dyn Fn() -> bool + Send + Sync>;

/// [`run`] until `stop` says so rather than for a fixed time: for loads
/// that end with an event (a burst sent, a job done) or last as long as one.
/// With `pace`, a worker starts a request at most once per `pace` (a rate
/// the system is meant to keep up with, rather than all it can take).
pub async fn run_until(
    make: MakeRequest,
    ok: &'static [u16],
    concurrency: usize,
    warmup: Duration,
    pace: Option<Duration>,
    stop: Stop,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let make = make.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            // Deterministic per worker, so runs ask for the same ids.
            let mut rng = Rng::new(0x5EED_0000_0000_0000 | w as u64);
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut last = start;
            // Paced workers start spread over one interval, not all at once.
            let mut next_at =
                start + pace.map_or(Duration::ZERO, |p| p * w as u32 / concurrency as u32);
            for seq in 0.. {
                if let Some(p) = pace {
                    tokio::time::sleep_until(next_at.into()).await;
                    next_at += p;
                }
                if stop() {
                    break;
                }
                let rb = make(&Turn { worker: w, seq }, &mut rng);
                let sent = Instant::now();
                let (client, req) = rb.build_split();
                let req = req.map_err(|e| format!("building a request: {e}"))?;
                let (method, url) = (req.method().clone(), req.url().clone());
                let what = || format!("{method} {url}");
                let outcome = match client.execute(req).await {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) if ok.contains(&status.as_u16()) => Ok(()),
                            Ok(body) => Err(format!(
                                "{} answered {status}: {}",
                                what(),
                                String::from_utf8_lossy(&body)
                            )),
                            Err(e) => Err(format!("{}: {e}", what())),
                        }
                    }
                    Err(e) => Err(format!("{}: {e}", what())),
                };
                let done = Instant::now();
                outcome?;
                if sent >= measure_from {
                    let us = done.duration_since(sent).as_micros();
                    latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    last = done;
                }
            }
            Ok::<_, String>((latencies, last))
        }));
    }
    let mut all = Vec::new();
    let mut last = measure_from;
    for w in workers {
        match w.await? {
            Ok((latencies, end)) => {
                all.extend(latencies);
                last = last.max(end);
            }
            Err(e) => bail!(e),
        }
    }
    all.sort_unstable();
    Ok(LoadResult {
        requests: all.len() as u64,
        elapsed: last.duration_since(measure_from),
        latencies_us: all,
    })
}

/// The nearest-rank percentile `p` (0..=100) of sorted `values`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let r = LoadResult {
            requests: 100,
            elapsed: Duration::from_secs(2),
            latencies_us: (1..=100).map(|i| i * 1000).collect(),
        };
        assert_eq!(r.per_second(), 50.0);
        assert_eq!(r.percentile_ms(50.0), 50.0);
        assert_eq!(r.percentile_ms(99.0), 99.0);
        assert_eq!(r.percentile_ms(100.0), 100.0);
    }

    #[test]
    fn percentiles_of_plain_values() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 99.0), 10.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn random_ids_stay_in_range() {
        let mut rng = Rng::new(7);
        assert!((0..10_000)
            .map(|_| rng.one_to(10))
            .all(|n| (1..=10).contains(&n)));
    }
}
