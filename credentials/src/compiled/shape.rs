//! A document shape learned from the full JSON-LD path, and the quads a document of that shape
//! stands for, produced without JSON-LD processing.
//!
//! Learning: every string and integer of a probe document (one with every field vaxtrail writes)
//! is replaced by a unique marker, ssi's JSON-LD expansion turns the probe into quads, and each
//! JSON key is matched to the quad that carries its marker: the predicate it maps to and whether
//! its value becomes an IRI, a typed literal or a node. Every quad of the probe must be explained
//! by a key, or the shape is refused. Nothing is copied by hand from the contexts.
//!
//! Producing: a document is walked against the shape. Anything the shape does not know (another
//! key, another type, another JSON type, a value that JSON-LD would expand differently, such as
//! an IRI that is relative or starts with a defined prefix) returns `None`, and the caller takes
//! the full path.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
};

use iref::IriBuf;
use rdf_types::{Id, LexicalQuad, Literal, LiteralType, Term};

use super::canon::{FastQuad, Object, Quads, Subject};
use serde_json::{Map, Value};

/// `rdf:type`.
const RDF_TYPE: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type";
/// `xsd:dateTime`.
const XSD_DATE_TIME: &str = "http://www.w3.org/2001/XMLSchema#dateTime";
/// `xsd:boolean`.
const XSD_BOOLEAN: &str = "http://www.w3.org/2001/XMLSchema#boolean";

/// What a key's value becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// A string that is an absolute IRI (`@type: @id`).
    Iri,
    /// A string, as a literal of this type.
    Text(LiteralType<IriBuf>),
    /// A JSON integer, as a literal of this datatype.
    Integer(IriBuf),
    /// A JSON boolean, as an `xsd:boolean` literal.
    Boolean,
    /// An object: a node of its own.
    Node(Box<Node>),
    /// Exactly this JSON value, standing for exactly this term (a value JSON-LD expands through
    /// the vocabulary, such as a proof purpose).
    Constant(Value, Term),
}

/// One key of a node: its predicate and what its value (or each value of an array) becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Property {
    predicate: IriBuf,
    slot: Slot,
}

/// The shape of one JSON object.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    /// Named by its `id` (an IRI); otherwise a blank node.
    named: bool,
    /// The `type` names (sorted: JSON-LD reads one name and a one-element array alike, and an
    /// array as a set), and the `rdf:type` IRIs they stand for.
    types: Option<(Vec<String>, Vec<IriBuf>)>,
    properties: BTreeMap<String, Property>,
}

/// A learned document shape.
#[derive(Clone, Debug)]
pub struct Shape {
    /// The exact `@context` value a document must carry.
    context: Value,
    root: Node,
    /// Every term and prefix the contexts define: a string in an IRI slot whose scheme is one of
    /// these would be expanded as a compact IRI, so it takes the full path.
    terms: BTreeSet<String>,
}

/// Why a probe could not be learned.
#[derive(Debug, thiserror::Error)]
#[error("the compiled shape cannot be learned: {0}")]
pub struct LearnError(String);

impl LearnError {
    /// The full path could not expand the probe.
    pub fn expansion(error: String) -> Self {
        Self(format!("expanding the probe: {error}"))
    }
}

fn fail<T>(why: impl Into<String>) -> Result<T, LearnError> {
    Err(LearnError(why.into()))
}

/// The probe with every string and integer replaced by a unique marker (and `type` and
/// `@context` left as they are).
pub fn mark(probe: &Value) -> Value {
    fn walk(value: &Value, next: &mut u64) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let kept = k == "@context" || k == "type";
                        (k.clone(), if kept { v.clone() } else { walk(v, next) })
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| walk(v, next)).collect()),
            Value::String(_) => {
                *next += 1;
                Value::String(format!("urn:vaxtrail:probe:{next}"))
            }
            Value::Number(_) => {
                *next += 1;
                Value::from(7_000_000 + *next)
            }
            other => other.clone(),
        }
    }
    walk(probe, &mut 0)
}

/// The quads ssi's JSON-LD path gives a marked probe, indexed.
struct Probe<'a> {
    quads: &'a [LexicalQuad],
    explained: BTreeSet<usize>,
    constants: &'a [Constant],
}

/// A key whose value is kept as it is in the probe, and the quad's predicate and object the
/// full path gives it (found by the caller: the quad that goes when the key goes).
#[derive(Clone, Debug)]
pub struct Constant {
    pub key: String,
    pub value: Value,
    pub predicate: IriBuf,
    pub object: Term,
}

