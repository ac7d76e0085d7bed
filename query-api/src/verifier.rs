//! The verifier page (`GET /verify`), which verifies in the browser and keeps working offline:
//! the page and its script (`query-api/assets/verifier/`), its service worker
//! (`GET /verify-sw.js`, scope `/verify`) and its trust bundle (`GET /verify/trust.json`: the
//! issuer's DID document, every JSON-LD context a credential or list names, the published status
//! lists, and the deployment's guidance in each language). The guidance (how to scan, what each
//! result means, what to do, whom to contact) is a JSON file a programme edits
//! (`VAXTRAIL_VERIFIER_GUIDANCE`; the bundled one has English, Hindi and Tamil), checked at start.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::{Arc, LazyLock},
};

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Response},
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use platform::problem::Problem;

use crate::{AppState, routes::unavailable};

const PAGE: &str = include_str!("../assets/verifier/verify.html");
const SCRIPT: &str = include_str!("../assets/verifier/verifier.js");
const WORKER: &str = include_str!("../assets/verifier/sw.js");
/// The guidance used when `VAXTRAIL_VERIFIER_GUIDANCE` is not set.
pub const DEFAULT_GUIDANCE: &str = include_str!("../assets/verifier/guidance.json");

/// The most published lists the trust bundle names (the page fetches the newest of them).
const MAX_LISTED: i64 = 100_000;

/// Every context a credential or a list names, by URL, parsed once.
static CONTEXTS: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    credentials::contexts::by_url()
        .into_iter()
        .map(|(url, text)| {
            (
                url.to_owned(),
                serde_json::from_str(text).expect("a bundled context is JSON"),
            )
        })
        .collect()
});

/// The page's Content-Security-Policy: its own scripts only (no inline script), the camera's
/// stream, and nothing framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The deployment's verifier guidance, checked: every language has every text the default
/// language has.
#[derive(Clone, Debug)]
pub struct Guidance {
    pub default_language: String,
    pub languages: Map<String, Value>,
}

impl Guidance {
    /// The guidance in `path`, or the bundled one.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading the verifier guidance {}: {e}", path.display()))?,
            None => DEFAULT_GUIDANCE.to_owned(),
        };
        Self::parse(&text).map_err(|e| {
            let file = path.map_or("the bundled guidance".to_owned(), |p| p.display().to_string());
            anyhow::anyhow!("the verifier guidance ({file}): {e}")
        })
    }

    /// Checks a guidance document: `defaultLanguage` names one of `languages`, and each language
    /// has the default's texts (same keys, all strings), plus `direction` `ltr` or `rtl`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let document: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let default_language = document["defaultLanguage"]
            .as_str()
            .ok_or("defaultLanguage: a language code is required")?
            .to_owned();
        let languages = document["languages"]
            .as_object()
            .ok_or("languages: an object of language code to texts is required")?
            .clone();
        let reference = languages
            .get(&default_language)
            .ok_or_else(|| format!("defaultLanguage: {default_language:?} is not one of languages"))?;
        let wanted = texts(reference, "");
        for required in [
            "name",
            "title",
            "howToScan",
            "contact",
            "results.valid.title",
            "results.revoked.title",
            "results.invalid.title",
            "results.unchecked.title",
            "results.checking.title",
            "labels.scan",
            "labels.listsAge",
        ] {
            if !wanted.contains(required) {
                return Err(format!("languages.{default_language}.{required}: required"));
            }
        }
        for (code, words) in &languages {
            if !matches!(words["direction"].as_str(), Some("ltr" | "rtl")) {
                return Err(format!("languages.{code}.direction: \"ltr\" or \"rtl\""));
            }
            let have = texts(words, "");
            if let Some(missing) = wanted.difference(&have).next() {
                return Err(format!(
                    "languages.{code}.{missing}: missing (the default language has it)"
                ));
            }
        }
        Ok(Self {
            default_language,
            languages,
        })
    }
}

/// The dotted paths of every string in `value`.
fn texts(value: &Value, prefix: &str) -> BTreeSet<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                texts(value, &path)
            })
            .collect(),
        Value::String(_) => BTreeSet::from([prefix.to_owned()]),
        _ => BTreeSet::new(),
    }
}

/// The version the service worker names its cache by: what it serves changes, so does this.
fn version(state: &AppState) -> String {
    let mut digest = Sha256::new();
    for part in [PAGE, SCRIPT, WORKER] {
        digest.update(part.as_bytes());
    }
    digest.update(serde_json::to_vec(&state.verifier_guidance.languages).unwrap_or_default());
    hex::encode(&digest.finalize()[..8])
}

fn with(response: impl IntoResponse, content_type: &'static str, cache: &'static str) -> Response {
    let mut response = response.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// `GET /verify`.
pub async fn page() -> Response {
    let mut response = with(Html(PAGE), "text/html; charset=utf-8", "no-cache");
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

/// `GET /verify/app.js`.
pub async fn script() -> Response {
    with(SCRIPT, "text/javascript; charset=utf-8", "no-cache")
}

/// `GET /verify-sw.js`: the service worker, its cache named by [`version`].
pub async fn worker(State(state): State<Arc<AppState>>) -> Response {
    with(
        WORKER.replace("{{VERSION}}", &version(&state)),
        "text/javascript; charset=utf-8",
        "no-cache",
    )
}

/// `GET /verify/trust.json`: what the page needs to verify offline. 503 when the store cannot
/// list the status lists (the service worker then serves its kept copy).
pub async fn trust(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let lists = state
        .store
        .published_status_lists(MAX_LISTED)
        .await
        .map_err(|e| unavailable(&e))?;
    let body = json!({
        "did": state.verifier_keys.did_document(),
        "listBase": format!("{}/v1/status-lists/", state.profile.base_url),
        "lists": lists,
        "contexts": &*CONTEXTS,
        "defaultLanguage": state.verifier_guidance.default_language,
        "guidance": state.verifier_guidance.languages,
    });
    Ok(with(axum::Json(body), "application/json", "no-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_guidance_has_every_text_in_every_language() {
        let guidance = Guidance::parse(DEFAULT_GUIDANCE).unwrap();
        assert_eq!(guidance.default_language, "en");
        assert_eq!(
            guidance.languages.keys().cloned().collect::<Vec<_>>(),
            ["en", "hi", "ta"]
        );
    }

    #[test]
    fn guidance_missing_a_text_is_refused_naming_it() {
        let mut document: Value = serde_json::from_str(DEFAULT_GUIDANCE).unwrap();
        document["languages"]["ta"]["results"]["revoked"]
            .as_object_mut()
            .unwrap()
            .remove("whatToDo");
        let error = Guidance::parse(&document.to_string()).unwrap_err();
        assert_eq!(
            error,
            "languages.ta.results.revoked.whatToDo: missing (the default language has it)"
        );

        let mut document: Value = serde_json::from_str(DEFAULT_GUIDANCE).unwrap();
        document["defaultLanguage"] = json!("fr");
        let error = Guidance::parse(&document.to_string()).unwrap_err();
        assert!(error.starts_with("defaultLanguage: \"fr\""), "{error}");

        let mut document: Value = serde_json::from_str(DEFAULT_GUIDANCE).unwrap();
        document["languages"]["hi"]["direction"] = json!("down");
        let error = Guidance::parse(&document.to_string()).unwrap_err();
        assert!(error.starts_with("languages.hi.direction"), "{error}");
    }
}
