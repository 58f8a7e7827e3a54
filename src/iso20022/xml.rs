//! A small, hostile-input-safe XML reader into an element tree, and an
//! escaping writer. Refuses DOCTYPE, entity references other than the five
//! predefined ones and character references, processing instructions, and
//! anything not UTF-8; caps size, depth, element count and text length.

use std::borrow::Cow;
use std::rc::Rc;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};

use super::CodecError;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_text_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 32 * 1024 * 1024,
            max_depth: 32,
            max_elements: 500_000,
            max_text_chars: 4096,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Shared between elements: a document uses a handful of namespaces,
    /// and one string each saves an allocation per element.
    pub ns: Rc<str>,
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
    /// Characters in `text`, kept as text arrives (counting each time
    /// would be quadratic in the number of text pieces).
    text_chars: usize,
}

impl Element {
    /// The first child with this local name in the parent's namespace.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name == name && same_ns(&c.ns, &self.ns))
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| c.name == name && same_ns(&c.ns, &self.ns))
    }

    pub fn path(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |el, name| el.child(name))
    }

    /// The trimmed text at `path`, which must be present and non-empty.
    pub fn text_at(&self, path: &[&str]) -> Result<&str, CodecError> {
        match self.path(path).map(|e| e.text.trim()) {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(CodecError::new(
                "missing_element",
                format!("{} has no {}", self.name, path.join("/")),
            )),
        }
    }

    pub fn opt_text_at(&self, path: &[&str]) -> Option<&str> {
        self.path(path)
            .map(|e| e.text.trim())
            .filter(|t| !t.is_empty())
    }

    /// The only element child, whatever its namespace (wildcard content).
    pub fn single_child(&self) -> Result<&Element, CodecError> {
        match self.children.as_slice() {
            [one] => Ok(one),
            _ => Err(CodecError::new(
                "invalid_structure",
                format!("{} must hold exactly one element", self.name),
            )),
        }
    }

    pub fn expect(&self, ns: &str, name: &str) -> Result<&Element, CodecError> {
        if self.name != name {
            return Err(CodecError::new(
                "wrong_message",
                format!("expected {name}, found {}", self.name),
            ));
        }
        if &*self.ns != ns {
            return Err(CodecError::new(
                "wrong_namespace",
                format!("{name} must be in namespace {ns}, found '{}'", self.ns),
            ));
        }
        Ok(self)
    }
}

fn same_ns(a: &Rc<str>, b: &Rc<str>) -> bool {
    Rc::ptr_eq(a, b) || a == b
}

fn malformed(e: impl std::fmt::Display) -> CodecError {
    CodecError::new("malformed_xml", e.to_string())
}

pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Element, CodecError> {
    if bytes.len() > limits.max_bytes {
        return Err(CodecError::new(
            "too_large",
            format!(
                "the document is {} bytes; at most {} are accepted",
                bytes.len(),
                limits.max_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| CodecError::new("invalid_utf8", format!("the body is not UTF-8: {e}")))?;
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = true;
    config.check_comments = true;

    let mut stack: Vec<Element> = Vec::new();
    let mut namespaces: Vec<Rc<str>> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(malformed)?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(malformed("content after the root element"));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(CodecError::new(
                        "too_many_elements",
                        "the document has too many elements",
                    ));
                }
                if stack.len() >= limits.max_depth {
                    return Err(CodecError::new(
                        "too_deep",
                        format!("elements nest deeper than {}", limits.max_depth),
                    ));
                }
                let ns: Rc<str> = match ns {
                    ResolveResult::Bound(n) => match namespaces.iter().find(|s| &***s == n.0) {
                        Some(shared) => shared.clone(),
                        None => {
                            // Our documents use a handful; many is an attack
                            // on the lookup above.
                            if namespaces.len() >= MAX_NAMESPACES {
                                return Err(CodecError::new(
                                    "too_large",
                                    "the document uses too many namespaces",
                                ));
                            }
                            let shared: Rc<str> = Rc::from(n.0);
                            namespaces.push(shared.clone());
                            shared
                        }
                    },
                    ResolveResult::Unbound => Rc::from(""),
                    ResolveResult::Unknown(p) => {
                        return Err(malformed(format!("unknown namespace prefix '{p}'")));
                    }
                };
                // Checked before iterating: attribute checks are quadratic in
                // their number, and our documents carry a few namespaces only.
                if start.attributes_raw().len() > MAX_ATTRIBUTE_BYTES {
                    return Err(CodecError::new(
                        "too_large",
                        "an element has too many attributes",
                    ));
                }
                for attr in start.attributes() {
                    // Checks that attribute values carry no custom entities.
                    let value = attr
                        .map_err(malformed)?
                        .normalized_value(XmlVersion::Explicit1_0)
                        .map_err(|e| {
                            CodecError::new("entity_forbidden", format!("attribute value: {e}"))
                        })?;
                    check_chars(&value)?;
                }
                let name = start.local_name().into_inner().to_owned();
                stack.push(Element {
                    ns,
                    name,
                    text: String::new(),
                    children: Vec::new(),
                    text_chars: 0,
                });
            }
            Event::End(_) => {
                let done = stack.pop().ok_or_else(|| malformed("unmatched end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                push_text(&mut stack, &s, limits)?;
            }
            Event::CData(c) => {
                let s = c.xml10_content();
                push_text(&mut stack, &s, limits)?;
            }
            Event::GeneralRef(r) => {
                let resolved: Cow<'_, str> =
                    if let Some(ch) = r.resolve_char_ref().map_err(malformed)? {
                        Cow::Owned(ch.to_string())
                    } else {
                        match r.xml10_content().as_ref() {
                            "lt" => "<".into(),
                            "gt" => ">".into(),
                            "amp" => "&".into(),
                            "apos" => "'".into(),
                            "quot" => "\"".into(),
                            other => {
                                return Err(CodecError::new(
                                    "entity_forbidden",
                                    format!("entity reference &{other}; is not allowed"),
                                ));
                            }
                        }
                    };
                push_text(&mut stack, &resolved, limits)?;
            }
            Event::DocType(_) => {
                return Err(CodecError::new(
                    "doctype_forbidden",
                    "a DOCTYPE is not allowed",
                ));
            }
            Event::PI(_) => {
                return Err(CodecError::new(
                    "malformed_xml",
                    "processing instructions are not allowed",
                ));
            }
            Event::Decl(decl) => {
                if let Some(enc) = decl.encoding() {
                    let enc = enc.map_err(malformed)?;
                    if !enc.eq_ignore_ascii_case("utf-8") {
                        return Err(CodecError::new(
                            "invalid_utf8",
                            "only UTF-8 documents are accepted",
                        ));
                    }
                }
            }
            Event::Comment(_) | Event::Empty(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("the document ends inside an element"));
    }
    root.ok_or_else(|| malformed("the document has no root element"))
}

/// Distinct namespaces one document may use.
const MAX_NAMESPACES: usize = 32;

/// Attribute bytes one element may carry.
const MAX_ATTRIBUTE_BYTES: usize = 2048;

/// XML 1.0 allows no C0 controls but tab and line ends; a NUL would also be
/// refused by PostgreSQL later, after the bank was told the answer was fine.
fn check_chars(s: &str) -> Result<(), CodecError> {
    match s.chars().find(|&c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    }) {
        Some(c) => Err(CodecError::new(
            "invalid_character",
            format!("character U+{:04X} is not allowed in XML", c as u32),
        )),
        None => Ok(()),
    }
}

fn push_text(stack: &mut [Element], s: &str, limits: &Limits) -> Result<(), CodecError> {
    check_chars(s)?;
    match stack.last_mut() {
        // Indentation between child elements is not text: a pretty-printed
        // batch must not run into the text limit of its parent elements.
        Some(el) if !el.children.is_empty() && s.trim().is_empty() => Ok(()),
        Some(el) => {
            el.text.push_str(s);
            el.text_chars += s.chars().count();
            if el.text_chars > limits.max_text_chars {
                return Err(CodecError::new(
                    "too_large",
                    format!("text of {} is too long", el.name),
                ));
            }
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(malformed("text outside the root element")),
    }
}

/// Appends XML by hand: our documents are flat and fixed in shape, and
/// this keeps the encoder fast and the output byte-stable.
#[derive(Default)]
pub struct Out {
    pub buf: String,
}

pub fn escape_into(buf: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => buf.push_str("&amp;"),
            '<' => buf.push_str("&lt;"),
            '>' => buf.push_str("&gt;"),
            '"' => buf.push_str("&quot;"),
            '\'' => buf.push_str("&apos;"),
            c => buf.push(c),
        }
    }
}

