//! Attention weights as a PNG heatmap: one panel per head (or one for the head average),
//! queries down the rows, keys along the columns, token labels on both axes, a colour
//! bar with ticks. Used by `attn heatmap`, `attn notebook --heatmap` and `attn explain`.
//!
//! Pure Rust: the `png` crate encodes, the `font8x8` bitmap font (scaled by whole
//! pixels) writes the labels, and the colours are viridis ([`colormap`]). The values are
//! drawn as they are; the colour scale is fixed (0 to 1 by default, the range of a
//! softmax), so panels and files compare by eye.

pub mod canvas;
pub mod colormap;

use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::io::atomic::{write_file, Overwrite};
use canvas::{text_width, Canvas, Rgb, GLYPH};
use colormap::viridis;

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [20, 20, 20];
const GREY_TEXT: Rgb = [90, 90, 90];
const NAN: Rgb = [190, 190, 190];
const MARGIN: usize = 20;
/// The width, in pixels, a figure may grow to for its title and subtitle...
const MIN_TEXT_W: usize = 640;
/// ... and for a title at the large size.
const MAX_TITLE_W: usize = 1100;
/// Labels longer than this many characters are cut (with a trailing `~`).
const MAX_LABEL_CHARS: usize = 14;
/// The heatmap of a panel aims at this many pixels on its longer side.
const PANEL_TARGET: usize = 360;
/// The most cells per side drawn one pixel or more each; beyond it the figure would
/// be unreadable anyway.
const MAX_CELLS: usize = 4096;

/// A figure of attention weights, built with [`Heatmap::new`] and the `with_*` setters.
#[derive(Debug, Clone)]
pub struct Heatmap {
    title: String,
    subtitle: Option<String>,
    /// Each panel's title and its `rows x cols` values, row-major.
    panels: Vec<(String, Vec<f32>)>,
    rows: usize,
    cols: usize,
    row_labels: Vec<String>,
    col_labels: Vec<String>,
    range: (f64, f64),
    columns: Option<usize>,
}

impl Heatmap {
    /// `weights` `(L, S)` (one panel) or `(P, L, S)` (P panels, titled "head 0", ...),
    /// any floating dtype. Rows are labelled `0..L` and columns `0..S` until
    /// [`Heatmap::with_labels`] names them.
    pub fn new(weights: &Tensor) -> Result<Self> {
        let size = weights.size();
        let (p, l, s) = match *size.as_slice() {
            [l, s] => (1, l, s),
            [p, l, s] => (p, l, s),
            _ => return Err(Error::shape("weights", "(L, S) or (P, L, S)", &size)),
        };
        if !weights.is_floating_point() {
            return Err(Error::Dtype {
                arg: "weights".into(),
                expected: "a floating dtype".into(),
                got: weights.kind(),
            });
        }
        if p < 1 || l < 1 || s < 1 || l as usize > MAX_CELLS || s as usize > MAX_CELLS || p > 256 {
            return Err(Error::shape(
                "weights",
                format!("1 to 256 panels of 1 to {MAX_CELLS} rows and columns"),
                &size,
            ));
        }
        let flat = weights
            .f_to_kind(Kind::Float)?
            .f_to_device(tch::Device::Cpu)?
            .f_contiguous()?
            .f_view([p, l * s])?;
        let mut panels = Vec::new();
        for i in 0..p {
            let values = Vec::<f32>::try_from(flat.f_get(i)?)?;
            let title = if p == 1 {
                String::new()
            } else {
                format!("head {i}")
            };
            panels.push((title, values));
        }
        let (rows, cols) = (l as usize, s as usize);
        Ok(Self {
            title: String::new(),
            subtitle: None,
            panels,
            rows,
            cols,
            row_labels: (0..rows).map(|i| i.to_string()).collect(),
            col_labels: (0..cols).map(|i| i.to_string()).collect(),
            range: (0.0, 1.0),
            columns: None,
        })
    }

    /// The figure's title, on top.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Lines under the title, in smaller type (`\n` separates them).
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_subtitle(mut self, subtitle: impl Into<String>) -> Self {
        self.subtitle = Some(subtitle.into());
        self
    }

