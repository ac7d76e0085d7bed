//! A certificate every citizen can read: names and addresses in Devanagari, Tamil, Bengali,
//! Sinhala, Arabic (right to left) and CJK print shaped, in embedded subsets of Debian's Noto
//! fonts. Read back with real tools: `pdftotext` recovers the exact name and address (the text
//! layer is right), tesseract (Debian's trained data) reads a Devanagari and a Tamil name off the
//! page rendered at 300 dpi, `pdffonts` lists only embedded subsets, and the QR code still decodes
//! at 2.5 in. The page images are kept as artifacts (`VAXTRAIL_ARTIFACTS`).

use std::{path::Path, process::Command};

use query_api::pdf::{Fonts, Labels, Sheet, render};
use serde_json::Value;
use vaxtrail_tests::{Scratch, zbar_scan};

/// A credential of vaxtrail's shape with this recipient, dose 1 of 1.
fn credential(name: &str, street: &str, district: &str) -> Value {
    vaxctl::synthetic::printable_credential(name, street, district, 1)
}

fn run(program: &str, args: &[&str], files: &[&Path]) -> String {
    let out = Command::new(program)
        .args(args)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("{program} is installed (deploy/local/install): {e}"));
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Debian's Noto fonts, where the query API finds them by default.
fn fonts() -> Fonts {
    Fonts::load(&[
        "/usr/share/fonts/truetype/noto".into(),
        "/usr/share/fonts/opentype/noto".into(),
    ])
    .expect("Debian's Noto fonts (deploy/local/install)")
}

