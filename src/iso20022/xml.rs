//! A small, hostile-input-safe XML reader into an element tree, and an
//! escaping writer. Refuses DOCTYPE, entity references other than the five
//! predefined ones and character references, processing instructions, and
//! anything not UTF-8; caps size, depth, element count and text length.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
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

/// A parsed document: every element in one vector, in document order, so
/// that parsing allocates per document rather than per element. Names and
/// most text borrow from the input.
#[derive(Debug)]
pub struct Document<'a> {
    nodes: Vec<Node<'a>>,
    /// Each namespace once; index 0 is "no namespace". Elements hold an
    /// index, so comparing namespaces is comparing numbers.
    namespaces: Vec<Box<str>>,
}

#[derive(Debug)]
struct Node<'a> {
    name: Cow<'a, str>,
    /// Borrowed unless entities or several pieces made it up.
    text: Cow<'a, str>,
    ns: u32,
    /// One past the last node of this element's subtree: children start at
    /// the next node, and each child's `end` is its next sibling.
    end: u32,
}

impl<'a> Document<'a> {
    pub fn root(&self) -> Element<'_> {
        Element { doc: self, idx: 0 }
    }
}

/// An element of a [`Document`]; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Element<'d> {
    doc: &'d Document<'d>,
    idx: u32,
}

/// The element children of one element, in order.
pub struct Children<'d> {
    doc: &'d Document<'d>,
    next: u32,
    end: u32,
}

impl<'d> Iterator for Children<'d> {
    type Item = Element<'d>;

    fn next(&mut self) -> Option<Element<'d>> {
        if self.next >= self.end {
            return None;
        }
        let idx = self.next;
        self.next = self.doc.nodes[idx as usize].end;
        Some(Element { doc: self.doc, idx })
    }
}

impl<'d> Element<'d> {
    fn node(self) -> &'d Node<'d> {
        &self.doc.nodes[self.idx as usize]
    }

    pub fn name(self) -> &'d str {
        &self.node().name
    }

    pub fn ns(self) -> &'d str {
        &self.doc.namespaces[self.node().ns as usize]
    }

    /// The untrimmed text.
    pub fn text(self) -> &'d str {
        &self.node().text
    }

    pub fn children(self) -> Children<'d> {
        Children {
            doc: self.doc,
            next: self.idx + 1,
            end: self.node().end,
        }
    }

    /// The first child with this local name in the parent's namespace.
    pub fn child(self, name: &str) -> Option<Element<'d>> {
        self.children_named(name).next()
    }

    pub fn children_named(self, name: &str) -> impl Iterator<Item = Element<'d>> {
        let ns = self.node().ns;
        self.children().filter(move |c| {
            let n = c.node();
            n.ns == ns && n.name == name
        })
    }

    pub fn path(self, path: &[&str]) -> Option<Element<'d>> {
        path.iter().try_fold(self, |el, name| el.child(name))
    }

    /// The trimmed text at `path`, which must be present and non-empty.
    pub fn text_at(self, path: &[&str]) -> Result<&'d str, CodecError> {
        match self.opt_text_at(path) {
            Some(t) => Ok(t),
            None => Err(CodecError::new(
                "missing_element",
                format!("{} has no {}", self.name(), path.join("/")),
            )),
        }
    }

    pub fn opt_text_at(self, path: &[&str]) -> Option<&'d str> {
        self.path(path)
            .map(|e| e.text().trim())
            .filter(|t| !t.is_empty())
    }

    /// The only element child, whatever its namespace (wildcard content).
    pub fn single_child(self) -> Result<Element<'d>, CodecError> {
        let mut children = self.children();
        match (children.next(), children.next()) {
            (Some(one), None) => Ok(one),
            _ => Err(CodecError::new(
                "invalid_structure",
                format!("{} must hold exactly one element", self.name()),
            )),
        }
    }

    pub fn expect(self, ns: &str, name: &str) -> Result<Element<'d>, CodecError> {
        if self.name() != name {
            return Err(CodecError::new(
                "wrong_message",
                format!("expected {name}, found {}", self.name()),
            ));
        }
        if self.ns() != ns {
            return Err(CodecError::new(
                "wrong_namespace",
                format!("{name} must be in namespace {ns}, found '{}'", self.ns()),
            ));
        }
        Ok(self)
    }
}

fn malformed(e: impl std::fmt::Display) -> CodecError {
    CodecError::new("malformed_xml", e.to_string())
}

/// `s` as a slice of `input` when it lies inside it. Events of a reader over
/// a `&str` borrow from it, but `BytesStart` lends its name only for as
/// long as the event lives.
fn reborrow<'a>(input: &'a str, s: &str) -> Cow<'a, str> {
    let inside = (s.as_ptr() as usize)
        .checked_sub(input.as_ptr() as usize)
        .and_then(|at| input.get(at..at + s.len()));
    match inside {
        Some(borrowed) => Cow::Borrowed(borrowed),
        None => Cow::Owned(s.to_owned()),
    }
}

