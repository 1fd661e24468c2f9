//! An RGB image in memory with the few drawing operations a heatmap needs (rectangles
//! and 8x8 bitmap text, scaled by whole pixels so it stays crisp), encoded as PNG.

use font8x8::{UnicodeFonts, BASIC_FONTS, GREEK_FONTS, LATIN_FONTS};

use crate::error::{Error, Result};

/// One pixel's colour: red, green, blue, 0 to 255 each.
pub type Rgb = [u8; 3];

/// Width and height of one glyph of the 8x8 font, before scaling.
pub const GLYPH: usize = 8;

/// An 8-bit RGB image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes: row by row from the top, pixel by pixel from the left,
    /// red, green, blue.
    pub pixels: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&background);
        }
        Self {
            width,
            height,
            pixels,
        }
    }

    /// Sets one pixel; outside the canvas it is ignored.
    pub fn put(&mut self, x: usize, y: usize, c: Rgb) {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    /// The colour at `(x, y)`.
    pub fn get(&self, x: usize, y: usize) -> Option<Rgb> {
        (x < self.width && y < self.height).then(|| {
            let i = (y * self.width + x) * 3;
            [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
        })
    }

    /// Fills the `w x h` rectangle whose top-left pixel is `(x, y)`; the part outside the
    /// canvas is cut off.
    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.put(xx, yy, c);
            }
        }
    }

    /// A one-pixel outline.
    pub fn stroke_rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        self.fill_rect(x, y, w, 1, c);
        self.fill_rect(x, y + h.saturating_sub(1), w, 1, c);
        self.fill_rect(x, y, 1, h, c);
        self.fill_rect(x + w.saturating_sub(1), y, 1, h, c);
    }

    /// Draws `text` left to right with its top-left corner at `(x, y)`.
    pub fn text(&mut self, x: usize, y: usize, text: &str, scale: usize, c: Rgb) {
        self.glyphs(text, scale, c, |gx, gy| (x + gx, y + gy));
    }

    /// Draws `text` turned a quarter left (read bottom to top), its first character at
    /// the bottom: the text occupies `GLYPH * scale` columns from `x` and ends at row
    /// `bottom`.
    pub fn text_up(&mut self, x: usize, bottom: usize, text: &str, scale: usize, c: Rgb) {
        self.glyphs(text, scale, c, |gx, gy| (x + gy, bottom.saturating_sub(gx)));
    }

    /// Each lit pixel of each glyph at `(gx, gy)` in the text's own frame is drawn at
    /// `place(gx, gy)`; characters the font lacks show as `?`.
    fn glyphs(
        &mut self,
        text: &str,
        scale: usize,
        c: Rgb,
        place: impl Fn(usize, usize) -> (usize, usize),
    ) {
        for (i, ch) in text.chars().enumerate() {
            let bitmap = glyph(ch);
            for (row, bits) in bitmap.iter().enumerate() {
                for col in 0..GLYPH {
                    if bits & (1 << col) == 0 {
                        continue;
                    }
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let gx = (i * GLYPH + col) * scale + dx;
                            let gy = row * scale + dy;
                            let (px, py) = place(gx, gy);
                            self.put(px, py, c);
                        }
                    }
                }
            }
        }
    }

    /// The PNG file of this canvas (8-bit RGB).
    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let err = |e: png::EncodingError| Error::invalid("png", e.to_string());
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().map_err(err)?;
            writer.write_image_data(&self.pixels).map_err(err)?;
            writer.finish().map_err(err)?;
        }
        Ok(out)
    }
}

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * GLYPH * scale
}

fn glyph(c: char) -> [u8; 8] {
    BASIC_FONTS
        .get(c)
        .or_else(|| LATIN_FONTS.get(c))
        .or_else(|| GREEK_FONTS.get(c))
        .or_else(|| BASIC_FONTS.get('?'))
        .unwrap_or([0; 8])
}