/// Text without the bidi controls pdftotext puts around a right-to-left run, spaces squeezed.
fn plain(text: &str) -> String {
    text.chars()
        .filter(|c| !('\u{202a}'..='\u{202e}').contains(c) && !('\u{2066}'..='\u{2069}').contains(c))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn names_and_addresses_in_every_script_print_shaped_and_read_back() {
    let fonts = fonts();
    let scratch = Scratch::new("pdf-scripts");
    let artifacts = vaxtrail_tests::artifacts();
    // Labels: English, plus Hindi for programme "hi", Tamil for "ta", Sinhala and Tamil for "si".
    let labels = Labels::load(None, "hi=hi; ta=ta; si=si,ta").unwrap();
    // (script, name, street, district, tesseract's language for the name, the programme, a label
    // the programme's languages print)
    let people = [
        (
            "devanagari",
            "अनन्या क्षत्रिय",
            "१२ महात्मा गांधी मार्ग",
            "मैसूरु",
            Some("hin"),
            "hi",
            Some("टीकाकरण प्रमाणपत्र"),
        ),
        (
            "tamil",
            "தமிழ்செல்வி இராமசாமி",
            "12 காந்தி சாலை",
            "சென்னை",
            Some("tam"),
            "ta",
            Some("தடுப்பூசி சான்றிதழ்"),
        ),
        ("bengali", "সৌমিত্র চট্টোপাধ্যায়", "৭ রবীন্দ্র সরণি", "কলকাতা", None, "-", None),
        (
            "sinhala",
            "නුවන් සිල්වා",
            "ගාලු පාර 21",
            "කොළඹ",
            None,
            "si",
            Some("එන්නත්කරණ සහතිකය"),
        ),
        ("arabic", "أحمد علي", "شارع الملك 5", "دبي", None, "-", None),
        ("cjk", "王小明", "中山路 8 号", "上海", None, "-", None),
    ];
    for (script, name, street, district, ocr, programme, local_title) in people {
        let credential = credential(name, street, district);
        let text = credential.to_string();
        let qr = query_api::qr::code(&query_api::qr::payload(&text)).unwrap();
        let pdf = render(
            &Sheet::of(&credential),
            &qr,
            "https://certificates.example.gov/verify",
            &fonts,
            &labels.for_programme(Some(programme)),
        )
        .unwrap();
        let file = scratch.0.join(format!("{script}.pdf"));
        std::fs::write(&file, &pdf).unwrap();

        // The text layer holds the exact name and address.
        let layer = plain(&run("pdftotext", &["-layout"], &[&file, Path::new("-")]));
        assert!(
            layer.contains(name),
            "{script}: pdftotext lost the name {name:?}:\n{layer}"
        );
        let address = plain(&format!("{street}, {district}, Karnataka, 560034"));
        if script == "arabic" {
            // A right-to-left paragraph with a left-to-right part: pdftotext gives it in visual
            // order, so each word is looked for (the name, all Arabic, read back whole above).
            for word in address.split([' ', ',']).filter(|w| !w.is_empty()) {
                assert!(
                    layer.contains(word),
                    "{script}: {word:?} of the address is not in:\n{layer}"
                );
            }
        } else {
            assert!(
                layer.contains(&address),
                "{script}: the address {address:?} is not in:\n{layer}"
            );
        }

        // The labels: English always, and the programme's language(s) when it has them.
        for english in [
            "Certificate of Vaccination",
            "Date of vaccination",
            "Scan to verify, or visit",
        ] {
            assert!(layer.contains(english), "{script}: {english:?} is not in:\n{layer}");
        }
        match local_title {
            Some(title) => assert!(layer.contains(title), "{script}: {title:?} is not in:\n{layer}"),
            None => assert!(!layer.contains("नाम"), "{script}: English only:\n{layer}"),
        }
        if programme == "si" {
            // Sinhala and Tamil, one after the other under each English label.
            assert!(layer.contains("නම / பெயர்"), "{script}: both languages:\n{layer}");
        }

        // Every font is an embedded subset: the page prints the same anywhere.
        let listed = run("pdffonts", &[], &[&file]);
        let rows: Vec<&str> = listed.lines().skip(2).collect();
        assert!(rows.len() >= 2, "{script}: a Latin font and the script's:\n{listed}");
        for row in rows {
            let name = row.split_whitespace().next().unwrap_or_default();
            assert!(
                name.len() > 7 && name.as_bytes()[6] == b'+',
                "{script}: not a subset: {row}"
            );
            assert!(
                row.contains(" yes yes yes "),
                "{script}: not embedded with a text map: {row}"
            );
        }

        // The page, rendered at 300 dpi: the QR code decodes, and OCR reads the name.
        let page = scratch.0.join(script);
        run("pdftoppm", &["-r", "300", "-png", "-singlefile"], &[&file, &page]);
        let png = page.with_extension("png");
        let decoded = query_api::qr::credential_of(&zbar_scan(&png)).unwrap();
        assert_eq!(decoded, text, "{script}: the QR code");
        if let Some(language) = ocr {
            let read = plain(&run(
                "tesseract",
                &["-l", &format!("{language}+eng")],
                &[&png, Path::new("-")],
            ));
            assert!(
                read.contains(name),
                "{script}: tesseract ({language}) did not read {name:?}:\n{read}"
            );
        }
        std::fs::copy(&png, artifacts.join(format!("certificate-{script}.png"))).unwrap();
        std::fs::copy(&file, artifacts.join(format!("certificate-{script}.pdf"))).unwrap();
    }
}

/// One template for 1..N doses: a history longer than the first page holds continues on a second
/// page under the table's head again, every dose row read back in order.
#[test]
fn a_long_dose_history_continues_on_a_further_page() {
    let fonts = fonts();
    let labels = Labels::load(None, "*=hi").unwrap();
    let scratch = Scratch::new("pdf-doses");
    for (doses, pages) in [(1_usize, 1_usize), (5, 1), (12, 2)] {
        let credential = vaxctl::synthetic::printable_credential("Ananya Iyer", "12 MG Road", "Mysuru", doses);
        let text = credential.to_string();
        let qr = query_api::qr::code(&query_api::qr::payload(&text)).unwrap();
        let pdf = render(
            &Sheet::of(&credential),
            &qr,
            "https://certificates.example.gov/verify",
            &fonts,
            &labels.for_programme(None),
        )
        .unwrap();
        let file = scratch.0.join(format!("doses-{doses}.pdf"));
        std::fs::write(&file, &pdf).unwrap();
        let info = run("pdfinfo", &[], &[&file]);
        assert!(
            info.lines()
                .any(|l| l.split_whitespace().eq(["Pages:", &pages.to_string()])),
            "{doses} doses: {pages} page(s):\n{info}"
        );
        let layer = plain(&run("pdftotext", &["-layout"], &[&file, Path::new("-")]));
        let mut at = 0;
        for n in 1..=doses {
            let batch = format!("4121Z{n:03}");
            let found = layer[at..]
                .find(&batch)
                .unwrap_or_else(|| panic!("{doses} doses: {batch} after {at}:\n{layer}"));
            at += found + batch.len();
        }
        if pages > 1 {
            let second = plain(&run(
                "pdftotext",
                &["-f", "2", "-l", "2", "-layout"],
                &[&file, Path::new("-")],
            ));
            assert!(
                second.contains("Doses of this programme") && second.contains("Manufacturer"),
                "{second}"
            );
            assert!(
                second.contains(&format!("4121Z{doses:03}")),
                "the last dose on page 2:\n{second}"
            );
        }
    }
}