    /// One title per panel.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_panel_titles(mut self, titles: Vec<String>) -> Result<Self> {
        if titles.len() != self.panels.len() {
            return Err(Error::invalid(
                "panel titles",
                format!("expected {}, got {}", self.panels.len(), titles.len()),
            ));
        }
        for (panel, t) in self.panels.iter_mut().zip(titles) {
            panel.0 = t;
        }
        Ok(self)
    }

    /// Query (row) and key (column) labels, e.g. the tokens.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_labels(mut self, rows: Vec<String>, cols: Vec<String>) -> Result<Self> {
        if rows.len() != self.rows || cols.len() != self.cols {
            return Err(Error::invalid(
                "labels",
                format!(
                    "expected {} row and {} column labels, got {} and {}",
                    self.rows,
                    self.cols,
                    rows.len(),
                    cols.len()
                ),
            ));
        }
        self.row_labels = rows;
        self.col_labels = cols;
        Ok(self)
    }

    /// The values that map to the two ends of the colour scale (default 0 and 1).
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_range(mut self, min: f64, max: f64) -> Result<Self> {
        if !(min.is_finite() && max.is_finite() && min < max) {
            return Err(Error::invalid(
                "range",
                format!("needs finite min < max, got {min} and {max}"),
            ));
        }
        self.range = (min, max);
        Ok(self)
    }

    /// Panels per row of the grid (default: about the square root of the count).
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_columns(mut self, columns: usize) -> Result<Self> {
        if columns == 0 {
            return Err(Error::invalid("columns", "must be at least 1"));
        }
        self.columns = Some(columns);
        Ok(self)
    }

    /// Draws the figure.
    pub fn render(&self) -> Canvas {
        let at = FigureLayout::new(self);
        let mut c = Canvas::new(at.width, at.height, WHITE);
        c.text(MARGIN, MARGIN, &at.title, at.title_scale, INK);
        for (i, line) in at.sub_lines.iter().enumerate() {
            let y = MARGIN + at.title_h + i * (GLYPH + 4);
            c.text(MARGIN, y, line, 1, GREY_TEXT);
        }
        for (i, (title, values)) in self.panels.iter().enumerate() {
            self.paint_panel(&mut c, &at, at.panel_origin(i), title, values);
        }
        paint_colour_bar(&mut c, &at);
        c
    }

    /// One panel with its top-left corner at `(bx, by)`: title, cells, frame, labels.
    fn paint_panel(
        &self,
        c: &mut Canvas,
        at: &FigureLayout,
        (bx, by): (usize, usize),
        title: &str,
        values: &[f32],
    ) {
        let (mx, my) = (bx + at.row_label_w, by + at.panel_title_h);
        if !title.is_empty() {
            let tx = mx + at.map_w.saturating_sub(text_width(title, 2)) / 2;
            c.text(tx, by, title, 2, INK);
        }
        let (lo, hi) = self.range;
        for r in 0..self.rows {
            for k in 0..self.cols {
                let v = values[r * self.cols + k] as f64;
                let colour = if v.is_nan() {
                    NAN
                } else {
                    viridis((v - lo) / (hi - lo))
                };
                let cell = at.cell;
                c.fill_rect(mx + k * cell, my + r * cell, cell, cell, colour);
            }
        }
        c.stroke_rect(mx - 1, my - 1, at.map_w + 2, at.map_h + 2, INK);
        // Query labels right-aligned at each row's middle; key labels upward
        // under each column, ending just below the map.
        let (scale, px, cell) = (at.label_scale, at.label_px, at.cell);
        for (r, label) in at.row_labels.iter().enumerate().step_by(at.step) {
            let x = mx - 4 - text_width(label, scale);
            let y = (my + r * cell + cell / 2).saturating_sub(px / 2);
            c.text(x, y, label, scale, INK);
        }
        for (k, label) in at.col_labels.iter().enumerate().step_by(at.step) {
            let x = (mx + k * cell + cell / 2).saturating_sub(px / 2);
            let bottom = my + at.map_h + 4 + text_width(label, scale);
            c.text_up(x, bottom, label, scale, INK);
        }
    }

    /// The colour bar's five tick labels, low to high. Values beyond the scale take its
    /// end colours; the end ticks then say so (`+`, `-`).
    fn ticks(&self) -> Vec<String> {
        let values = || self.panels.iter().flat_map(|(_, v)| v);
        let beyond_hi = values().any(|&v| v as f64 > self.range.1);
        let beyond_lo = values().any(|&v| (v as f64) < self.range.0);
        (0..=4)
            .map(|i| {
                let v = self.range.0 + (self.range.1 - self.range.0) * i as f64 / 4.0;
                let mark = match i {
                    4 if beyond_hi => "+",
                    0 if beyond_lo => "-",
                    _ => "",
                };
                format!("{v:.2}{mark}")
            })
            .collect()
    }

    /// The figure as PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        self.render().encode_png()
    }

    /// Writes the PNG to `path` atomically ([`crate::io::atomic`]); an existing file is
    /// replaced or, with [`Overwrite::Refuse`], left alone ([`Error::Exists`]).
    pub fn write_png(&self, path: &Path, overwrite: Overwrite) -> Result<()> {
        write_file(path, &self.to_png()?, overwrite)
    }
}