fn as_iri(term: &Term) -> Option<&str> {
    match term {
        Term::Id(Id::Iri(iri)) => Some(iri.as_str()),
        _ => None,
    }
}

impl Probe<'_> {
    /// The node a marked JSON object stands for.
    fn node_of(&self, object: &Map<String, Value>) -> Result<Id, LearnError> {
        if let Some(Value::String(id)) = object.get("id") {
            return Ok(Id::Iri(
                IriBuf::new(id.clone()).map_err(|_| LearnError(format!("{id} is not an IRI")))?,
            ));
        }
        for (key, value) in object {
            if key == "@context" || key == "type" {
                continue;
            }
            let first = match value {
                Value::Array(items) => items.first(),
                one => Some(one),
            };
            let found = match first {
                Some(Value::String(marker)) => self.quads.iter().find(|q| matches(&q.2, marker)),
                Some(Value::Number(n)) => self.quads.iter().find(|q| matches(&q.2, &n.to_string())),
                Some(Value::Object(child)) => {
                    let child = self.node_of(child)?;
                    self.quads
                        .iter()
                        .find(|q| q.2 == Term::<Id, Literal>::Id(child.clone()))
                }
                _ => None,
            };
            if let Some(quad) = found {
                return Ok(quad.0.clone());
            }
        }
        fail(format!("no quad names the node of {}", Value::Object(object.clone())))
    }

    /// The one quad from `subject` that `wanted` accepts, marked explained.
    fn claim(
        &mut self,
        subject: &Id,
        wanted: impl Fn(&LexicalQuad) -> bool,
        what: &str,
    ) -> Result<&LexicalQuad, LearnError> {
        let found = self
            .quads
            .iter()
            .enumerate()
            .filter(|(i, q)| &q.0 == subject && wanted(q) && !self.explained.contains(i))
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        match found.as_slice() {
            [one] => {
                self.explained.insert(*one);
                Ok(&self.quads[*one])
            }
            [] => fail(format!("no quad carries {what}")),
            _ => fail(format!("several quads could carry {what}")),
        }
    }

    fn learn_node(&mut self, object: &Map<String, Value>, subject: &Id) -> Result<Node, LearnError> {
        let mut node = Node {
            named: object.contains_key("id"),
            types: None,
            properties: BTreeMap::new(),
        };
        for (key, value) in object {
            match key.as_str() {
                "@context" | "id" => {}
                "type" => {
                    let names: Vec<&Value> = match value {
                        Value::Array(items) => items.iter().collect(),
                        one => vec![one],
                    };
                    let typed: Vec<(usize, IriBuf)> = self
                        .quads
                        .iter()
                        .enumerate()
                        .filter(|(i, q)| &q.0 == subject && q.1.as_str() == RDF_TYPE && !self.explained.contains(i))
                        .filter_map(|(i, q)| Some((i, IriBuf::new(as_iri(&q.2)?.to_owned()).ok()?)))
                        .collect();
                    if typed.len() != names.len() {
                        return fail(format!(
                            "{} types of {subject} became {} IRIs",
                            names.len(),
                            typed.len()
                        ));
                    }
                    self.explained.extend(typed.iter().map(|(i, _)| *i));
                    let mut iris: Vec<IriBuf> = typed.into_iter().map(|(_, iri)| iri).collect();
                    iris.sort();
                    node.types = Some((
                        type_names(value).ok_or_else(|| LearnError(format!("{key} is not names")))?,
                        iris,
                    ));
                }
                _ if self.constants.iter().any(|c| &c.key == key && &c.value == value) => {
                    let constant = self.constants.iter().find(|c| &c.key == key).expect("found above");
                    let quad = self.claim(subject, |q| q.1 == constant.predicate && q.2 == constant.object, key)?;
                    let property = Property {
                        predicate: quad.1.clone(),
                        slot: Slot::Constant(value.clone(), quad.2.clone()),
                    };
                    node.properties.insert(key.clone(), property);
                }
                _ => {
                    let items: Vec<&Value> = match value {
                        Value::Array(items) => items.iter().collect(),
                        one => vec![one],
                    };
                    let mut learned: Option<Property> = None;
                    for item in items {
                        let property = self.learn_value(subject, key, item)?;
                        match &learned {
                            Some(first) if *first != property => {
                                return fail(format!("the values of {key} do not share one shape"));
                            }
                            _ => learned = Some(property),
                        }
                    }
                    let Some(property) = learned else {
                        return fail(format!("{key} is an empty array in the probe"));
                    };
                    node.properties.insert(key.clone(), property);
                }
            }
        }
        Ok(node)
    }

    fn learn_value(&mut self, subject: &Id, key: &str, value: &Value) -> Result<Property, LearnError> {
        let (predicate, slot) = match value {
            Value::String(marker) => {
                let quad = self.claim(subject, |q| matches(&q.2, marker), key)?;
                let slot = match &quad.2 {
                    Term::Id(Id::Iri(_)) => Slot::Iri,
                    Term::Literal(literal) => Slot::Text(literal.type_.clone()),
                    Term::Id(Id::Blank(_)) => return fail(format!("{key} became a blank node")),
                };
                (quad.1.clone(), slot)
            }
            Value::Number(n) => {
                let quad = self.claim(subject, |q| matches(&q.2, &n.to_string()), key)?;
                match &quad.2 {
                    Term::Literal(Literal {
                        type_: LiteralType::Any(datatype),
                        ..
                    }) => (quad.1.clone(), Slot::Integer(datatype.clone())),
                    _ => return fail(format!("{key} did not become a typed literal")),
                }
            }
            Value::Bool(b) => {
                let lexical = b.to_string();
                let quad = self.claim(
                    subject,
                    |q| matches!(&q.2, Term::Literal(l) if l.value == lexical && matches!(&l.type_, LiteralType::Any(t) if t.as_str() == XSD_BOOLEAN)),
                    key,
                )?;
                (quad.1.clone(), Slot::Boolean)
            }
            Value::Object(child) => {
                let node = self.node_of(child)?;
                let quad = self.claim(subject, |q| q.2 == Term::<Id, Literal>::Id(node.clone()), key)?;
                let predicate = quad.1.clone();
                (predicate, Slot::Node(Box::new(self.learn_node(child, &node)?)))
            }
            other => return fail(format!("{key} holds {other}, which the compiled path does not handle")),
        };
        Ok(Property { predicate, slot })
    }
}

