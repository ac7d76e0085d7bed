//! RDFC-1.0 for the graphs vaxtrail's credentials make, with ssi's implementation as the fallback.
//!
//! In a vaxtrail credential every blank node (the credential itself, addresses, facilities, the
//! verifier) is told apart by its first-degree hash: the quads it appears in, itself written
//! `_:a` and other blank nodes `_:z`, sorted, hashed (SHA-256). When those hashes are all
//! distinct, RDFC-1.0 issues the canonical labels `_:c14n0`, `_:c14n1`, … in hash order and
//! stops (its steps 5.x); the N-Degree Quads algorithm only runs for nodes whose first-degree
//! hashes are equal. So this module does steps 1–5 and writes the result, and whenever two
//! hashes are equal it hands the quads to ssi's full implementation instead (`ssi-rdf`'s
//! `urdna2015`), so the answer is RDFC-1.0's in every case.
//!
//! Quads are written as ssi writes them (`rdf-types`' N-Quads display): IRIs as they are (the
//! emitter admits only IRIs without characters that need escapes), literals with `"`, `\\`, LF
//! and CR escaped, `xsd:string` left implicit. The differential tests compare every byte.

use std::{borrow::Cow, fmt::Write as _};

use iref::IriBuf;
use rdf_types::{BlankIdBuf, Id, LexicalQuad, Literal, LiteralType, Quad, Term};
use sha2::{Digest, Sha256};

const XSD_STRING: &str = "http://www.w3.org/2001/XMLSchema#string";

/// A subject: an IRI or a blank node (numbered from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject<'a> {
    Iri(&'a str),
    Blank(u32),
}

/// An object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object<'a> {
    Iri(&'a str),
    Blank(u32),
    /// A literal of the given type.
    Literal(Cow<'a, str>, &'a LiteralType<IriBuf>),
    /// A literal with this datatype IRI.
    Typed(Cow<'a, str>, &'a str),
    /// A term learned as it is.
    Term(&'a Term),
}

/// One quad of the default graph.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FastQuad<'a> {
    pub subject: Subject<'a>,
    pub predicate: &'a str,
    pub object: Object<'a>,
}

/// A document's quads (no duplicates) and how many blank nodes they use.
pub struct Quads<'a> {
    pub quads: Vec<FastQuad<'a>>,
    pub blanks: u32,
}

/// How blank nodes are written while hashing or at the end.
enum Labels<'l> {
    /// First-degree hashing of one node: it is `_:a`, every other `_:z`.
    FirstDegree(u32),
    /// The canonical labels, by node number.
    Canonical(&'l [u32]),
}

impl Labels<'_> {
    fn write(&self, out: &mut String, node: u32) {
        match self {
            Self::FirstDegree(this) => out.push_str(if node == *this { "_:a" } else { "_:z" }),
            Self::Canonical(ranks) => {
                let _ = write!(out, "_:c14n{}", ranks[node as usize]);
            }
        }
    }
}

fn write_iri(out: &mut String, iri: &str) {
    out.push('<');
    out.push_str(iri);
    out.push('>');
}

fn write_literal(out: &mut String, value: &str, type_: Option<&LiteralType<IriBuf>>, datatype: Option<&str>) {
    out.push('"');
    if value.bytes().any(|b| matches!(b, b'"' | b'\\' | b'\n' | b'\r')) {
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
    } else {
        out.push_str(value);
    }
    out.push('"');
    match (type_, datatype) {
        (Some(LiteralType::LangString(tag)), _) => {
            out.push('@');
            out.push_str(tag.as_str());
        }
        (Some(LiteralType::Any(t)), _) if t.as_str() != XSD_STRING => {
            out.push_str("^^");
            write_iri(out, t.as_str());
        }
        (None, Some(t)) if t != XSD_STRING => {
            out.push_str("^^");
            write_iri(out, t);
        }
        _ => {}
    }
}

impl FastQuad<'_> {
    /// The object's N-Quads text (not for a blank node).
    fn write_object(&self, out: &mut String) {
        match &self.object {
            Object::Iri(iri) => write_iri(out, iri),
            Object::Blank(_) => unreachable!("blank nodes are written with their labels"),
            Object::Literal(value, type_) => write_literal(out, value, Some(type_), None),
            Object::Typed(value, datatype) => write_literal(out, value, None, Some(datatype)),
            Object::Term(Term::Id(Id::Iri(iri))) => write_iri(out, iri.as_str()),
            Object::Term(Term::Literal(literal)) => write_literal(out, &literal.value, Some(&literal.type_), None),
            Object::Term(Term::Id(Id::Blank(_))) => unreachable!("a learned constant is never a blank node"),
        }
    }

    /// The same quad in `rdf-types`' terms, for ssi's canonicalizer.
    fn lexical(&self) -> LexicalQuad {
        let iri = |s: &str| IriBuf::new(s.to_owned()).expect("checked when emitted");
        let blank = |n: u32| BlankIdBuf::from_suffix(&format!("b{n}")).expect("a valid label");
        let subject = match self.subject {
            Subject::Iri(s) => Id::Iri(iri(s)),
            Subject::Blank(n) => Id::Blank(blank(n)),
        };
        let object = match &self.object {
            Object::Iri(s) => Term::Id(Id::Iri(iri(s))),
            Object::Blank(n) => Term::Id(Id::Blank(blank(*n))),
            Object::Literal(value, type_) => Term::Literal(Literal::new(value.to_string(), (*type_).clone())),
            Object::Typed(value, datatype) => {
                Term::Literal(Literal::new(value.to_string(), LiteralType::Any(iri(datatype))))
            }
            Object::Term(term) => (*term).clone(),
        };
        Quad(subject, iri(self.predicate), object, None)
    }
}

