//! The printable certificate: one A4 page with the WHO DDCC core data set, a table of this and the
//! earlier doses of the programme (the template grows from 1 to N rows), and the QR code drawn as
//! vector modules, 2.5 × 2.5 inches, so it prints sharp and scans at any printer resolution.

use printpdf::{BuiltinFont, Color, IndirectFontRef, Line, Mm, PdfDocument, PdfLayerReference, Point, Rect, Rgb};
use qrcode::{Color as Module, QrCode};
use serde_json::Value;

/// The QR code's printed side, without its quiet zone: 2.5 inches.
pub const QR_SIDE_MM: f32 = 63.5;

/// What the page prints, read from the signed credential.
#[derive(Debug, PartialEq, Eq)]
pub struct Sheet {
    pub name: String,
    pub birth: (String, String),
    pub gender: String,
    pub identifier: String,
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

impl Sheet {
    /// Reads the page's fields from a credential vaxtrail signed.
    pub fn of(credential: &Value) -> Self {
        let subject = &credential["credentialSubject"];
        let evidence = domain::credential::first_evidence(credential).unwrap_or(&Value::Null);
        let dose_row = |e: &Value| {
            [
                format!("{} of {}", text(&e["dose"]), text(&e["totalDoses"])),
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
            ("Date of birth".to_owned(), text(&subject["dob"]))
        } else {
            ("Age".to_owned(), text(&subject["age"]))
        };
        Self {
            name: text(&subject["name"]),
            birth,
            gender: text(&subject["gender"]),
            identifier: masked(&text(&subject["id"])),
            certificate_id: text(&evidence["certificateId"]),
            vaccine: format!("{} ({})", text(&evidence["vaccine"]), text(&evidence["prophylaxis"])),
            manufacturer: text(&evidence["manufacturer"]),
            batch: text(&evidence["batch"]),
            date: text(&evidence["date"]),
            dose: format!("{} of {}", text(&evidence["dose"]), text(&evidence["totalDoses"])),
            country: text(&evidence["facility"]["address"]["addressCountry"]),
            centre: text(&evidence["facility"]["name"]),
            issuer: text(&credential["issuer"]),
            valid: format!(
                "{} to {}",
                text(&evidence["effectiveStart"]),
                text(&evidence["effectiveUntil"])
            ),
            doses,
        }
    }
}

/// Text as the PDF's built-in fonts can print it (Latin-1; anything else becomes `?`).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (' '..='~').contains(&c) || ('\u{a0}'..='\u{ff}').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

struct Page {
    layer: PdfLayerReference,
    regular: IndirectFontRef,
    bold: IndirectFontRef,
}

impl Page {
    fn text(&self, s: &str, size: f32, x: f32, y: f32, bold: bool) {
        let font = if bold { &self.bold } else { &self.regular };
        self.layer.use_text(printable(s), size, Mm(x), Mm(y), font);
    }

