//! The JSON-LD contexts credentials are signed and verified with. ssi bundles the W3C and
//! security contexts; vaxtrail's vaccination context is bundled here and published by the query
//! side at the URL credentials name.

use std::collections::HashMap;

use ssi::json_ld::ContextLoader;

pub use domain::credential::{CREDENTIALS_V1, DATA_INTEGRITY_V2, VACCINATION_V1};

/// vaxtrail's vaccination context, version 1 (JSON-LD 1.1, `@protected`, one predicate per field).
pub const VACCINATION_V1_DOCUMENT: &str = include_str!("../contexts/vaccination-v1.jsonld");

/// ssi's bundled contexts plus vaxtrail's. Nothing is ever fetched.
pub fn loader() -> ContextLoader {
    let ours = HashMap::from([(VACCINATION_V1.to_owned(), VACCINATION_V1_DOCUMENT.to_owned())]);
    ContextLoader::default()
        .with_context_map_from(ours)
        .expect("the bundled context is valid JSON under a valid URL")
}

/// The text of every context a vaxtrail credential or its proof names (the W3C credentials v1,
/// vaxtrail's vaccination v1, Data Integrity v2), for the compiled path to know their terms.
pub fn documents() -> Vec<&'static str> {
    vec![
        ssi_contexts::CREDENTIALS_V1,
        VACCINATION_V1_DOCUMENT,
        ssi_contexts::W3ID_DATA_INTEGRITY_V2,
    ]
}