/// Colour bar width, and the gap between panels and before the bar, in pixels.
const BAR_W: usize = 18;
const GAP: usize = 24;

/// Colour bar, high values on top, aligned with the first map; tick values beside it,
/// centred on their height (no tick marks: beside a number they read as minus signs).
fn paint_colour_bar(c: &mut Canvas, at: &FigureLayout) {
    let (cx, cy) = (MARGIN + at.grid_w + GAP, at.top + at.panel_title_h);
    let bar_h = at.bar_h;
    for y in 0..bar_h {
        let t = 1.0 - y as f64 / (bar_h - 1) as f64;
        c.fill_rect(cx, cy + y, BAR_W, 1, viridis(t));
    }
    c.stroke_rect(cx - 1, cy - 1, BAR_W + 2, bar_h + 2, INK);
    for (i, text) in at.ticks.iter().enumerate() {
        let y = cy + (bar_h - 1) - (bar_h - 1) * i / 4;
        c.text(cx + BAR_W + 8, y.saturating_sub(GLYPH), text, 2, INK);
    }
}

/// Where everything of a figure goes, in pixels, worked out before anything is painted.
#[derive(Debug)]
struct FigureLayout {
    /// Panels per row of the grid.
    grid_cols: usize,
    /// Pixels per side of a cell.
    cell: usize,
    label_scale: usize,
    /// Height of a label's glyphs.
    label_px: usize,
    /// Every `step`-th label is drawn (all of them when the cells are large enough).
    step: usize,
    row_labels: Vec<String>,
    col_labels: Vec<String>,
    row_label_w: usize,
    panel_title_h: usize,
    map_w: usize,
    map_h: usize,
    /// One panel with its labels and title.
    block_w: usize,
    block_h: usize,
    grid_w: usize,
    bar_h: usize,
    ticks: Vec<String>,
    title: String,
    title_scale: usize,
    title_h: usize,
    sub_lines: Vec<String>,
    /// Where the grid starts, below the title and subtitle.
    top: usize,
    width: usize,
    height: usize,
}

impl FigureLayout {
    fn new(map: &Heatmap) -> Self {
        let (rows, cols, n) = (map.rows, map.cols, map.panels.len());
        let grid_cols = map
            .columns
            .unwrap_or_else(|| (n as f64).sqrt().ceil() as usize)
            .min(n);
        let grid_rows = n.div_ceil(grid_cols);
        // Cells as large as fits the target, and never under one pixel.
        let cell = (PANEL_TARGET / rows.max(cols)).clamp(1, 40);
        // Labels in two sizes; below 9 px per cell only every step-th label fits.
        let label_scale = if cell >= 16 { 2 } else { 1 };
        let label_px = GLYPH * label_scale;
        let row_labels: Vec<String> = map.row_labels.iter().map(|s| cut_label(s)).collect();
        let col_labels: Vec<String> = map.col_labels.iter().map(|s| cut_label(s)).collect();
        let has_panel_titles = map.panels.iter().any(|(t, _)| !t.is_empty());
        let panel_title_h = if has_panel_titles { 2 * GLYPH + 8 } else { 0 };
        let (map_w, map_h) = (cols * cell, rows * cell);
        let row_label_w = widest(&row_labels, label_scale) + 6;
        let block_w = row_label_w + map_w;
        let block_h = panel_title_h + map_h + widest(&col_labels, label_scale) + 6;
        // The colour bar: as tall as one map (at least 120 px), with 5 ticks.
        let bar_h = map_h.max(120);
        let ticks = map.ticks();
        let grid_w = grid_cols * block_w + (grid_cols - 1) * GAP;
        let grid_h = grid_rows * block_h + (grid_rows - 1) * GAP;
        let content_w = MARGIN + grid_w + GAP + BAR_W + 8 + widest(&ticks, 2) + MARGIN;
        let mut at = Self {
            grid_cols,
            cell,
            label_scale,
            label_px,
            step: (label_px + 1).div_ceil(cell).max(1),
            row_labels,
            col_labels,
            row_label_w,
            panel_title_h,
            map_w,
            map_h,
            block_w,
            block_h,
            grid_w,
            bar_h,
            ticks,
            title: String::new(),
            title_scale: 2,
            title_h: 0,
            sub_lines: Vec::new(),
            top: 0,
            width: content_w,
            height: 0,
        };
        at.place_text(map, content_w);
        at.height = at.top + grid_h.max(panel_title_h + bar_h) + MARGIN;
        at
    }

