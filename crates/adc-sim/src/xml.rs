//! The simulator's own XML handling: a small element tree read with
//! quick-xml's namespace-aware reader, the SOAP envelope around it, and a
//! string writer for answers.
//!
//! It is deliberately independent of `adc-client`: if both sides shared one
//! envelope codec, a mistake in it would be invisible to the tests. The tree
//! is bounded (depth, size) so that hostile bodies end in a SOAP fault, not in
//! a stack overflow or a runaway allocation.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The namespace of every Alarm.com dealer web service element.
pub const ADC_NS: &str = "http://www.alarm.com/WebServices";
/// SOAP 1.1 envelope namespace.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Deeper documents are refused (a SOAP call needs well under ten levels).
const MAX_DEPTH: usize = 64;
/// More elements than this are refused.
const MAX_ELEMENTS: usize = 200_000;

/// One element: its namespace, local name, element children and text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub children: Vec<Element>,
    /// The concatenated character data directly inside the element.
    pub text: String,
}

impl Element {
    /// Whether this is `name` in namespace `ns`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.name == name && self.ns.as_deref() == Some(ns)
    }

    /// The first child `name` in namespace `ns`.
    pub fn find(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// The first child `name` in the Alarm.com namespace.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.find(ADC_NS, name)
    }

    /// The trimmed text of child `name` (Alarm.com namespace), if present.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// The trimmed text of child `name`, or "" when absent.
    pub fn string(&self, name: &str) -> String {
        self.text_of(name).unwrap_or_default().to_string()
    }
}

/// Reads one XML document into a tree; `Err` says why it is not acceptable.
pub fn parse_document(input: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(input);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;

    loop {
        let at = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("XML error after byte {at}: {e}"))?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => Some(ns.0.to_string()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(format!("undeclared namespace prefix {prefix:?}"))
            }
        };
        match event {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                return Err(format!(
                    "more than one root element (found <{}>)",
                    e.name().0
                ));
            }
            Event::Start(e) => {
                elements += 1;
                if stack.len() >= MAX_DEPTH || elements > MAX_ELEMENTS {
                    return Err("document too deep or too large".into());
                }
                stack.push(Element {
                    ns,
                    name: e.local_name().into_inner().to_string(),
                    ..Element::default()
                });
            }
            Event::Empty(e) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err("document too large".into());
                }
                let el = Element {
                    ns,
                    name: e.local_name().into_inner().to_string(),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unexpected end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(t) => match stack.last_mut() {
                Some(el) => el.text.push_str(&t.xml10_content()),
                None => return Err("CDATA outside the root element".into()),
            },
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c,
                    None => match &*r {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(format!("unknown entity &{other};")),
                    },
                };
                match stack.last_mut() {
                    Some(el) => el.text.push(ch),
                    None => return Err("entity outside the root element".into()),
                }
            }
            Event::DocType(_) => return Err("DOCTYPE is not allowed in SOAP messages".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document (unclosed elements)".into());
    }
    root.ok_or_else(|| "no root element".to_string())
}

/// The SOAP version of a message; answers use the version of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

impl SoapVersion {
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_NS,
            SoapVersion::V12 => SOAP12_NS,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::V11 => "text/xml; charset=utf-8",
            SoapVersion::V12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// A parsed request envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub version: SoapVersion,
    /// The `Authentication` header block, if sent.
    pub authentication: Option<Element>,
    /// The single element inside `Body`: the operation and its parameters.
    pub operation: Element,
}

/// Reads a request body as a SOAP 1.1 or 1.2 envelope.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, String> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("empty request body; expected a SOAP envelope".into());
    }
    let root = parse_document(text)?;
    let version = if root.is(SOAP11_NS, "Envelope") {
        SoapVersion::V11
    } else if root.is(SOAP12_NS, "Envelope") {
        SoapVersion::V12
    } else {
        return Err(format!(
            "root element is {{{}}}{}, not a SOAP 1.1 or 1.2 Envelope",
            root.ns.as_deref().unwrap_or(""),
            root.name
        ));
    };
    let ns = version.namespace();
    let authentication = root
        .find(ns, "Header")
        .and_then(|h| h.find(ADC_NS, "Authentication"))
        .cloned();
    let body = root
        .find(ns, "Body")
        .ok_or("the Envelope has no Body in the envelope namespace")?;
    let mut ops = body.children.iter();
    let operation = ops.next().ok_or("the SOAP Body is empty")?.clone();
    if ops.next().is_some() {
        return Err("the SOAP Body holds more than one element".into());
    }
    Ok(Envelope {
        version,
        authentication,
        operation,
    })
}

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// A string being filled with XML, with helpers for leaf elements.
#[derive(Debug, Default)]
pub struct Writer {
    pub out: String,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    pub fn open(&mut self, name: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// `<name>text</name>`, or `<name />` for empty text.
    pub fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        if text.is_empty() {
            self.out.push('<');
            self.out.push_str(name);
            self.out.push_str(" />");
        } else {
            self.open(name);
            self.out.push_str(&escape(text));
            self.close(name);
        }
        self
    }