/// Whether an RDF term carries a marker (as an IRI or as a literal's lexical form).
fn matches(term: &Term, marker: &str) -> bool {
    match term {
        Term::Id(Id::Iri(iri)) => iri.as_str() == marker,
        Term::Literal(literal) => literal.value == marker,
        Term::Id(Id::Blank(_)) => false,
    }
}

impl Shape {
    /// Learns the shape of `marked` (a probe passed through [`mark`]) from the quads ssi's
    /// JSON-LD path gives it. `contexts` are the context documents it names (for their terms).
    pub fn learn(marked: &Value, quads: &[LexicalQuad], contexts: &[&str]) -> Result<Self, LearnError> {
        Self::learn_with_constants(marked, quads, contexts, &[])
    }

    /// [`Shape::learn`], with some keys' values kept as they are: `constants`.
    pub fn learn_with_constants(
        marked: &Value,
        quads: &[LexicalQuad],
        contexts: &[&str],
        constants: &[Constant],
    ) -> Result<Self, LearnError> {
        let Value::Object(root) = marked else {
            return fail("the probe is not an object");
        };
        let mut probe = Probe {
            quads,
            explained: BTreeSet::new(),
            constants,
        };
        let subject = probe.node_of(root)?;
        let node = probe.learn_node(root, &subject)?;
        let unexplained: Vec<String> = quads
            .iter()
            .enumerate()
            .filter(|(i, _)| !probe.explained.contains(i))
            .map(|(_, q)| format!("{q:?}"))
            .collect();
        if !unexplained.is_empty() {
            return fail(format!("quads no key explains: {}", unexplained.join("; ")));
        }
        let mut terms = BTreeSet::new();
        for context in contexts {
            let document: Value = serde_json::from_str(context).map_err(|e| LearnError(e.to_string()))?;
            collect_keys(&document, &mut terms);
        }
        Ok(Self {
            context: root.get("@context").cloned().unwrap_or(Value::Null),
            root: node,
            terms,
        })
    }

    /// The quads `document` stands for, or `None` when it is not of this shape. They borrow
    /// from the shape and the document; blank nodes are numbered from 1.
    pub fn quads<'a>(&'a self, document: &'a Map<String, Value>) -> Option<Quads<'a>> {
        if document.get("@context") != Some(&self.context) {
            return None;
        }
        let mut out = Emitter {
            shape: self,
            quads: Vec::with_capacity(80),
            blanks: 0,
        };
        out.node(document, &self.root)?;
        out.quads.sort_unstable();
        out.quads.dedup();
        Some(Quads {
            quads: out.quads,
            blanks: out.blanks,
        })
    }

