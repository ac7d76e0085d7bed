//! The printable certificate: one A4 page with the WHO DDCC core data set, a table of this and the
//! earlier doses of the programme (the template grows from 1 to N rows), and the QR code drawn as
//! vector modules, 2.5 × 2.5 inches, so it prints sharp and scans at any printer resolution.
//! Written with `krilla`; every text is shaped in the script it is written in, with Debian's Noto
//! fonts embedded as subsets ([`fonts`]).

pub mod fonts;
pub mod labels;

use krilla::{
    Document,
    geom::{PathBuilder, Rect},
    metadata::Metadata,
    page::PageSettings,
    paint::Fill,
    surface::Surface,
};
use qrcode::{Color as Module, QrCode};

pub use self::{
    fonts::Fonts,
    labels::{Labels, Words},
};
use serde_json::Value;

/// The QR code's printed side, without its quiet zone: 2.5 inches.
pub const QR_SIDE_MM: f32 = 63.5;

/// What the page prints, read from the signed credential.
#[derive(Debug, PartialEq, Eq)]
pub struct Sheet {
    pub name: String,
    /// The label key (`dateOfBirth` or `age`) and the value.
    pub birth: (&'static str, String),
    pub gender: String,
    pub identifier: String,
    /// The recipient's address, on one line.
    pub address: String,
    pub certificate_id: String,
    pub vaccine: String,
    pub manufacturer: String,
    pub batch: String,
    pub date: String,
    pub dose: String,
    pub country: String,
    pub centre: String,
    pub issuer: String,
    pub valid: String,
    /// Dose rows, earliest first, this certificate's dose last: dose, date, vaccine,
    /// manufacturer, batch, centre.
    pub doses: Vec<[String; 6]>,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The identifier with all but its last four characters masked, as DIVOC prints it.
fn masked(identifier: &str) -> String {
    let local = identifier.rsplit(':').next().unwrap_or(identifier);
    let keep = local.chars().count().saturating_sub(4);
    local
        .chars()
        .enumerate()
        .map(|(i, c)| if i < keep { 'X' } else { c })
        .collect()
}

/// An address on one line, its parts as written.
fn address_line(address: &Value) -> String {
    [
        "streetAddress",
        "streetAddress2",
        "district",
        "addressRegion",
        "postalCode",
    ]
    .iter()
    .map(|k| text(&address[*k]))
    .filter(|part| !part.trim().is_empty())
    .collect::<Vec<_>>()
    .join(", ")
}

impl Sheet {
    /// Reads the page's fields from a credential vaxtrail signed.
    pub fn of(credential: &Value) -> Self {
        let subject = &credential["credentialSubject"];
        let evidence = domain::credential::first_evidence(credential).unwrap_or(&Value::Null);
        let dose_row = |e: &Value| {
            [
                format!("{} / {}", text(&e["dose"]), text(&e["totalDoses"])),
                text(&e["date"]),
                text(&e["vaccine"]),
                text(&e["manufacturer"]),
                text(&e["batch"]),
                text(&e["facility"]["name"]),
            ]
        };
        let mut doses: Vec<[String; 6]> = match &evidence["previousDoses"] {
            Value::Array(items) => items.iter().map(dose_row).collect(),
            Value::Object(_) => vec![dose_row(&evidence["previousDoses"])],
            _ => Vec::new(),
        };
        doses.push(dose_row(evidence));
        let birth = if subject["dob"].is_string() {
            ("dateOfBirth", text(&subject["dob"]))
        } else {
            ("age", text(&subject["age"]))
        };
        Self {
            name: text(&subject["name"]),
            birth,
            gender: text(&subject["gender"]),
            identifier: masked(&text(&subject["id"])),
            address: address_line(&subject["address"]),
            certificate_id: text(&evidence["certificateId"]),
            vaccine: format!("{} ({})", text(&evidence["vaccine"]), text(&evidence["prophylaxis"])),
            manufacturer: text(&evidence["manufacturer"]),
            batch: text(&evidence["batch"]),
            date: text(&evidence["date"]),
            dose: format!("{} / {}", text(&evidence["dose"]), text(&evidence["totalDoses"])),
            country: text(&evidence["facility"]["address"]["addressCountry"]),
            centre: text(&evidence["facility"]["name"]),
            issuer: text(&credential["issuer"]),
            valid: format!(
                "{} – {}",
                text(&evidence["effectiveStart"]),
                text(&evidence["effectiveUntil"])
            ),
            doses,
        }
    }
}

/// Points per millimetre.
const PT: f32 = 72.0 / 25.4;
/// The page: A4, in millimetres.
const PAGE_MM: (f32, f32) = (210.0, 297.0);

/// The page being drawn, with positions in millimetres from its bottom-left corner (as the
/// layout below is written) turned into krilla's points from the top-left.
struct Page<'a, 'b> {
    surface: &'a mut Surface<'b>,
    fonts: &'a Fonts,
}

impl Page<'_, '_> {
    fn text(&mut self, s: &str, size: f32, x: f32, y: f32, bold: bool) {
        self.fonts
            .draw(self.surface, s, size, x * PT, (PAGE_MM.1 - y) * PT, bold);
    }

    /// Text cut (with an ellipsis) to `width` millimetres.
    fn cell(&mut self, s: &str, size: f32, x: f32, y: f32, width: f32) {
        let fitted = self.fonts.fit(s, size, width * PT, false);
        self.text(&fitted, size, x, y, false);
    }

    /// Filled rectangles, `(left, bottom, right, top)` in millimetres.
    fn rects(&mut self, rects: impl IntoIterator<Item = (f32, f32, f32, f32)>) {
        let mut path = PathBuilder::new();
        for (left, bottom, right, top) in rects {
            if let Some(rect) =
                Rect::from_ltrb(left * PT, (PAGE_MM.1 - top) * PT, right * PT, (PAGE_MM.1 - bottom) * PT)
            {
                path.push_rect(rect);
            }
        }
        if let Some(path) = path.finish() {
            self.surface.set_fill(Some(Fill::default()));
            self.surface.draw_path(&path);
        }
    }

    /// A horizontal rule, 0.5 pt.
    fn rule(&mut self, x1: f32, x2: f32, y: f32) {
        let half = 0.25 / PT;
        self.rects([(x1, y - half, x2, y + half)]);
    }
}

/// Why a PDF could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the PDF could not be written: {0:?}")]
pub struct RenderError(krilla::error::KrillaError);

/// The lowest a dose row may sit on the first page: above the QR code and its text.
const TABLE_FLOOR_MM: f32 = 20.0 + QR_SIDE_MM + 2.0;

/// A label in every language: English, then the others joined, on a second, smaller line.
fn label<'w>(words: &[&'w Words], key: &str) -> (&'w str, String) {
    let text = |w: &&'w Words| w.get(key).map_or("", String::as_str);
    let english = words.first().map_or("", text);
    let others = words[1.min(words.len())..]
        .iter()
        .map(text)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    (english, others)
}

