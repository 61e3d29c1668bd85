//! The XML of the SOAP envelopes: writing requests and reading answers.
//!
//! Requests are written with quick-xml's writer from a small tree of
//! [`Node`]s, so every value is escaped in one place. Answers are read into a
//! small tree of [`Element`]s named by their local names: ADC's prefixes and
//! namespaces vary between SOAP stacks, and elements we do not know are kept
//! but ignored, so a richer answer never breaks the client.

use std::borrow::Cow;

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

/// The namespace of every ADC element.
pub(crate) const ADC_NS: &str = "http://www.alarm.com/WebServices";
const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";

/// An element of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub name: Cow<'static, str>,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    Text(String),
    Children(Vec<Node>),
}

impl Node {
    pub fn text(name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            content: Content::Text(value.into()),
        }
    }

    pub fn parent(name: impl Into<Cow<'static, str>>, children: Vec<Node>) -> Self {
        Self {
            name: name.into(),
            content: Content::Children(children),
        }
    }
}

/// Builds the children of an element, leaving out what is empty so that ADC
/// applies its own defaults.
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<Node>);

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    /// Always written, even when empty.
    pub fn text(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.push(Node::text(name, value));
        self
    }

    /// Written only when not blank.
    pub fn some_text(self, name: &'static str, value: &str) -> Self {
        if value.trim().is_empty() {
            self
        } else {
            self.text(name, value)
        }
    }

    pub fn opt<T: ToString>(self, name: &'static str, value: Option<T>) -> Self {
        match value {
            Some(v) => self.text(name, v.to_string()),
            None => self,
        }
    }

    pub fn bool(self, name: &'static str, value: bool) -> Self {
        self.text(name, if value { "true" } else { "false" })
    }

    pub fn node(mut self, node: Node) -> Self {
        self.0.push(node);
        self
    }

    /// A nested element, left out when it has no children.
    pub fn group(self, name: &'static str, fields: Fields) -> Self {
        if fields.0.is_empty() {
            self
        } else {
            self.node(Node::parent(name, fields.0))
        }
    }

    /// `<list><item>a</item><item>b</item></list>`, left out when empty.
    pub fn list(self, name: &'static str, item: &'static str, values: &[String]) -> Self {
        let items: Vec<Node> = values
            .iter()
            .filter(|v| !v.trim().is_empty())
            .map(|v| Node::text(item, v.clone()))
            .collect();
        if items.is_empty() {
            self
        } else {
            self.node(Node::parent(name, items))
        }
    }

    pub fn into_nodes(self) -> Vec<Node> {
        self.0
    }
}

/// A value that XML 1.0 cannot carry (a control character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnwritableText {
    pub element: String,
}

/// The credentials of the `Authentication` header.
pub(crate) struct Credentials<'a> {
    pub user: &'a str,
    pub password: &'a str,
}

/// The whole SOAP 1.1 request: `<operation xmlns=ADC>{body}</operation>`
/// under an envelope whose header carries the credentials.
pub(crate) fn envelope(
    credentials: &Credentials<'_>,
    operation: &str,
    body: &[Node],
) -> Result<Vec<u8>, UnwritableText> {
    let header = [
        Node::text("User", credentials.user),
        Node::text("Password", credentials.password),
        Node::text("TwoFactorDeviceId", ""),
    ];
    for node in header.iter().chain(body) {
        check_writable(node)?;
    }
    let mut writer = Writer::new(Vec::with_capacity(1024));
    // Writing to a Vec cannot fail.
    let write = |writer: &mut Writer<Vec<u8>>| -> std::io::Result<()> {
        writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))?;
        writer
            .create_element("soap:Envelope")
            .with_attribute(("xmlns:xsi", XSI_NS))
            .with_attribute(("xmlns:xsd", XSD_NS))
            .with_attribute(("xmlns:soap", SOAP_NS))
            .write_inner_content(|w| {
                w.create_element("soap:Header").write_inner_content(|w| {
                    w.create_element("Authentication")
                        .with_attribute(("xmlns", ADC_NS))
                        .write_inner_content(|w| write_nodes(w, &header))?;
                    Ok(())
                })?;
                w.create_element("soap:Body").write_inner_content(|w| {
                    w.create_element(operation)
                        .with_attribute(("xmlns", ADC_NS))
                        .write_inner_content(|w| write_nodes(w, body))?;
                    Ok(())
                })?;
                Ok(())
            })?;
        Ok(())
    };
    write(&mut writer).expect("writing XML to memory cannot fail");
    Ok(writer.into_inner())
}

