//! The certificate's labels, in English plus each programme's language(s): one JSON file of texts
//! per language (`query-api/assets/labels/<code>.json`: English, Hindi, Tamil and Sinhala are
//! bundled; a directory named by `VAXTRAIL_PDF_LABELS` adds languages or replaces the bundled
//! texts), and which languages each programme prints (`VAXTRAIL_PDF_LANGUAGES`, e.g.
//! `*=hi;measles=ta,si`: English first, then these). Checked at start: every file has every text
//! English has, and every language a programme names has a file.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
};

/// The bundled texts, by language code.
const BUNDLED: [(&str, &str); 4] = [
    ("en", include_str!("../../assets/labels/en.json")),
    ("hi", include_str!("../../assets/labels/hi.json")),
    ("ta", include_str!("../../assets/labels/ta.json")),
    ("si", include_str!("../../assets/labels/si.json")),
];

/// One language's texts, by key (`name`, `dateOfBirth`, …).
pub type Words = BTreeMap<String, String>;

/// Every language's texts, and the languages each programme prints.
#[derive(Clone, Debug)]
pub struct Labels {
    languages: BTreeMap<String, Words>,
    /// Programme id → the languages printed after English.
    programmes: HashMap<String, Vec<String>>,
    /// The languages printed after English for a programme not named (`*`).
    others: Vec<String>,
}

impl Labels {
    /// The bundled texts plus the `<code>.json` files in `dir`, and the programme languages in
    /// `languages` (`programme=code,code;…`, `*` for every other programme; empty: English only).
    pub fn load(dir: Option<&Path>, languages: &str) -> Result<Self, String> {
        let mut texts: BTreeMap<String, Words> = BTreeMap::new();
        for (code, text) in BUNDLED {
            texts.insert(
                code.to_owned(),
                parse(text).map_err(|e| format!("the bundled {code}.json: {e}"))?,
            );
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("VAXTRAIL_PDF_LABELS {}: {e}", dir.display()))?;
            for entry in entries {
                let path = entry
                    .map_err(|e| format!("VAXTRAIL_PDF_LABELS {}: {e}", dir.display()))?
                    .path();
                let Some(code) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                else {
                    continue;
                };
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                texts.insert(
                    code.to_owned(),
                    parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
                );
            }
        }
        let english = texts.get("en").expect("English is bundled");
        let wanted: BTreeSet<&String> = english.keys().collect();
        for (code, words) in &texts {
            if let Some(missing) = wanted.iter().find(|k| !words.contains_key(k.as_str())) {
                return Err(format!("labels {code}.json: {missing} is missing (en.json has it)"));
            }
        }
        let (programmes, others) = programme_languages(languages, &texts)?;
        Ok(Self {
            languages: texts,
            programmes,
            others,
        })
    }

    /// The texts a programme's certificates print: English first, then the programme's languages.
    pub fn for_programme(&self, programme: Option<&str>) -> Vec<&Words> {
        let extra = programme.and_then(|p| self.programmes.get(p)).unwrap_or(&self.others);
        std::iter::once("en")
            .chain(extra.iter().map(String::as_str))
            .filter_map(|code| self.languages.get(code))
            .collect()
    }
}

fn parse(text: &str) -> Result<Words, String> {
    serde_json::from_str(text).map_err(|e| format!("not an object of strings: {e}"))
}

type ProgrammeLanguages = (HashMap<String, Vec<String>>, Vec<String>);

fn programme_languages(spec: &str, texts: &BTreeMap<String, Words>) -> Result<ProgrammeLanguages, String> {
    let mut programmes = HashMap::new();
    let mut others = Vec::new();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (programme, codes) = part
            .split_once('=')
            .ok_or_else(|| format!("VAXTRAIL_PDF_LANGUAGES: {part:?} is not programme=code,code"))?;
        let codes: Vec<String> = codes
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty() && *c != "en")
            .map(str::to_owned)
            .collect();
        if let Some(unknown) = codes.iter().find(|c| !texts.contains_key(*c)) {
            return Err(format!(
                "VAXTRAIL_PDF_LANGUAGES: no labels for {unknown:?} (languages: {})",
                texts.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if programme.trim() == "*" {
            others = codes;
        } else {
            programmes.insert(programme.trim().to_owned(), codes);
        }
    }
    Ok((programmes, others))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programmes_print_english_then_their_languages() {
        let labels = Labels::load(None, "*=hi; measles=ta,si").unwrap();
        let names = |p: Option<&str>| {
            labels
                .for_programme(p)
                .iter()
                .map(|w| w["language"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Some("measles")), ["English", "தமிழ்", "සිංහල"]);
        assert_eq!(names(Some("covid-19")), ["English", "हिन्दी"]);
        assert_eq!(names(None), ["English", "हिन्दी"]);
        let english_only = Labels::load(None, "").unwrap();
        assert_eq!(english_only.for_programme(Some("measles")).len(), 1);
    }

    #[test]
    fn a_file_missing_a_text_or_an_unknown_language_is_refused() {
        let error = Labels::load(None, "*=fr").unwrap_err();
        assert!(error.contains("no labels for \"fr\""), "{error}");
        let error = Labels::load(None, "measles").unwrap_err();
        assert!(error.contains("is not programme=code"), "{error}");

        let dir = std::env::temp_dir().join(format!("vaxtrail-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fr.json"), r#"{"language": "Français", "name": "Nom"}"#).unwrap();
        let error = Labels::load(Some(&dir), "*=fr").unwrap_err();
        assert!(error.starts_with("labels fr.json: "), "{error}");
        assert!(error.ends_with("is missing (en.json has it)"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