/// Renders the certificate: A4, labels in English and the programme's languages (`words`,
/// English first), the fields, the dose table (onto further pages when it is longer than the
/// first page holds) and the QR code of `qr`, every text in the script it is written in (`fonts`).
pub fn render(
    sheet: &Sheet,
    qr: &QrCode,
    verify_url: &str,
    fonts: &Fonts,
    words: &[&Words],
) -> Result<Vec<u8>, RenderError> {
    let mut document = Document::new();
    document.set_metadata(Metadata::new().title(format!("Vaccination certificate {}", sheet.certificate_id)));
    let settings = || PageSettings::from_wh(PAGE_MM.0 * PT, PAGE_MM.1 * PT).expect("A4 is a valid size");
    let mut pdf_page = document.start_page_with(settings());
    let mut surface = pdf_page.surface();
    let mut page = Page {
        surface: &mut surface,
        fonts,
    };
    let bilingual = words.len() > 1;
    // A label's second line sits this far below its first.
    const SECOND: f32 = 3.6;

    let (title, title_local) = label(words, "title");
    page.text(title, 20.0, 20.0, 275.0, true);
    let mut y = 267.0;
    if bilingual {
        page.cell(&title_local, 14.0, 20.0, 268.0, 170.0);
        y = 260.0;
    }
    page.text(
        &format!("{}: {}", label(words, "certificateId").0, sheet.certificate_id),
        11.0,
        20.0,
        y,
        false,
    );
    page.rule(20.0, 190.0, y - 5.0);

    let fields = [
        ("name", sheet.name.as_str()),
        (sheet.birth.0, sheet.birth.1.as_str()),
        ("gender", sheet.gender.as_str()),
        ("identifier", sheet.identifier.as_str()),
        ("address", sheet.address.as_str()),
        ("vaccine", sheet.vaccine.as_str()),
        ("manufacturer", sheet.manufacturer.as_str()),
        ("batch", sheet.batch.as_str()),
        ("date", sheet.date.as_str()),
        ("dose", sheet.dose.as_str()),
        ("country", sheet.country.as_str()),
        ("centre", sheet.centre.as_str()),
        ("valid", sheet.valid.as_str()),
        ("issuer", sheet.issuer.as_str()),
    ];
    let step = if bilingual { 8.0 } else { 7.0 };
    y -= 13.0;
    for (key, value) in fields {
        let (english, local) = label(words, key);
        page.text(english, 10.0, 20.0, y, true);
        if bilingual {
            page.cell(&local, 8.0, 20.0, y - SECOND, 48.0);
        }
        page.cell(value, 10.0, 70.0, y, 120.0);
        y -= step;
    }

    y -= 3.0;
    let (doses, doses_local) = label(words, "doses");
    page.text(doses, 12.0, 20.0, y, true);
    if bilingual {
        page.cell(
            &doses_local,
            9.0,
            20.0 + fonts.width(doses, 12.0, true) / PT + 3.0,
            y,
            100.0,
        );
    }
    y -= 7.0;
    let columns = [20.0, 42.0, 66.0, 96.0, 138.0, 160.0, 190.0];
    let heads = ["dose", "doseDate", "vaccine", "manufacturer", "batch", "doseCentre"];
    let table_head = |page: &mut Page<'_, '_>, y: f32| -> f32 {
        for (i, key) in heads.iter().enumerate() {
            let (english, local) = label(words, key);
            let width = columns[i + 1] - columns[i] - 1.5;
            page.cell(english, 9.0, columns[i], y, width);
            if bilingual {
                page.cell(&local, 7.0, columns[i], y - SECOND + 0.4, width);
            }
        }
        let bottom = if bilingual { y - SECOND - 2.0 } else { y - 2.0 };
        page.rule(20.0, 190.0, bottom);
        bottom
    };
    y = table_head(&mut page, y);

    const ROW: f32 = 6.5;
    let draw_rows = |page: &mut Page<'_, '_>, mut y: f32, rows: &[[String; 6]]| {
        for row in rows {
            y -= ROW;
            for (i, cell) in row.iter().enumerate() {
                page.cell(cell, 8.5, columns[i], y, columns[i + 1] - columns[i] - 1.5);
            }
        }
    };

    // The QR code, and the rows that fit above it, on the first page.
    draw_qr(&mut page, qr, verify_url, words);
    let first = (((y - TABLE_FLOOR_MM) / ROW).max(0.0) as usize).min(sheet.doses.len());
    draw_rows(&mut page, y, &sheet.doses[..first]);
    surface.finish();
    pdf_page.finish();

    // The rest on further pages, under the table's head again.
    let mut pending = &sheet.doses[first..];
    while !pending.is_empty() {
        let mut pdf_page = document.start_page_with(settings());
        let mut surface = pdf_page.surface();
        let mut page = Page {
            surface: &mut surface,
            fonts,
        };
        page.text(
            &format!("{} · {}", doses, sheet.certificate_id),
            12.0,
            20.0,
            275.0,
            true,
        );
        let y = table_head(&mut page, 266.0);
        let fit = (((y - 20.0) / ROW) as usize).max(1).min(pending.len());
        draw_rows(&mut page, y, &pending[..fit]);
        pending = &pending[fit..];
        surface.finish();
        pdf_page.finish();
    }
    document.finish().map_err(RenderError)
}