    fn rule(&self, x1: f32, x2: f32, y: f32) {
        self.layer.add_line(Line {
            points: vec![(Point::new(Mm(x1), Mm(y)), false), (Point::new(Mm(x2), Mm(y)), false)],
            is_closed: false,
        });
    }
}

/// Renders the certificate: A4, the fields, the dose table and the QR code of `qr`.
pub fn render(sheet: &Sheet, qr: &QrCode, verify_url: &str) -> Result<Vec<u8>, printpdf::Error> {
    let (doc, page, layer) = PdfDocument::new(
        format!("Vaccination certificate {}", sheet.certificate_id),
        Mm(210.0),
        Mm(297.0),
        "certificate",
    );
    let page = Page {
        layer: doc.get_page(page).get_layer(layer),
        regular: doc.add_builtin_font(BuiltinFont::Helvetica)?,
        bold: doc.add_builtin_font(BuiltinFont::HelveticaBold)?,
    };
    let black = Color::Rgb(Rgb::new(0.0, 0.0, 0.0, None));
    page.layer.set_fill_color(black.clone());
    page.layer.set_outline_color(black);
    page.layer.set_outline_thickness(0.5);

    page.text("Certificate of Vaccination", 20.0, 20.0, 275.0, true);
    page.text(
        &format!("Certificate ID: {}", sheet.certificate_id),
        11.0,
        20.0,
        267.0,
        false,
    );
    page.rule(20.0, 190.0, 262.0);

    let fields = [
        ("Name", sheet.name.as_str()),
        (sheet.birth.0.as_str(), sheet.birth.1.as_str()),
        ("Gender", sheet.gender.as_str()),
        ("Identifier", sheet.identifier.as_str()),
        ("Vaccine", sheet.vaccine.as_str()),
        ("Manufacturer", sheet.manufacturer.as_str()),
        ("Batch", sheet.batch.as_str()),
        ("Date of vaccination", sheet.date.as_str()),
        ("Dose", sheet.dose.as_str()),
        ("Country", sheet.country.as_str()),
        ("Vaccination centre", sheet.centre.as_str()),
        ("Valid", sheet.valid.as_str()),
        ("Issuer", sheet.issuer.as_str()),
    ];
    let mut y = 252.0;
    for (label, value) in fields {
        page.text(label, 10.0, 20.0, y, true);
        page.text(value, 10.0, 70.0, y, false);
        y -= 7.0;
    }

    y -= 4.0;
    page.text("Doses of this programme", 12.0, 20.0, y, true);
    y -= 7.0;
    let columns = [20.0, 42.0, 66.0, 96.0, 138.0, 160.0];
    for (x, head) in columns
        .iter()
        .zip(["Dose", "Date", "Vaccine", "Manufacturer", "Batch", "Centre"])
    {
        page.text(head, 9.0, *x, y, true);
    }
    page.rule(20.0, 190.0, y - 2.0);
    for row in &sheet.doses {
        y -= 6.5;
        for (x, cell) in columns.iter().zip(row) {
            let cell: String = cell.chars().take(28).collect();
            page.text(&cell, 8.5, *x, y, false);
        }
    }

    // The QR code: dark modules as filled squares, runs merged per row.
    let width = qr.width();
    let module = QR_SIDE_MM / width as f32;
    let (left, bottom) = (20.0, 20.0);
    let colors = qr.to_colors();
    for row in 0..width {
        let mut column = 0;
        while column < width {
            if colors[row * width + column] == Module::Dark {
                let start = column;
                while column < width && colors[row * width + column] == Module::Dark {
                    column += 1;
                }
                let top = bottom + QR_SIDE_MM - row as f32 * module;
                page.layer.add_rect(Rect::new(
                    Mm(left + start as f32 * module),
                    Mm(top - module),
                    Mm(left + column as f32 * module),
                    Mm(top),
                ));
            } else {
                column += 1;
            }
        }
    }
    page.text("Scan to verify, or visit", 10.0, 92.0, 70.0, true);
    page.text(verify_url, 10.0, 92.0, 64.0, false);
    page.text(
        "The QR code holds the signed credential; a verifier checks it offline.",
        8.5,
        92.0,
        56.0,
        false,
    );
    doc.save_to_bytes()
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
            assert_eq!(sheet.doses.last().unwrap()[0], format!("{} of 3", previous + 1));
        }
        let sheet = Sheet::of(&credential(2));
        assert_eq!(sheet.doses[0][1], "2021-01-01");
        assert_eq!(sheet.identifier, "XXXXXXXX9012");
        assert_eq!(sheet.certificate_id, "ABCD1234EFGH");
    }

    #[test]
    fn non_latin_text_is_printed_as_question_marks_not_dropped() {
        assert_eq!(printable("Ananya अनन्या"), "Ananya ??????");
        assert_eq!(printable("José"), "José");
    }
}
