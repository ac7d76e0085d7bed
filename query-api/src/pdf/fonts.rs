//! Fonts for the printed certificate: Debian's Noto fonts, embedded as subsets, and one line of
//! text laid out in any script they cover.
//!
//! A line is split into bidirectional runs (`unicode-bidi`, the Unicode Bidirectional
//! Algorithm), each run into font runs (the first font, in the fallback order, that has a glyph
//! for a letter; spaces, digits and punctuation stay with the run they are in), and each font
//! run is shaped by HarfBuzz's rules (`rustybuzz`, through `krilla`, which embeds the subset and
//! the glyphs' text for copying and search). So Devanagari conjuncts and vowel signs, Tamil,
//! Bengali, Sinhala, Arabic joined right to left, and CJK print as they are written, and
//! `pdftotext` reads back the exact text.

use std::path::{Path, PathBuf};

use krilla::{
    geom::Point,
    surface::Surface,
    text::{Font, TextDirection},
};
use unicode_bidi::BidiInfo;

/// The font files, in fallback order: Latin (with Greek and Cyrillic) first, then each script
/// a recipient's name or address may use. `(regular, bold, index in a collection)`.
const FILES: &[(&str, &str, u32)] = &[
    ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf", 0),
    ("NotoSansDevanagari-Regular.ttf", "NotoSansDevanagari-Bold.ttf", 0),
    ("NotoSansBengali-Regular.ttf", "NotoSansBengali-Bold.ttf", 0),
    ("NotoSansTamil-Regular.ttf", "NotoSansTamil-Bold.ttf", 0),
    ("NotoSansTelugu-Regular.ttf", "NotoSansTelugu-Bold.ttf", 0),
    ("NotoSansKannada-Regular.ttf", "NotoSansKannada-Bold.ttf", 0),
    ("NotoSansMalayalam-Regular.ttf", "NotoSansMalayalam-Bold.ttf", 0),
    ("NotoSansGujarati-Regular.ttf", "NotoSansGujarati-Bold.ttf", 0),
    ("NotoSansGurmukhi-Regular.ttf", "NotoSansGurmukhi-Bold.ttf", 0),
    ("NotoSansOriya-Regular.ttf", "NotoSansOriya-Bold.ttf", 0),
    ("NotoSansSinhala-Regular.ttf", "NotoSansSinhala-Bold.ttf", 0),
    ("NotoNaskhArabic-Regular.ttf", "NotoNaskhArabic-Bold.ttf", 0),
    ("NotoSansThai-Regular.ttf", "NotoSansThai-Bold.ttf", 0),
    ("NotoSansHebrew-Regular.ttf", "NotoSansHebrew-Bold.ttf", 0),
    // Chinese, Japanese and Korean: the collection's first face (Japanese forms of the shared
    // Han characters, kana, hangul).
    ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc", 0),
];

/// One loaded face: for krilla (drawing, embedding) and for rustybuzz (coverage, widths).
struct Face {
    font: Font,
    data: std::sync::Arc<Vec<u8>>,
    index: u32,
}

impl Face {
    fn load(path: &Path, index: u32) -> anyhow::Result<Self> {
        let data = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        rustybuzz::Face::from_slice(&data, index)
            .ok_or_else(|| anyhow::anyhow!("{}: not a font krilla can read", path.display()))?;
        let data = std::sync::Arc::new(data);
        let font = Font::new(krilla::Data::from(data.clone()), index)
            .ok_or_else(|| anyhow::anyhow!("{}: not a font krilla can read", path.display()))?;
        Ok(Self { font, data, index })
    }

    fn face(&self) -> rustybuzz::Face<'_> {
        rustybuzz::Face::from_slice(&self.data, self.index).expect("checked when loaded")
    }

    /// The advance of `text` shaped in this face, in points at `size`.
    fn width(&self, text: &str, size: f32, rtl: bool) -> f32 {
        let face = self.face();
        let mut buffer = rustybuzz::UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.guess_segment_properties();
        buffer.set_direction(if rtl {
            rustybuzz::Direction::RightToLeft
        } else {
            rustybuzz::Direction::LeftToRight
        });
        let shaped = rustybuzz::shape(&face, &[], buffer);
        let units: i32 = shaped.glyph_positions().iter().map(|p| p.x_advance).sum();
        units as f32 / f32::from(face.units_per_em() as u16) * size
    }
}

/// The certificate's fonts, regular and bold, in fallback order.
pub struct Fonts {
    regular: Vec<Face>,
    bold: Vec<Face>,
    /// The files found, for the start-up log.
    pub loaded: Vec<PathBuf>,
}