    /// Whether `document` carries the `@context` the shape was learned with.
    pub fn has_context(&self, document: &Map<String, Value>) -> bool {
        document.get("@context").is_some_and(|c| self.is_context(c))
    }

    /// Whether `context` is the shape's `@context`.
    pub fn is_context(&self, context: &Value) -> bool {
        *context == self.context
    }

    /// `value`, when JSON-LD keeps it exactly as this IRI when expanding it as an `@id`, and
    /// N-Quads writes it without escapes.
    fn plain_iri<'a>(&self, value: &'a str) -> Option<&'a str> {
        let (scheme, rest) = value.split_once(':')?;
        if scheme == "_" || (self.terms.contains(scheme) && !rest.starts_with("//")) {
            return None;
        }
        let unescaped = !value.chars().any(|c| {
            matches!(
                c,
                '\x00'..='\x20' | '<' | '>' | '"' | '{' | '}' | '|' | '^' | '`' | '\\'
            )
        });
        (unescaped && iref::Iri::new(value).is_ok()).then_some(value)
    }
}

/// A `type` value's names, sorted and without repeats (`None` unless it is names).
fn type_names(value: &Value) -> Option<Vec<String>> {
    let mut names: Vec<String> = match value {
        Value::String(name) => vec![name.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    names.sort();
    names.dedup();
    Some(names)
}

fn collect_keys(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                into.insert(key.clone());
                collect_keys(inner, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_keys(v, into)),
        _ => {}
    }
}

/// Walks a document against a shape, collecting quads.
struct Emitter<'a> {
    shape: &'a Shape,
    quads: Vec<FastQuad<'a>>,
    blanks: u32,
}

impl<'a> Emitter<'a> {
    fn node(&mut self, object: &'a Map<String, Value>, node: &'a Node) -> Option<Subject<'a>> {
        let subject = match (node.named, object.get("id")) {
            (true, Some(Value::String(id))) => Subject::Iri(self.shape.plain_iri(id)?),
            (false, None) => {
                self.blanks += 1;
                Subject::Blank(self.blanks)
            }
            _ => return None,
        };
        for (key, value) in object {
            match key.as_str() {
                "@context" | "id" => {}
                "type" => {
                    let (names, iris) = node.types.as_ref()?;
                    if type_names(value).as_ref() != Some(names) {
                        return None;
                    }
                    for iri in iris {
                        self.quads.push(FastQuad {
                            subject,
                            predicate: RDF_TYPE,
                            object: Object::Iri(iri.as_str()),
                        });
                    }
                }
                _ => {
                    let property = node.properties.get(key)?;
                    match value {
                        Value::Array(items) => {
                            for item in items {
                                self.value(subject, property, item)?;
                            }
                        }
                        one => self.value(subject, property, one)?,
                    }
                }
            }
        }
        Some(subject)
    }

    fn value(&mut self, subject: Subject<'a>, property: &'a Property, value: &'a Value) -> Option<()> {
        let object = match (&property.slot, value) {
            (Slot::Iri, Value::String(s)) => Object::Iri(self.shape.plain_iri(s)?),
            (Slot::Text(type_), Value::String(s)) => {
                // The full path parses the credential's dates; one that does not parse is its call.
                if matches!(type_, LiteralType::Any(t) if t.as_str() == XSD_DATE_TIME)
                    && chrono::DateTime::parse_from_rfc3339(s).is_err()
                {
                    return None;
                }
                Object::Literal(Cow::Borrowed(s), type_)
            }
            (Slot::Integer(datatype), Value::Number(n)) => {
                Object::Typed(Cow::Owned(n.as_i64()?.to_string()), datatype.as_str())
            }
            (Slot::Boolean, Value::Bool(b)) => {
                Object::Typed(Cow::Borrowed(if *b { "true" } else { "false" }), XSD_BOOLEAN)
            }
            (Slot::Node(node), Value::Object(child)) => match self.node(child, node)? {
                Subject::Iri(iri) => Object::Iri(iri),
                Subject::Blank(n) => Object::Blank(n),
            },
            (Slot::Constant(expected, term), value) if expected == value => Object::Term(term),
            _ => return None,
        };
        self.quads.push(FastQuad {
            subject,
            predicate: property.predicate.as_str(),
            object,
        });
        Some(())
    }
}