    /// The title and subtitle above the grid, and the width they make. The maps set the
    /// width, widened up to MIN_TEXT_W for the text above them, or up to MAX_TITLE_W for
    /// a title at the large size. A title too long for that is set at the small size;
    /// whatever is still too long (a long sentence) is cut.
    fn place_text(&mut self, map: &Heatmap, content_w: usize) {
        let text_room = content_w.max(MIN_TEXT_W) - 2 * MARGIN;
        let title_room = content_w.max(MAX_TITLE_W) - 2 * MARGIN;
        (self.title_scale, self.title) = if text_width(&map.title, 2) <= title_room {
            (2, map.title.clone())
        } else {
            (1, fit(&map.title, 1, text_room))
        };
        self.title_h = if self.title.is_empty() {
            0
        } else {
            self.title_scale * GLYPH + 10
        };
        self.sub_lines = map.subtitle.as_deref().map_or(Vec::new(), |s| {
            s.lines().map(|l| fit(l, 1, text_room)).collect()
        });
        let subtitle_h = if self.sub_lines.is_empty() {
            0
        } else {
            self.sub_lines.len() * (GLYPH + 4) + 6
        };
        let head_h = self.title_h + subtitle_h;
        self.top = MARGIN + head_h + if head_h > 0 { 6 } else { 0 };
        self.width = content_w
            .max(MARGIN * 2 + text_width(&self.title, self.title_scale))
            .max(MARGIN * 2 + widest(&self.sub_lines, 1));
    }

    /// The top-left corner of panel `i`'s block (its title, or its map when untitled).
    fn panel_origin(&self, i: usize) -> (usize, usize) {
        let bx = MARGIN + (i % self.grid_cols) * (self.block_w + GAP);
        let by = self.top + (i / self.grid_cols) * (self.block_h + GAP);
        (bx, by)
    }
}

/// `s` cut to MAX_LABEL_CHARS characters, the last one a `~`.
fn cut_label(s: &str) -> String {
    if s.chars().count() > MAX_LABEL_CHARS {
        s.chars().take(MAX_LABEL_CHARS - 1).chain(['~']).collect()
    } else {
        s.to_string()
    }
}

/// `s` cut (with `...`) to fit `room` pixels at `scale`.
fn fit(s: &str, scale: usize, room: usize) -> String {
    let max = room / (GLYPH * scale);
    if s.chars().count() > max {
        s.chars()
            .take(max.saturating_sub(3))
            .chain("...".chars())
            .collect()
    } else {
        s.to_string()
    }
}

/// The width of the widest of `texts` at `scale`.
fn widest(texts: &[String], scale: usize) -> usize {
    texts
        .iter()
        .map(|s| text_width(s, scale))
        .max()
        .unwrap_or(0)
}

/// The panels `(P, L, S)` of an attention-weights tensor as PyTorch lays them out:
/// `(L, S)`; `(N, L, S)` (batched, heads averaged) or, when `unbatched`, `(H, L, S)`;
/// `(N, H, L, S)`. `batch` picks the sequence of a batched tensor.
pub fn select_panels(weights: &Tensor, batch: i64, unbatched: bool) -> Result<Tensor> {
    let size = weights.size();
    let pick = |t: &Tensor| -> Result<Tensor> {
        let n = size[0];
        if !(0..n).contains(&batch) {
            return Err(Error::invalid(
                "batch",
                format!("must be in 0..{n} for weights of shape {size:?}, got {batch}"),
            ));
        }
        Ok(t.f_get(batch)?)
    };
    Ok(match (size.len(), unbatched) {
        (2, _) => weights.f_unsqueeze(0)?,
        (3, true) => weights.shallow_clone(),
        (3, false) => pick(weights)?.f_unsqueeze(0)?,
        (4, false) => pick(weights)?,
        _ => {
            let expected = if unbatched {
                "(L, S) or (H, L, S) (unbatched)"
            } else {
                "(L, S), (N, L, S) or (N, H, L, S)"
            };
            return Err(Error::shape("weights", expected, &size));
        }
    })
}
