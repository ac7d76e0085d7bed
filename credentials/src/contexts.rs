//! The JSON-LD contexts credentials are signed and verified with. ssi bundles the W3C and
//! security contexts; vaxtrail's vaccination context is bundled here and published by the query
//! side at the URL credentials name.

use std::collections::HashMap;

use ssi::json_ld::ContextLoader;

pub use domain::credential::{CREDENTIALS_V1, CREDENTIALS_V2, DATA_INTEGRITY_V2, VACCINATION_V1, VACCINATION_V2};

/// vaxtrail's vaccination context, version 1 (JSON-LD 1.1, `@protected`, one predicate per field).
pub const VACCINATION_V1_DOCUMENT: &str = include_str!("../contexts/vaccination-v1.jsonld");
/// vaxtrail's vaccination context, version 2, for VC 2.0 credentials (under the W3C v2 context).
pub const VACCINATION_V2_DOCUMENT: &str = include_str!("../contexts/vaccination-v2.jsonld");

/// The vaccination contexts by URL.
pub const VACCINATION: [(&str, &str); 2] = [
    (VACCINATION_V1, VACCINATION_V1_DOCUMENT),
    (VACCINATION_V2, VACCINATION_V2_DOCUMENT),
];

/// ssi's bundled contexts plus vaxtrail's. Nothing is ever fetched.
pub fn loader() -> ContextLoader {
    let ours: HashMap<String, String> = VACCINATION
        .iter()
        .map(|(url, document)| ((*url).to_owned(), (*document).to_owned()))
        .collect();
    ContextLoader::default()
        .with_context_map_from(ours)
        .expect("the bundled context is valid JSON under a valid URL")
}

/// The text of every context a vaxtrail credential or its proof names (the W3C credentials v1
/// and v2, vaxtrail's vaccination v1, Data Integrity v2), for the compiled path to know their
/// terms.
pub fn documents() -> Vec<&'static str> {
    vec![
        ssi_contexts::CREDENTIALS_V1,
        ssi_contexts::CREDENTIALS_V2,
        VACCINATION_V1_DOCUMENT,
        VACCINATION_V2_DOCUMENT,
        ssi_contexts::W3ID_DATA_INTEGRITY_V2,
    ]
}

/// Every context a vaxtrail credential, its proof or a status list names, by URL: what an offline
/// verifier (the query API's verifier page) needs to canonicalize them without fetching anything.
pub fn by_url() -> Vec<(&'static str, &'static str)> {
    vec![
        (CREDENTIALS_V1, ssi_contexts::CREDENTIALS_V1),
        (CREDENTIALS_V2, ssi_contexts::CREDENTIALS_V2),
        (VACCINATION_V1, VACCINATION_V1_DOCUMENT),
        (VACCINATION_V2, VACCINATION_V2_DOCUMENT),
        (DATA_INTEGRITY_V2, ssi_contexts::W3ID_DATA_INTEGRITY_V2),
        (
            crate::status_list::STATUS_LIST_2021_V1,
            ssi_contexts::STATUS_LIST_2021_V1,
        ),
    ]
}
