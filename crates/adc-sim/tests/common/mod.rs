//! Helpers shared by the integration tests: starting a simulator, sending
//! hand-written envelopes, and reading answers with quick-xml directly (not
//! with the simulator's own parser, so a bug there cannot hide itself).

#![allow(dead_code)]

use adc_sim::{FaultRule, Sim, SimConfig};
use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::Value;

pub const USER: &str = "dealer-integration";
pub const PASSWORD: &str = "not-a-real-password";
pub const CM: &str = "/WebServices/CustomerManagement.asmx";
pub const DM: &str = "/WebServices/DealerManagement.asmx";
pub const NS: &str = "http://www.alarm.com/WebServices";

pub async fn start(seed_customers: usize) -> Sim {
    start_with(seed_customers, vec![]).await
}

pub async fn start_with(seed_customers: usize, faults: Vec<FaultRule>) -> Sim {
    Sim::start(SimConfig {
        username: USER.into(),
        password: PASSWORD.into(),
        seed_customers,
        faults,
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

/// A SOAP 1.1 envelope for `op` with `params` (already XML) and credentials.
pub fn envelope_as(user: &str, password: &str, op: &str, params: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header>
    <Authentication xmlns="http://www.alarm.com/WebServices">
      <User>{user}</User>
      <Password>{password}</Password>
      <TwoFactorDeviceId />
    </Authentication>
  </soap:Header>
  <soap:Body>
    <{op} xmlns="http://www.alarm.com/WebServices">{params}</{op}>
  </soap:Body>
</soap:Envelope>"#
    )
}

pub fn envelope(op: &str, params: &str) -> String {
    envelope_as(USER, PASSWORD, op, params)
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    /// Texts of every element with this local name, in document order.
    pub fn all(&self, name: &str) -> Vec<String> {
        texts(&self.body, name)
    }

    /// Text of the first element with this local name.
    pub fn one(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }

    pub fn faultstring(&self) -> Option<String> {
        self.one("faultstring")
    }

    pub fn ints(&self) -> Vec<i64> {
        self.all("int").iter().map(|t| t.parse().unwrap()).collect()
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub fn new(sim: &Sim) -> Self {
        Client {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
            base: sim.base_url(),
        }
    }

    /// POSTs a raw body with SOAP 1.1 headers (`action` is the operation).
    pub async fn post_raw(&self, path: &str, action: Option<&str>, body: String) -> Reply {
        let mut rb = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body);
        if let Some(op) = action {
            rb = rb.header("SOAPAction", format!("\"{NS}/{op}\""));
        }
        reply(rb.send().await.expect("an answer")).await
    }

    /// Calls `op` on `path` as the configured user.
    pub async fn call(&self, path: &str, op: &str, params: &str) -> Reply {
        self.post_raw(path, Some(op), envelope(op, params)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        reply(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("an answer"),
        )
        .await
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.expect("an answer");
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    pub async fn stats(&self) -> Value {
        self.admin(reqwest::Method::GET, "/admin/stats", None).await
    }
}

pub async fn reply(res: reqwest::Response) -> Reply {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = res.text().await.expect("a body");
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

/// Texts of every element with local name `name` (entities resolved).
pub fn texts(xml: &str, name: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut depth_in = 0usize;
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("{e} in {xml}"))
        {
            Event::Start(e) => {
                if current.is_some() {
                    depth_in += 1;
                } else if e.local_name().as_ref() == name {
                    current = Some(String::new());
                    depth_in = 0;
                }
            }
            Event::Empty(e) if current.is_none() && e.local_name().as_ref() == name => {
                out.push(String::new())
            }
            Event::End(_) if current.is_some() => {
                if depth_in == 0 {
                    out.push(current.take().unwrap());
                } else {
                    depth_in -= 1;
                }
            }
            Event::Text(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(c) = current.as_mut() {
                    let s = match &*r {
                        "lt" => "<".to_string(),
                        "gt" => ">".to_string(),
                        "amp" => "&".to_string(),
                        "apos" => "'".to_string(),
                        "quot" => "\"".to_string(),
                        _ => r.resolve_char_ref().unwrap().unwrap().to_string(),
                    };
                    c.push_str(&s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// Whether `xml` is well-formed (quick-xml with end-name checks).
pub fn well_formed(xml: &str) -> Result<usize, String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut depth = 0i64;
    let mut elements = 0usize;
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(_) => {
                depth += 1;
                elements += 1;
            }
            Event::Empty(_) => elements += 1,
            Event::End(_) => depth -= 1,
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced: depth {depth} at the end"));
    }
    Ok(elements)
}