/// An element still open while parsing.
struct Open {
    idx: u32,
    /// Characters in its text, counted only once the text has more bytes
    /// than the limit allows characters (fewer bytes cannot be too long).
    chars: Option<usize>,
    /// Declares namespaces: their scope ends with it.
    declares: bool,
}

pub fn parse<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Document<'a>, CodecError> {
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
    let input = std::str::from_utf8(bytes)
        .map_err(|e| CodecError::new("invalid_utf8", format!("the body is not UTF-8: {e}")))?;
    let mut reader = NsReader::from_str(input);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = true;
    config.check_comments = true;

    let mut doc = Document {
        // Every element opens with a '<' (so do end tags and comments):
        // one allocation up front, of at most what the document needs,
        // instead of a dozen regrowths of a large vector.
        nodes: Vec::with_capacity(
            (bytes.iter().filter(|&&b| b == b'<').count() / 2 + 1).min(limits.max_elements),
        ),
        namespaces: vec!["".into()],
    };
    let mut open: Vec<Open> = Vec::new();
    // The namespace index of each prefix (None: no prefix) resolved since
    // the bindings in scope last changed, which spares most elements a
    // lookup in the resolver and among the namespaces.
    let mut prefixes: Vec<(Option<Box<str>>, u32)> = Vec::new();
    let mut closed_root = false;
    loop {
        // Only start tags need their namespace resolved.
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Start(start) => {
                if closed_root {
                    return Err(malformed("content after the root element"));
                }
                if doc.nodes.len() >= limits.max_elements {
                    return Err(CodecError::new(
                        "too_many_elements",
                        "the document has too many elements",
                    ));
                }
                if open.len() >= limits.max_depth {
                    return Err(CodecError::new(
                        "too_deep",
                        format!("elements nest deeper than {}", limits.max_depth),
                    ));
                }
                let attributes = start.attributes_raw();
                // Most elements have none: no more than XML white space.
                let no_attributes = attributes
                    .bytes()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
                // Bindings in scope change only at an element that declares
                // some (and again at its end); "xmlns" anywhere is enough.
                let declares = !no_attributes && attributes.contains("xmlns");
                if declares {
                    prefixes.clear();
                }
                let qname = start.name().into_inner();
                let (prefix, local) = match qname.bytes().position(|b| b == b':') {
                    Some(i) => (Some(&qname[..i]), &qname[i + 1..]),
                    None => (None, qname),
                };
                // Prefixes are a few bytes: compared inline, not by memcmp.
                let same = |p: &Option<Box<str>>| match (p.as_deref(), prefix) {
                    (Some(a), Some(b)) => {
                        a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
                    }
                    (a, b) => a.is_none() && b.is_none(),
                };
                let ns = match prefixes.iter().find(|(p, _)| same(p)) {
                    Some(&(_, ns)) => ns,
                    None => {
                        let ns = match reader.resolver().resolve_element(start.name()).0 {
                            ResolveResult::Bound(n) => intern(&mut doc.namespaces, n.0)?,
                            ResolveResult::Unbound => 0,
                            ResolveResult::Unknown(p) => {
                                return Err(malformed(format!("unknown namespace prefix '{p}'")));
                            }
                        };
                        if prefixes.len() < 8 {
                            prefixes.push((prefix.map(Box::from), ns));
                        }
                        ns
                    }
                };
                let name = reborrow(input, local);
                // Checked before iterating: attribute checks are quadratic in
                // their number, and our documents carry a few namespaces only.
                if attributes.len() > MAX_ATTRIBUTE_BYTES {
                    return Err(CodecError::new(
                        "too_large",
                        "an element has too many attributes",
                    ));
                }
                if !no_attributes {
                    check_attributes(&start)?;
                }
                open.push(Open {
                    idx: doc.nodes.len() as u32,
                    chars: None,
                    declares,
                });
                doc.nodes.push(Node {
                    name,
                    text: Cow::Borrowed(""),
                    ns,
                    end: 0,
                });
            }
            Event::End(_) => {
                let done = open.pop().ok_or_else(|| malformed("unmatched end tag"))?;
                doc.nodes[done.idx as usize].end = doc.nodes.len() as u32;
                if done.declares {
                    prefixes.clear();
                }
                closed_root = open.is_empty();
            }
            Event::Text(t) => push_text(&mut doc.nodes, &mut open, t.xml10_content(), limits)?,
            Event::CData(c) => push_text(&mut doc.nodes, &mut open, c.xml10_content(), limits)?,
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
                push_text(&mut doc.nodes, &mut open, resolved, limits)?;
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
    if !open.is_empty() {
        return Err(malformed("the document ends inside an element"));
    }
    if !closed_root {
        return Err(malformed("the document has no root element"));
    }
    Ok(doc)
}

/// Attribute values carry no custom entities and no forbidden characters.
fn check_attributes(start: &BytesStart<'_>) -> Result<(), CodecError> {
    for attr in start.attributes() {
        let value = attr
            .map_err(malformed)?
            .normalized_value(XmlVersion::Explicit1_0)
            .map_err(|e| CodecError::new("entity_forbidden", format!("attribute value: {e}")))?;
        check_chars(&value)?;
    }
    Ok(())
}