fn check_writable(node: &Node) -> Result<(), UnwritableText> {
    match &node.content {
        Content::Text(t) if t.chars().any(is_unwritable) => Err(UnwritableText {
            element: node.name.to_string(),
        }),
        Content::Text(_) => Ok(()),
        Content::Children(children) => children.iter().try_for_each(check_writable),
    }
}

/// XML 1.0 allows tab, newline and carriage return among the C0 controls, and
/// no other.
fn is_unwritable(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

fn write_nodes(writer: &mut Writer<Vec<u8>>, nodes: &[Node]) -> std::io::Result<()> {
    for node in nodes {
        match &node.content {
            Content::Text(text) if text.is_empty() => {
                writer.write_event(Event::Empty(BytesStart::new(node.name.as_ref())))?;
            }
            Content::Text(text) => {
                writer
                    .create_element(node.name.as_ref())
                    .write_text_content(BytesText::from_escaped(escape_text(text)))?;
            }
            Content::Children(children) => {
                writer
                    .create_element(node.name.as_ref())
                    .write_inner_content(|w| write_nodes(w, children))?;
            }
        }
    }
    Ok(())
}

/// All five predefined entities, and carriage returns as character
/// references: a parser turns a raw `\r` into `\n`, and a password must come
/// through exactly.
fn escape_text(text: &str) -> Cow<'_, str> {
    let escaped = escape(text);
    if escaped.contains('\r') {
        Cow::Owned(escaped.replace('\r', "&#13;"))
    } else {
        escaped
    }
}

