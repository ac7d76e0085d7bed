//! `vaxctl bench pdf`: what one certificate PDF costs the query API. Renders N PDFs on one core for
//! three holders (a Latin name with English labels; a Devanagari name and address with English
//! and Hindi labels; the same with twelve doses, two pages), and, in the same run, the QR code of
//! the same payload alone (the baseline: what every PDF must do anyway). Prints the fonts' load
//! time, ms per PDF, PDF bytes and the ratio to the QR code. No stack needed.

use std::time::Instant;

use clap::Args;
use query_api::pdf::{Fonts, Labels, Sheet, render};
use vaxctl::synthetic::printable_credential as credential;

#[derive(Args, Debug)]
pub struct PdfArgs {
    /// PDFs rendered per holder.
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Where the Noto fonts are (as the query API's `VAXTRAIL_PDF_FONTS`).
    #[arg(
        long,
        env = "VAXTRAIL_PDF_FONTS",
        default_value = "/usr/share/fonts/truetype/noto:/usr/share/fonts/opentype/noto"
    )]
    pub fonts: String,
}

pub fn run(args: &PdfArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dirs: Vec<std::path::PathBuf> = std::env::split_paths(&args.fonts).collect();
    let fonts = Fonts::load(&dirs)?;
    let loaded = started.elapsed();
    println!(
        "fonts: {} faces loaded in {:.0} ms",
        fonts.loaded.len(),
        loaded.as_secs_f64() * 1e3
    );
    let labels = Labels::load(None, "hindi=hi").map_err(|e| anyhow::anyhow!(e))?;
    let holders = [
        (
            "Latin name, English labels",
            credential("Ananya Iyer", "12 MG Road", "Mysuru", 2),
            None,
        ),
        (
            "Devanagari, English + Hindi",
            credential("अनन्या क्षत्रिय", "१२ महात्मा गांधी मार्ग", "मैसूरु", 2),
            Some("hindi"),
        ),
        (
            "Devanagari, 12 doses (2 pages)",
            credential("अनन्या क्षत्रिय", "१२ महात्मा गांधी मार्ग", "मैसूरु", 12),
            Some("hindi"),
        ),
    ];
    let count = args.count.max(1);
    println!("{count} PDFs per holder, one core");
    println!(
        "{:<32} {:>10} {:>10} {:>12} {:>10}",
        "", "ms / PDF", "KB", "QR ms", "PDF / QR"
    );
    for (what, credential, programme) in holders {
        let text = credential.to_string();
        let payload = query_api::qr::payload(&text);
        // The baseline: the QR code alone, as often.
        let qr_started = Instant::now();
        for _ in 0..count {
            std::hint::black_box(query_api::qr::code(std::hint::black_box(&payload))?);
        }
        let qr_each = qr_started.elapsed().as_secs_f64() * 1e3 / count as f64;
        let code = query_api::qr::code(&payload)?;
        let words = labels.for_programme(programme);
        let sheet = Sheet::of(&credential);
        let mut bytes = 0;
        let pdf_started = Instant::now();
        for _ in 0..count {
            let pdf = render(&sheet, &code, "https://certificates.example.gov/verify", &fonts, &words)?;
            bytes = pdf.len();
        }
        let pdf_each = pdf_started.elapsed().as_secs_f64() * 1e3 / count as f64;
        println!(
            "{what:<32} {pdf_each:>10.2} {:>10.1} {qr_each:>12.2} {:>10.1}",
            bytes as f64 / 1024.0,
            pdf_each / qr_each
        );
    }
    Ok(())
}