/// The canonical N-Quads (RDFC-1.0) of `quads`.
pub fn canonical(quads: &Quads) -> String {
    fast(quads).unwrap_or_else(|| {
        metrics::counter!("vaxtrail_credentials_canonical_fallback_total").increment(1);
        let lexical: Vec<LexicalQuad> = quads.quads.iter().map(FastQuad::lexical).collect();
        super::canonical(&lexical)
    })
}

/// A term written once: its N-Quads text, or a blank node written as the labels say.
enum Part<'a> {
    /// An IRI, written between angle brackets.
    Iri(&'a str),
    /// A literal, already written.
    Text(String),
    /// A blank node, written with its label.
    Blank(u32),
}

impl Part<'_> {
    fn write(&self, out: &mut String, labels: &Labels) {
        match self {
            Self::Iri(iri) => write_iri(out, iri),
            Self::Text(text) => out.push_str(text),
            Self::Blank(n) => labels.write(out, *n),
        }
    }
}

/// A quad with its literal written once (IRIs are borrowed), so each blank node's first-degree
/// pass and the final pass write lines with copies alone.
struct Prepared<'a> {
    subject: Part<'a>,
    predicate: &'a str,
    object: Part<'a>,
}

impl<'a> Prepared<'a> {
    fn of(quad: &'a FastQuad) -> Self {
        let subject = match quad.subject {
            Subject::Iri(iri) => Part::Iri(iri),
            Subject::Blank(n) => Part::Blank(n),
        };
        let object = match &quad.object {
            Object::Blank(n) => Part::Blank(*n),
            Object::Iri(iri) => Part::Iri(iri),
            Object::Term(Term::Id(Id::Iri(iri))) => Part::Iri(iri.as_str()),
            _ => {
                let mut line = String::with_capacity(64);
                quad.write_object(&mut line);
                Part::Text(line)
            }
        };
        Self {
            subject,
            predicate: quad.predicate,
            object,
        }
    }

    fn write(&self, out: &mut String, labels: &Labels) {
        self.subject.write(out, labels);
        out.push(' ');
        write_iri(out, self.predicate);
        out.push(' ');
        self.object.write(out, labels);
        out.push_str(" .\n");
    }

    fn mentions(&self, node: u32) -> bool {
        matches!(self.subject, Part::Blank(n) if n == node) || matches!(self.object, Part::Blank(n) if n == node)
    }
}

#[derive(Default)]
struct Lines {
    buffer: String,
    ends: Vec<(usize, usize)>,
}

impl Lines {
    fn clear(&mut self) {
        self.buffer.clear();
        self.ends.clear();
    }

    fn push(&mut self, quad: &Prepared, labels: &Labels) {
        let start = self.buffer.len();
        quad.write(&mut self.buffer, labels);
        self.ends.push((start, self.buffer.len()));
    }

    /// The lines in code point order (byte order of UTF-8).
    fn sorted(&mut self) -> impl Iterator<Item = &str> {
        let buffer = &self.buffer;
        self.ends
            .sort_unstable_by(|a, b| buffer[a.0..a.1].cmp(&buffer[b.0..b.1]));
        self.ends.iter().map(move |(start, end)| &buffer[*start..*end])
    }
}

/// The canonical N-Quads when every blank node's first-degree hash is distinct; `None` otherwise.
pub fn fast(quads: &Quads) -> Option<String> {
    let prepared: Vec<Prepared> = quads.quads.iter().map(Prepared::of).collect();
    match distinct_first_degree(&prepared, quads.blanks) {
        Some(ranks) => {
            let mut lines = Lines::default();
            let labels = Labels::Canonical(&ranks);
            for quad in &prepared {
                lines.push(quad, &labels);
            }
            let mut out = String::with_capacity(lines.buffer.len());
            let mut last: Option<&str> = None;
            for line in lines.sorted() {
                if last != Some(line) {
                    out.push_str(line);
                }
                last = Some(line);
            }
            Some(out)
        }
        None => None,
    }
}

/// Each blank node's canonical number (indexed by node number), when their first-degree hashes
/// are all distinct.
fn distinct_first_degree(prepared: &[Prepared], blanks: u32) -> Option<Vec<u32>> {
    let mut hashes: Vec<([u8; 32], u32)> = Vec::with_capacity(blanks as usize);
    let mut lines = Lines::default();
    for node in 1..=blanks {
        lines.clear();
        let labels = Labels::FirstDegree(node);
        for quad in prepared.iter().filter(|q| q.mentions(node)) {
            lines.push(quad, &labels);
        }
        let mut hash = Sha256::new();
        let mut last: Option<&str> = None;
        for line in lines.sorted() {
            if last != Some(line) {
                hash.update(line.as_bytes());
            }
            last = Some(line);
        }
        // RDFC-1.0 orders by the hash's hexadecimal form, which sorts as the bytes do.
        hashes.push((hash.finalize().into(), node));
    }
    hashes.sort_unstable();
    if hashes.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return None;
    }
    let mut ranks = vec![0; blanks as usize + 1];
    for (rank, (_, node)) in hashes.iter().enumerate() {
        ranks[*node as usize] = rank as u32;
    }
    Some(ranks)
}
