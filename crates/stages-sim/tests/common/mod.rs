//! A small HTTP helper shared by the integration tests.

#![allow(dead_code)]

use reqwest::Method;
use serde_json::Value;
use stages_sim::{FaultRule, Sim, SimConfig};

pub const USER: &str = "dealer";
pub const PASSWORD: &str = "s3cret";

pub async fn start(seed_sites: usize) -> Sim {
    start_with(seed_sites, vec![]).await
}

pub async fn start_with(seed_sites: usize, faults: Vec<FaultRule>) -> Sim {
    Sim::start(SimConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        username: USER.into(),
        password: PASSWORD.into(),
        seed_sites,
        faults,
    })
    .await
    .expect("sim starts")
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub auth: Option<(String, String)>,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl Client {
    pub fn new(sim: &Sim) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: sim.base_url(),
            auth: Some((USER.into(), PASSWORD.into())),
        }
    }

    pub fn anonymous(sim: &Sim) -> Self {
        Client {
            auth: None,
            ..Self::new(sim)
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.expect("request is answered");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body is read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await
    }
}