    pub fn num(&mut self, name: &str, v: i64) -> &mut Self {
        self.open(name);
        self.out.push_str(&v.to_string());
        self.close(name)
    }

    pub fn flag(&mut self, name: &str, v: bool) -> &mut Self {
        self.leaf(name, if v { "true" } else { "false" })
    }

    pub fn raw(&mut self, xml: &str) -> &mut Self {
        self.out.push_str(xml);
        self
    }
}

/// A whole answer envelope around `<{op}Response>` holding `inner`.
pub fn response_envelope(version: SoapVersion, op: &str, inner: &str) -> String {
    let mut s = String::with_capacity(inner.len() + 400);
    envelope_start(&mut s, version);
    s.push('<');
    s.push_str(op);
    s.push_str("Response xmlns=\"");
    s.push_str(ADC_NS);
    s.push_str("\">");
    s.push_str(inner);
    s.push_str("</");
    s.push_str(op);
    s.push_str("Response>");
    envelope_end(&mut s);
    s
}

/// Who a fault blames: the caller or the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    Client,
    Server,
}

/// A fault envelope: `soap:Client`/`soap:Server` in 1.1, `Sender`/`Receiver` in 1.2.
pub fn fault_envelope(version: SoapVersion, code: FaultCode, message: &str) -> String {
    let mut s = String::with_capacity(message.len() + 400);
    envelope_start(&mut s, version);
    let msg = escape(message);
    match version {
        SoapVersion::V11 => {
            let code = match code {
                FaultCode::Client => "soap:Client",
                FaultCode::Server => "soap:Server",
            };
            s.push_str("<soap:Fault><faultcode>");
            s.push_str(code);
            s.push_str("</faultcode><faultstring>");
            s.push_str(&msg);
            s.push_str("</faultstring><detail /></soap:Fault>");
        }
        SoapVersion::V12 => {
            let code = match code {
                FaultCode::Client => "soap:Sender",
                FaultCode::Server => "soap:Receiver",
            };
            s.push_str("<soap:Fault><soap:Code><soap:Value>");
            s.push_str(code);
            s.push_str("</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang=\"en\">");
            s.push_str(&msg);
            s.push_str("</soap:Text></soap:Reason><soap:Detail /></soap:Fault>");
        }
    }
    envelope_end(&mut s);
    s
}

fn envelope_start(s: &mut String, version: SoapVersion) {
    s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"");
    s.push_str(version.namespace());
    s.push_str(
        "\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body>",
    );
}

fn envelope_end(s: &mut String) {
    s.push_str("</soap:Body></soap:Envelope>");
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header>
    <Authentication xmlns="http://www.alarm.com/WebServices">
      <User>dealer</User><Password>a&amp;b&#33;</Password><TwoFactorDeviceId/>
    </Authentication>
  </soap:Header>
  <soap:Body>
    <adc:GetCustomerInfo_V2 xmlns:adc="http://www.alarm.com/WebServices">
      <adc:CallerVersion>2</adc:CallerVersion>
      <adc:CustomerId><![CDATA[10000001]]></adc:CustomerId>
    </adc:GetCustomerInfo_V2>
  </soap:Body>
</soap:Envelope>"#;

    #[test]
    fn reads_a_soap11_envelope() {
        let env = parse_envelope(ENV.as_bytes()).unwrap();
        assert_eq!(env.version, SoapVersion::V11);
        let auth = env.authentication.unwrap();
        assert_eq!(auth.text_of("User"), Some("dealer"));
        assert_eq!(auth.text_of("Password"), Some("a&b!"));
        assert!(env.operation.is(ADC_NS, "GetCustomerInfo_V2"));
        assert_eq!(env.operation.text_of("CustomerId"), Some("10000001"));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "   ",
            "not xml",
            "<a><b></a>",
            "<a>",
            "<a/><b/>",
            "<x:a/>",
            "<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>",
            "<Envelope><Body/></Envelope>",
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"/>"#,
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#,
        ] {
            assert!(parse_envelope(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_envelope(&[0xff, 0xfe, 0x00]).is_err());
        let deep = "<a>".repeat(10_000);
        assert!(parse_document(&deep).is_err());
    }

    #[test]
    fn writes_escaped_leaves() {
        let mut w = Writer::new();
        w.leaf("A", "x<y&z")
            .leaf("B", "")
            .num("C", -3)
            .flag("D", true);
        assert_eq!(w.out, "<A>x&lt;y&amp;z</A><B /><C>-3</C><D>true</D>");
        let f = fault_envelope(SoapVersion::V11, FaultCode::Client, "bad <thing>");
        let doc = parse_document(&f).unwrap();
        let fault = doc.find(SOAP11_NS, "Body").unwrap().children[0].clone();
        assert_eq!(fault.children[1].text, "bad <thing>");
    }
}