impl Out {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: String::with_capacity(n),
        }
    }

    pub fn raw(&mut self, s: &str) -> &mut Self {
        self.buf.push_str(s);
        self
    }

    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    pub fn leaf(&mut self, tag: &str, text: &str) -> &mut Self {
        self.open(tag);
        escape_into(&mut self.buf, text);
        self.close(tag)
    }

    pub fn opt_leaf(&mut self, tag: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.leaf(tag, t);
        }
        self
    }

    pub fn empty(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push_str("/>");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Element, CodecError> {
        parse(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn parses_namespaces_and_text() {
        let e = p(r#"<?xml version="1.0" encoding="UTF-8"?><a:R xmlns:a="urn:x"><a:B>x &amp; y&#x41;</a:B><a:C/></a:R>"#).unwrap();
        assert_eq!(&*e.ns, "urn:x");
        assert_eq!(e.text_at(&["B"]).unwrap(), "x & yA");
        assert!(e.child("C").is_some());
    }

    #[test]
    fn refuses_hostile_documents() {
        let cases = [
            (
                r#"<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>"#,
                "doctype_forbidden",
            ),
            (r#"<r>&x;</r>"#, "entity_forbidden"),
            (r#"<r a="&x;"/>"#, "entity_forbidden"),
            (
                r#"<?xml version="1.0" encoding="ISO-8859-1"?><r/>"#,
                "invalid_utf8",
            ),
            (r#"<r><a></b></r>"#, "malformed_xml"),
            (r#"<r>"#, "malformed_xml"),
            (r#"<?pi x?><r/>"#, "malformed_xml"),
            (r#"<r/><r/>"#, "malformed_xml"),
            (r#"<p:r/>"#, "malformed_xml"),
        ];
        for (doc, code) in cases {
            assert_eq!(p(doc).unwrap_err().code, code, "{doc}");
        }
        assert_eq!(p("<r>a\u{0}b</r>").unwrap_err().code, "invalid_character");
        assert_eq!(p("<r>&#0;</r>").unwrap_err().code, "malformed_xml");
        assert_eq!(p("<r>&#1;</r>").unwrap_err().code, "invalid_character");
        let many = format!(
            "<r {}/>",
            (0..400)
                .map(|i| format!("a{i}=\"\""))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(p(&many).unwrap_err().code, "too_large");
        let namespaces: String = (0..40)
            .map(|i| format!("<x{i}:e xmlns:x{i}=\"urn:{i}\"/>"))
            .collect();
        assert_eq!(
            p(&format!("<r>{namespaces}</r>")).unwrap_err().code,
            "too_large"
        );
        // Indentation between many children is not the parent's text.
        let pretty = format!("<r>{}</r>", "\n                  <a>x</a>".repeat(3000));
        assert_eq!(p(&pretty).unwrap().children.len(), 3000);
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert_eq!(p(&deep).unwrap_err().code, "too_deep");
        assert_eq!(
            parse(&[0xff, 0xfe], &Limits::default()).unwrap_err().code,
            "invalid_utf8"
        );
        let small = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            parse(b"<r>0123456789</r>", &small).unwrap_err().code,
            "too_large"
        );
    }

    #[test]
    fn escapes() {
        let mut o = Out::default();
        o.leaf("a", "<&>\"'");
        assert_eq!(o.buf, "<a>&lt;&amp;&gt;&quot;&apos;</a>");
    }
}
