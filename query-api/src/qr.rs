//! DIVOC's QR payload: a ZIP archive holding `certificate.json` (DEFLATE), in a byte-mode QR code
//! at error correction level M. A signed credential of ~2 KB deflates to ~1.2 KB: version 25–32.

use std::io::{Cursor, Read, Write};

use image::{ImageFormat, Luma};
use qrcode::{EcLevel, QrCode};
use zip::{ZipArchive, ZipWriter, write::SimpleFileOptions};

/// The name of the credential inside the archive, as DIVOC's verifiers expect it.
pub const ENTRY: &str = "certificate.json";

/// Why a QR payload cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the QR payload is not a ZIP archive: {0}")]
    NotZip(String),
    #[error("the ZIP archive holds no {ENTRY}")]
    NoCertificate,
    #[error("{ENTRY} is larger than {0} bytes")]
    TooLarge(u64),
    #[error("{ENTRY} is not UTF-8 text")]
    NotText,
}

/// The largest `certificate.json` read out of a payload (a credential is a few KB).
const MAX_ENTRY: u64 = 64 * 1024;

/// The ZIP archive for a credential (deterministic: a fixed timestamp).
pub fn payload(credential: &str) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .last_modified_time(zip::DateTime::default());
    zip.start_file(ENTRY, options).expect("writing to memory");
    zip.write_all(credential.as_bytes()).expect("writing to memory");
    zip.finish().expect("writing to memory").into_inner()
}

/// The credential text inside a QR payload.
pub fn credential_of(payload: &[u8]) -> Result<String, PayloadError> {
    let mut archive = ZipArchive::new(Cursor::new(payload)).map_err(|e| PayloadError::NotZip(e.to_string()))?;
    let entry = archive.by_name(ENTRY).map_err(|_| PayloadError::NoCertificate)?;
    let mut text = Vec::new();
    entry
        .take(MAX_ENTRY + 1)
        .read_to_end(&mut text)
        .map_err(|e| PayloadError::NotZip(e.to_string()))?;
    if text.len() as u64 > MAX_ENTRY {
        return Err(PayloadError::TooLarge(MAX_ENTRY));
    }
    String::from_utf8(text).map_err(|_| PayloadError::NotText)
}

/// The QR code of a payload (level M).
pub fn code(payload: &[u8]) -> Result<QrCode, qrcode::types::QrError> {
    QrCode::with_error_correction_level(payload, EcLevel::M)
}

/// A PNG of the code, `module_px` pixels per module with the standard 4-module quiet zone.
pub fn png(code: &QrCode, module_px: u32) -> Vec<u8> {
    let image = code
        .render::<Luma<u8>>()
        .module_dimensions(module_px, module_px)
        .quiet_zone(true)
        .build();
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).expect("encoding to memory");
    out.into_inner()
}

/// An SVG of the code.
pub fn svg(code: &QrCode) -> String {
    code.render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(400, 400)
        .quiet_zone(true)
        .build()
}

/// The QR code of `segments` (each pushed into the bits in order) at `ec_level`, in the smallest
/// version that holds them; `None` when none does. For formats whose specification fixes the
/// segments (the EU DCC's one alphanumeric segment, a SMART Health Card's byte and numeric ones).
pub fn segmented(
    ec_level: EcLevel,
    segments: impl Fn(&mut qrcode::bits::Bits) -> qrcode::types::QrResult<()>,
) -> Option<QrCode> {
    (1..=40).find_map(|version| {
        let mut bits = qrcode::bits::Bits::new(qrcode::Version::Normal(version));
        (segments(&mut bits).is_ok() && bits.push_terminator(ec_level).is_ok())
            .then(|| QrCode::with_bits(bits, ec_level).ok())
            .flatten()
    })
}

/// A code's version number.
pub fn version(code: &QrCode) -> i16 {
    match code.version() {
        qrcode::Version::Normal(v) | qrcode::Version::Micro(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_gives_back_the_credential_and_is_deterministic() {
        let credential = r#"{"type":["VerifiableCredential"],"name":"Ananya Iyer"}"#;
        let zip = payload(credential);
        assert_eq!(credential_of(&zip).unwrap(), credential);
        assert_eq!(zip, payload(credential), "same bytes every time");
    }

    #[test]
    fn what_is_not_a_payload_is_refused() {
        assert!(matches!(credential_of(b"{\"a\":1}"), Err(PayloadError::NotZip(_))));
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("other.json", SimpleFileOptions::default()).unwrap();
        zip.write_all(b"{}").unwrap();
        let other = zip.finish().unwrap().into_inner();
        assert!(matches!(credential_of(&other), Err(PayloadError::NoCertificate)));
    }

    #[test]
    fn a_large_credential_fits_a_level_m_code() {
        let credential = serde_json::json!({ "filler": "x".repeat(2500), "n": (0..200).collect::<Vec<_>>() });
        let code = code(&payload(&credential.to_string())).unwrap();
        assert_eq!(code.error_correction_level(), EcLevel::M);
        let image = png(&code, 4);
        assert_eq!(&image[1..4], b"PNG");
    }
}