impl std::fmt::Debug for Fonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fonts").field("loaded", &self.loaded).finish()
    }
}

impl Fonts {
    /// Loads the fonts from the first of `dirs` that holds each file. The Latin font is required
    /// (a certificate without it cannot print its labels); a script's font that is missing is
    /// skipped, and a name in that script prints as missing glyphs until it is installed.
    pub fn load(dirs: &[PathBuf]) -> anyhow::Result<Self> {
        let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
        let mut fonts = Self {
            regular: Vec::new(),
            bold: Vec::new(),
            loaded: Vec::new(),
        };
        for (i, (regular, bold, index)) in FILES.iter().enumerate() {
            let (Some(regular), Some(bold)) = (find(regular), find(bold)) else {
                anyhow::ensure!(
                    i > 0,
                    "the PDF fonts: {regular} and {bold} are in none of {dirs:?} (Debian: apt-get install fonts-noto-core; VAXTRAIL_PDF_FONTS names the directories)"
                );
                continue;
            };
            fonts.regular.push(Face::load(&regular, *index)?);
            fonts.bold.push(Face::load(&bold, *index)?);
            fonts.loaded.push(regular);
        }
        Ok(fonts)
    }

    /// The line as font runs in visual order: `(face, text, right to left)`.
    pub(crate) fn runs(&self, text: &str, bold: bool) -> Vec<(usize, String, bool)> {
        let faces = if bold { &self.bold } else { &self.regular };
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        // Each face is parsed once for the line, and only when a character is looked up in it.
        let parsed: Vec<std::cell::OnceCell<rustybuzz::Face<'_>>> = faces.iter().map(|_| Default::default()).collect();
        let has = |f: usize, c: char| parsed[f].get_or_init(|| faces[f].face()).glyph_index(c).is_some();
        // The face, by position in the fallback order, that prints `c` (the Latin one when none does).
        let face_for = |c: char| (0..faces.len()).find(|&f| has(f, c)).unwrap_or(0);
        let bidi = BidiInfo::new(text, None);
        for paragraph in &bidi.paragraphs {
            let line = paragraph.range.clone();
            let (levels, runs) = bidi.visual_runs(paragraph, line);
            for run in runs {
                let rtl = levels[run.start].is_rtl();
                let mut pieces: Vec<(usize, String, bool)> = Vec::new();
                for c in text[run].chars().filter(|c| *c != '\n') {
                    // Spaces, digits and punctuation stay in the run they are in when its font has them.
                    let current = pieces.last().map(|p| p.0);
                    let keep = current.filter(|&f| has(f, c) && (!c.is_alphabetic() || face_for(c) == f));
                    let face = keep.unwrap_or_else(|| face_for(c));
                    match pieces.last_mut() {
                        Some((f, s, _)) if *f == face => s.push(c),
                        _ => pieces.push((face, c.to_string(), rtl)),
                    }
                }
                if rtl {
                    pieces.reverse();
                }
                out.extend(pieces);
            }
        }
        out
    }

    /// The width of a line, in points at `size`.
    pub fn width(&self, text: &str, size: f32, bold: bool) -> f32 {
        let faces = if bold { &self.bold } else { &self.regular };
        self.runs(text, bold)
            .iter()
            .map(|(f, s, rtl)| faces[*f].width(s, size, *rtl))
            .sum()
    }

    /// Draws a line with its left end at `x` and its baseline at `y` (points from the page's
    /// top-left corner).
    pub fn draw(&self, surface: &mut Surface<'_>, text: &str, size: f32, x: f32, y: f32, bold: bool) {
        let faces = if bold { &self.bold } else { &self.regular };
        let mut x = x;
        for (f, s, rtl) in self.runs(text, bold) {
            let direction = if rtl {
                TextDirection::RightToLeft
            } else {
                TextDirection::LeftToRight
            };
            surface.draw_text(Point::from_xy(x, y), faces[f].font.clone(), size, &s, false, direction);
            x += faces[f].width(&s, size, rtl);
        }
    }

    /// The longest prefix of `text` (whole characters) that fits in `width` points.
    pub fn fit(&self, text: &str, size: f32, width: f32, bold: bool) -> String {
        if self.width(text, size, bold) <= width {
            return text.to_owned();
        }
        let chars: Vec<char> = text.chars().collect();
        let mut keep = chars.len();
        while keep > 0 {
            keep -= 1;
            let candidate: String = chars[..keep].iter().chain(['…'].iter()).collect();
            if self.width(&candidate, size, bold) <= width {
                return candidate;
            }
        }
        String::new()
    }
}