/// An element of an answer, by its local name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Element {
    pub name: String,
    /// The element's own text (CDATA and references resolved), untrimmed.
    pub text: String,
    /// `xsi:nil="true"`.
    pub nil: bool,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name` (ASCII case-insensitive: SOAP stacks
    /// disagree on the case of parameter names).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The element at a path of child names.
    pub fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |el, name| el.child(name))
    }

    /// The trimmed text, `None` for nil or blank.
    pub fn value(&self) -> Option<&str> {
        let t = self.text.trim();
        (!self.nil && !t.is_empty()).then_some(t)
    }
}

/// Why an answer could not be read as XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub String);

/// Reads a whole document into its root element.
pub(crate) fn parse(bytes: &[u8]) -> Result<Element, Malformed> {
    let text = std::str::from_utf8(bytes).map_err(|e| Malformed(format!("not UTF-8: {e}")))?;
    // A BOM is allowed before the declaration.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| Malformed(format!("at byte {}: {e}", reader.error_position())))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(Malformed("content after the root element".into()));
                }
                stack.push(open(&start)?);
            }
            Event::Empty(start) => {
                let el = open(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(Malformed("content after the root element".into())),
                }
            }
            Event::End(_) => {
                // The reader checks that end names match their start.
                let el = stack
                    .pop()
                    .ok_or_else(|| Malformed("an end tag without a start".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::CData(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.xml10_content();
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| Malformed(format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                    Err(e) => return Err(Malformed(format!("bad character reference: {e}"))),
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(Malformed(format!(
            "the document ends inside <{}>",
            stack.last().map(|e| e.name.as_str()).unwrap_or_default()
        )));
    }
    root.ok_or_else(|| Malformed("no root element".into()))
}

fn open(start: &BytesStart<'_>) -> Result<Element, Malformed> {
    let mut el = Element {
        name: start.local_name().as_ref().to_owned(),
        ..Element::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| Malformed(format!("bad attribute in <{}>: {e}", el.name)))?;
        if attr.key.local_name().as_ref() == "nil" {
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .unwrap_or(Cow::Borrowed(""));
            el.nil = value.trim() == "true" || value.trim() == "1";
        }
    }
    Ok(el)
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), Malformed> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(Malformed("text outside the root element".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds<'a>(user: &'a str, password: &'a str) -> Credentials<'a> {
        Credentials { user, password }
    }

    #[test]
    fn envelope_has_the_header_and_the_operation_in_the_adc_namespace() {
        let body = [Node::parent(
            "input",
            vec![Node::text("CustomerId", "42"), Node::text("Empty", "")],
        )];
        let xml = envelope(&creds("dealer", "pw"), "GetCustomerInfo_V2", &body).unwrap();
        let xml = String::from_utf8(xml).unwrap();
        assert!(xml.starts_with(r#"<?xml version="1.0" encoding="utf-8"?>"#));
        assert!(xml.contains(
            r#"<Authentication xmlns="http://www.alarm.com/WebServices"><User>dealer</User><Password>pw</Password><TwoFactorDeviceId/></Authentication>"#
        ));
        assert!(xml.contains(
            r#"<soap:Body><GetCustomerInfo_V2 xmlns="http://www.alarm.com/WebServices"><input><CustomerId>42</CustomerId><Empty/></input></GetCustomerInfo_V2></soap:Body>"#
        ));

        let doc = parse(xml.as_bytes()).unwrap();
        assert_eq!(doc.name, "Envelope");
        assert_eq!(
            doc.at(&["Body", "GetCustomerInfo_V2", "input", "CustomerId"])
                .and_then(Element::value),
            Some("42")
        );
    }

    #[test]
    fn every_value_is_escaped_and_comes_back_exactly() {
        let nasty = "p<a&s\"s'w>o]]>rd\r\n\t é &amp;";
        let xml = envelope(
            &creds("us<er>&", nasty),
            "GetRepList",
            &[Node::text("Note", nasty)],
        )
        .unwrap();
        let text = String::from_utf8(xml.clone()).unwrap();
        assert!(!text.contains("p<a"));
        assert!(!text.contains("&s\""));
        let doc = parse(&xml).unwrap();
        let auth = doc.at(&["Header", "Authentication"]).unwrap();
        assert_eq!(auth.child("User").unwrap().text, "us<er>&");
        assert_eq!(auth.child("Password").unwrap().text, nasty);
        assert_eq!(doc.at(&["Body", "GetRepList", "Note"]).unwrap().text, nasty);
    }

    #[test]
    fn control_characters_are_refused() {
        let err = envelope(&creds("u", "pw\u{1}"), "GetDealerId", &[]).unwrap_err();
        assert_eq!(err.element, "Password");
    }

    #[test]
    fn fields_leave_out_what_is_empty() {
        let nodes = Fields::new()
            .some_text("A", " ")
            .some_text("B", "b")
            .opt::<i64>("C", None)
            .opt("D", Some(4))
            .group("E", Fields::new().some_text("X", ""))
            .list("F", "Item", &["".into()])
            .list("G", "Item", &["x".into(), "y".into()])
            .bool("H", false)
            .into_nodes();
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_ref()).collect();
        assert_eq!(names, ["B", "D", "G", "H"]);
        assert_eq!(
            nodes[2],
            Node::parent("G", vec![Node::text("Item", "x"), Node::text("Item", "y")])
        );
    }

    #[test]
    fn parse_ignores_prefixes_and_resolves_text() {
        let xml = br#"<?xml version="1.0"?>
            <s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
              <s:Body>
                <r:Answer xmlns:r="urn:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
                  <r:Name>A &amp; B &#60;&#x3E; <![CDATA[<raw>]]></r:Name>
                  <r:Gone xsi:nil="true"/>
                  <Unknown><Deep>1</Deep></Unknown>
                </r:Answer>
              </s:Body>
            </s:Envelope>"#;
        let doc = parse(xml).unwrap();
        let answer = doc.at(&["Body", "Answer"]).unwrap();
        assert_eq!(
            answer.child("name").unwrap().value(),
            Some("A & B <> <raw>")
        );
        assert!(answer.child("Gone").unwrap().nil);
        assert_eq!(answer.child("Gone").unwrap().value(), None);
        assert_eq!(
            answer.at(&["Unknown", "Deep"]).and_then(Element::value),
            Some("1")
        );
    }

    #[test]
    fn parse_refuses_broken_documents() {
        for bad in [
            &b"<a><b></a>"[..],
            b"<a><b>",
            b"",
            b"just text",
            b"<a>&nope;</a>",
            b"<a/><b/>",
            b"\xff\xfe<a/>",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
