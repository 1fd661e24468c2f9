//! The loss curve `attn train` draws beside its checkpoint: every step's training loss
//! (a thin line), and the evaluations' train and val losses (lines with dots), against
//! the iteration, on the heatmaps' canvas (`crate::heatmap::canvas`).

use crate::error::{Error, Result};
use crate::heatmap::canvas::{text_width, Canvas, Rgb};

const WIDTH: usize = 800;
const HEIGHT: usize = 480;
const LEFT: usize = 70;
const RIGHT: usize = 20;
const TOP: usize = 50;
const BOTTOM: usize = 50;
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [225, 225, 225];
const STEP: Rgb = [170, 190, 225];
const TRAIN: Rgb = [31, 119, 180];
const VAL: Rgb = [255, 127, 14];

/// The points of one training run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossCurve {
    /// `(iteration, loss)` of every training step.
    pub steps: Vec<(i64, f32)>,
    /// `(iteration, train_loss, val_loss)` of every evaluation.
    pub evals: Vec<(i64, f32, f32)>,
}

impl LossCurve {
    /// The curve as a PNG of 800x480 pixels, `title` on top.
    pub fn to_png(&self, title: &str) -> Result<Vec<u8>> {
        let values = self
            .steps
            .iter()
            .map(|s| s.1)
            .chain(self.evals.iter().flat_map(|e| [e.1, e.2]))
            .filter(|v| v.is_finite());
        let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            return Err(Error::invalid("curve", "has no finite loss to draw"));
        }
        let last = self
            .steps
            .iter()
            .map(|s| s.0)
            .chain(self.evals.iter().map(|e| e.0))
            .max()
            .unwrap_or(0);
        let (lo, hi) = (lo as f64, (hi as f64).max(lo as f64 + 1e-3));
        let plot = Plot {
            x_max: last.max(1) as f64,
            lo,
            hi,
        };
        let mut c = Canvas::new(WIDTH, HEIGHT, WHITE);
        plot.axes(&mut c, title);
        let steps: Vec<(f64, f64)> = self
            .steps
            .iter()
            .map(|s| (s.0 as f64, s.1 as f64))
            .collect();
        plot.line(&mut c, &steps, STEP, false);
        let train: Vec<(f64, f64)> = self
            .evals
            .iter()
            .map(|e| (e.0 as f64, e.1 as f64))
            .collect();
        let val: Vec<(f64, f64)> = self
            .evals
            .iter()
            .map(|e| (e.0 as f64, e.2 as f64))
            .collect();
        plot.line(&mut c, &train, TRAIN, true);
        plot.line(&mut c, &val, VAL, true);
        legend(&mut c);
        c.encode_png()
    }
}

/// The mapping from (iteration, loss) to pixels.
struct Plot {
    x_max: f64,
    lo: f64,
    hi: f64,
}

impl Plot {
    fn px(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let w = (WIDTH - LEFT - RIGHT) as f64;
        let h = (HEIGHT - TOP - BOTTOM) as f64;
        (
            LEFT as f64 + x / self.x_max * w,
            TOP as f64 + (self.hi - y) / (self.hi - self.lo) * h,
        )
    }

    /// Frame, five horizontal grid lines with their loss, the first and last iteration.
    fn axes(&self, c: &mut Canvas, title: &str) {
        let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        for i in 0..=4 {
            let v = self.lo + (self.hi - self.lo) * i as f64 / 4.0;
            let (_, y) = self.px((0.0, v));
            c.fill_rect(LEFT, y.round() as usize, w, 1, GRID);
            let label = format!("{v:.2}");
            c.text(
                LEFT - 8 - text_width(&label, 1),
                y as usize - 4,
                &label,
                1,
                BLACK,
            );
        }
        c.stroke_rect(LEFT, TOP, w, h + 1, BLACK);
        c.text(LEFT, TOP + h + 8, "0", 1, BLACK);
        let end = format!("{}", self.x_max as i64);
        c.text(LEFT + w - text_width(&end, 1), TOP + h + 8, &end, 1, BLACK);
        let axis = "iteration";
        c.text(
            LEFT + (w - text_width(axis, 1)) / 2,
            TOP + h + 24,
            axis,
            1,
            BLACK,
        );
        c.text(LEFT, 16, title, 2, BLACK);
    }

    /// Straight segments between consecutive points; `dots` marks each point.
    fn line(&self, c: &mut Canvas, points: &[(f64, f64)], colour: Rgb, dots: bool) {
        let points: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&p| self.px(p))
            .collect();
        for pair in points.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            let n = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
            for i in 0..=n {
                let t = i as f64 / n as f64;
                let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
                c.put(x.round() as usize, y.round() as usize, colour);
            }
        }
        if dots {
            for &(x, y) in &points {
                c.fill_rect(
                    (x - 2.0).max(0.0) as usize,
                    (y - 2.0).max(0.0) as usize,
                    5,
                    5,
                    colour,
                );
            }
        }
    }
}

fn legend(c: &mut Canvas) {
    let mut x = WIDTH - RIGHT - 330;
    for (label, colour) in [
        ("step loss", STEP),
        ("train (eval)", TRAIN),
        ("val (eval)", VAL),
    ] {
        c.fill_rect(x, TOP - 16, 12, 8, colour);
        c.text(x + 16, TOP - 16, label, 1, BLACK);
        x += 16 + text_width(label, 1) + 16;
    }
}