/// The QR code, bottom left (dark modules as filled squares, runs merged per row), and what it
/// is for, beside it.
fn draw_qr(page: &mut Page<'_, '_>, qr: &QrCode, verify_url: &str, words: &[&Words]) {
    let width = qr.width();
    let module = QR_SIDE_MM / width as f32;
    let (left, bottom) = (20.0, 20.0);
    let colors = qr.to_colors();
    let mut modules = Vec::new();
    for row in 0..width {
        let mut column = 0;
        while column < width {
            if colors[row * width + column] == Module::Dark {
                let start = column;
                while column < width && colors[row * width + column] == Module::Dark {
                    column += 1;
                }
                let top = bottom + QR_SIDE_MM - row as f32 * module;
                modules.push((
                    left + start as f32 * module,
                    top - module,
                    left + column as f32 * module,
                    top,
                ));
            } else {
                column += 1;
            }
        }
    }
    page.rects(modules);
    // Each language on its own line: these are sentences, too long to join.
    let lines = |key: &str| -> Vec<&str> { words.iter().filter_map(|w| w.get(key).map(String::as_str)).collect() };
    let mut y = 76.0;
    for (i, line) in lines("scan").into_iter().enumerate() {
        if i == 0 {
            page.text(line, 10.0, 92.0, y, true);
        } else {
            page.cell(line, 9.0, 92.0, y, 98.0);
        }
        y -= 4.5;
    }
    y -= 1.5;
    page.text(verify_url, 10.0, 92.0, y, false);
    y -= 8.0;
    for (i, line) in lines("qrNote").into_iter().enumerate() {
        page.cell(line, if i == 0 { 8.5 } else { 7.5 }, 92.0, y, 98.0);
        y -= 4.5;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn credential(previous: usize) -> Value {
        let dose = |n: usize| {
            json!({"dose": n, "totalDoses": 3, "date": format!("2021-0{n}-01"), "vaccine": "covaxin",
                   "manufacturer": "Bharat Biotech", "batch": format!("B{n}"), "facility": {"name": "PHC Mysuru"}})
        };
        let mut evidence = dose(previous + 1);
        evidence["certificateId"] = json!("ABCD1234EFGH");
        evidence["prophylaxis"] = json!("COVID-19 vaccine, inactivated virus");
        evidence["facility"]["address"] = json!({"addressCountry": "IND"});
        if previous > 0 {
            evidence["previousDoses"] = (1..=previous).map(dose).collect();
        }
        json!({
            "issuer": "did:web:certificates.example.gov",
            "credentialSubject": {"name": "Ananya Iyer", "dob": "1990-04-02", "gender": "Female",
                                  "id": "did:in.gov.uidai.aadhaar:123456789012"},
            "evidence": [evidence],
        })
    }

    #[test]
    fn the_dose_table_grows_with_the_earlier_doses_and_ends_with_this_one() {
        for previous in 0..3 {
            let sheet = Sheet::of(&credential(previous));
            assert_eq!(sheet.doses.len(), previous + 1);
            assert_eq!(sheet.doses.last().unwrap()[0], format!("{} / 3", previous + 1));
        }
        let sheet = Sheet::of(&credential(2));
        assert_eq!(sheet.doses[0][1], "2021-01-01");
        assert_eq!(sheet.identifier, "XXXXXXXX9012");
        assert_eq!(sheet.certificate_id, "ABCD1234EFGH");
    }

    fn fonts() -> Fonts {
        Fonts::load(&[
            "/usr/share/fonts/truetype/noto".into(),
            "/usr/share/fonts/opentype/noto".into(),
        ])
        .expect("Debian's Noto fonts (deploy/local/install)")
    }

    #[test]
    fn a_name_in_any_script_is_laid_out_in_its_own_font_and_direction() {
        let fonts = fonts();
        // Latin, then Devanagari: two runs; Arabic within Latin: its run right to left.
        let runs = fonts.runs("Ananya अनन्या", false);
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!(runs[1].1, "अनन्या");
        assert_ne!(runs[0].0, runs[1].0);
        let runs = fonts.runs("Ahmed أحمد علي", false);
        assert!(runs.iter().any(|(_, s, rtl)| *rtl && s.contains("أحمد")), "{runs:?}");
        // A conjunct is narrower than its letters drawn apart: shaping happened.
        assert!(
            fonts.width("क्ष", 10.0, false)
                < fonts.width("क", 10.0, false) + fonts.width("्", 10.0, false) + fonts.width("ष", 10.0, false)
        );
        // Cut to fit, with an ellipsis.
        let cut = fonts.fit(&"Vaccination centre ".repeat(10), 8.5, 100.0, false);
        assert!(cut.ends_with('…') && fonts.width(&cut, 8.5, false) <= 100.0, "{cut}");
    }
}