/// The index of namespace `n`, added if new.
fn intern(namespaces: &mut Vec<Box<str>>, n: &str) -> Result<u32, CodecError> {
    if let Some(i) = namespaces.iter().position(|s| &**s == n) {
        return Ok(i as u32);
    }
    // Our documents use a handful; many is an attack on the lookup above.
    // (The first entry, "no namespace", does not count.)
    if namespaces.len() > MAX_NAMESPACES {
        return Err(CodecError::new(
            "too_large",
            "the document uses too many namespaces",
        ));
    }
    namespaces.push(n.into());
    Ok(namespaces.len() as u32 - 1)
}

/// Distinct namespaces one document may use.
const MAX_NAMESPACES: usize = 32;

/// Attribute bytes one element may carry.
const MAX_ATTRIBUTE_BYTES: usize = 2048;

/// XML 1.0 allows no C0 controls but tab and line ends; a NUL would also be
/// refused by PostgreSQL later, after the bank was told the answer was fine.
fn check_chars(s: &str) -> Result<(), CodecError> {
    // A scan of bytes finds none in most text without decoding characters;
    // U+FFFE and U+FFFF are EF BF BE and EF BF BF in UTF-8.
    let b = s.as_bytes();
    let suspect = b.iter().enumerate().any(|(i, &c)| {
        (c < b' ' && !matches!(c, b'\t' | b'\n' | b'\r'))
            || (c == 0xEF
                && b.get(i + 1) == Some(&0xBF)
                && matches!(b.get(i + 2), Some(0xBE | 0xBF)))
    });
    if !suspect {
        return Ok(());
    }
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

fn push_text<'a>(
    nodes: &mut [Node<'a>],
    open: &mut [Open],
    s: Cow<'a, str>,
    limits: &Limits,
) -> Result<(), CodecError> {
    check_chars(&s)?;
    let Some(top) = open.last_mut() else {
        return if s.trim().is_empty() {
            Ok(())
        } else {
            Err(malformed("text outside the root element"))
        };
    };
    let idx = top.idx as usize;
    // Indentation between child elements is not text: a pretty-printed
    // batch must not run into the text limit of its parent elements.
    let has_children = nodes.len() > idx + 1;
    if has_children && s.trim().is_empty() {
        return Ok(());
    }
    let el = &mut nodes[idx];
    let piece_bytes = s.len();
    if el.text.is_empty() {
        el.text = s;
    } else {
        el.text.to_mut().push_str(&s);
    }
    if el.text.len() > limits.max_text_chars {
        let chars = match top.chars {
            Some(before) => before + el.text[el.text.len() - piece_bytes..].chars().count(),
            None => el.text.chars().count(),
        };
        top.chars = Some(chars);
        if chars > limits.max_text_chars {
            return Err(CodecError::new(
                "too_large",
                format!("text of {} is too long", el.name),
            ));
        }
    }
    Ok(())
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

    fn p(s: &str) -> Result<Document<'_>, CodecError> {
        parse(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn parses_namespaces_and_text() {
        let e = p(r#"<?xml version="1.0" encoding="UTF-8"?><a:R xmlns:a="urn:x"><a:B>x &amp; y&#x41;</a:B><a:C/></a:R>"#).unwrap();
        let e = e.root();
        assert_eq!(e.ns(), "urn:x");
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
        assert_eq!(p(&pretty).unwrap().root().children().count(), 3000);
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
    fn prefixes_follow_their_scope() {
        let d = p(r#"<a:r xmlns:a="urn:1"><a:x/><a:y xmlns:a="urn:2"><a:z/></a:y><a:w/></a:r>"#)
            .unwrap();
        let ns: Vec<&str> = d.root().children().map(|c| c.ns()).collect();
        assert_eq!(ns, ["urn:1", "urn:2", "urn:1"]);
        let y = d.root().children().nth(1).unwrap();
        assert_eq!(y.single_child().unwrap().ns(), "urn:2");
        let d = p(r#"<r xmlns="urn:d"><c/><e xmlns=""><f/></e><g/></r>"#).unwrap();
        let ns: Vec<&str> = d.root().children().map(|c| c.ns()).collect();
        assert_eq!(ns, ["urn:d", "", "urn:d"]);
        let e = d.root().children().nth(1).unwrap();
        assert_eq!(e.single_child().unwrap().ns(), "");
        assert_eq!(
            p(r#"<a:r xmlns:a="urn:1"><a:x/><b:y/></a:r>"#)
                .unwrap_err()
                .code,
            "malformed_xml"
        );
    }

    #[test]
    fn escapes() {
        let mut o = Out::default();
        o.leaf("a", "<&>\"'");
        assert_eq!(o.buf, "<a>&lt;&amp;&gt;&quot;&apos;</a>");
    }
}
