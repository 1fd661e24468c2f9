//! The heatmap draws what it is given: cell colours follow the colour scale, NaN is
//! grey, labels and shapes are checked, and the PNG decodes to the rendered pixels.

use tch::{Device, Kind, Tensor};
use tch_attention::heatmap::canvas::Canvas;
use tch_attention::heatmap::colormap::viridis;
use tch_attention::heatmap::{select_panels, Heatmap};

/// Finds the first pixel of `colour` scanning rows from the top.
fn find(c: &Canvas, colour: [u8; 3]) -> Option<(usize, usize)> {
    (0..c.height)
        .flat_map(|y| (0..c.width).map(move |x| (x, y)))
        .find(|&(x, y)| c.get(x, y) == Some(colour))
}

/// The colour at the centre of cell `(row, col)`, for a figure of one panel whose
/// top-left cell has the colour `top_left` (found as the first pixel of that colour; the
/// colour bar, which holds every colour too, lies right of the map).
fn cell_colours(canvas: &Canvas, top_left: [u8; 3]) -> impl Fn(usize, usize) -> [u8; 3] + '_ {
    let (x0, y0) = find(canvas, top_left).expect("a pixel of the top-left cell's colour");
    let right_edge = (x0..canvas.width)
        .find(|&x| canvas.get(x, y0 + 2) != Some(top_left))
        .unwrap();
    let cell = right_edge - x0;
    assert!(cell >= 8, "cells of {cell} px");
    move |r, k| {
        canvas
            .get(x0 + k * cell + cell / 2, y0 + r * cell + cell / 2)
            .unwrap()
    }
}

/// Row 0: [1, 0, nan]; row 1: [0.5, 0.25, 0]. Values chosen to hit distinct colours.
fn two_by_three() -> Tensor {
    Tensor::from_slice(&[1.0f32, 0.0, f32::NAN, 0.5, 0.25, 0.0]).view([2, 3])
}

#[test]
fn cells_take_the_colour_of_their_value() {
    let canvas = Heatmap::new(&two_by_three()).unwrap().render();
    let at = cell_colours(&canvas, viridis(1.0));
    assert_eq!(at(0, 0), viridis(1.0));
    assert_eq!(at(0, 1), viridis(0.0));
    assert_eq!(at(0, 2), [190, 190, 190], "NaN is grey");
    assert_eq!(at(1, 0), viridis(0.5));
    assert_eq!(at(1, 1), viridis(0.25));
    assert_eq!(at(1, 2), viridis(0.0));
}

#[test]
fn a_range_moves_the_colours_and_saturates_beyond_its_ends() {
    // 0 to 0.5 (what `--vmax 0.5` sets): 0.25 is mid-scale, 0.5 and 1.0 both take the
    // top colour. Under the default range these cells are viridis(0.25) and viridis(0.5).
    let canvas = Heatmap::new(&two_by_three())
        .unwrap()
        .with_range(0.0, 0.5)
        .unwrap()
        .render();
    let at = cell_colours(&canvas, viridis(1.0));
    assert_eq!(at(0, 0), viridis(1.0), "1.0 beyond vmax saturates");
    assert_eq!(at(1, 0), viridis(1.0), "0.5 is vmax");
    assert_eq!(at(1, 1), viridis(0.5), "0.25 is half of vmax");
    assert_eq!(at(0, 1), viridis(0.0));
    // A minimum above zero: 0 and 0.25 fall below it and take the bottom colour.
    let canvas = Heatmap::new(&two_by_three())
        .unwrap()
        .with_range(0.5, 1.0)
        .unwrap()
        .render();
    let at = cell_colours(&canvas, viridis(1.0));
    assert_eq!(at(1, 0), viridis(0.0), "0.5 is vmin");
    assert_eq!(at(1, 1), viridis(0.0), "0.25 below vmin saturates");
    assert_eq!(at(0, 1), viridis(0.0));
}

#[test]
fn png_round_trips_and_panels_grow_the_figure() {
    let w = Tensor::rand([12, 5, 5], (Kind::Float, Device::Cpu));
    let map = Heatmap::new(&w).unwrap();
    let canvas = map.render();
    let png = map.to_png().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width as usize, info.height as usize),
        (canvas.width, canvas.height)
    );
    assert_eq!(&buf[..info.buffer_size()], &canvas.pixels[..]);
    let one = Heatmap::new(&w.get(0)).unwrap().render();
    assert!(canvas.width > 2 * one.width && canvas.height > 2 * one.height);
}

#[test]
fn bad_input_is_an_error() {
    let w = Tensor::rand([2, 3], (Kind::Float, Device::Cpu));
    assert!(Heatmap::new(&Tensor::rand([2], (Kind::Float, Device::Cpu))).is_err());
    assert!(Heatmap::new(&Tensor::ones([2, 2], (Kind::Int64, Device::Cpu))).is_err());
    let labels = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
    assert!(Heatmap::new(&w)
        .unwrap()
        .with_labels(labels(2), labels(3))
        .is_ok());
    assert!(Heatmap::new(&w)
        .unwrap()
        .with_labels(labels(3), labels(3))
        .is_err());
    assert!(Heatmap::new(&w).unwrap().with_range(1.0, 1.0).is_err());
    assert!(Heatmap::new(&w).unwrap().with_panel_titles(vec![]).is_err());
}

#[test]
fn panels_follow_pytorchs_layouts() {
    let w4 = Tensor::rand([2, 3, 4, 5], (Kind::Float, Device::Cpu)); // (N, H, L, S)
    let p = select_panels(&w4, 1, false).unwrap();
    assert_eq!(p.size(), [3, 4, 5]);
    assert!(p.equal(&w4.get(1)));
    let w3 = w4.get(0); // (N, L, S) or unbatched (H, L, S)
    assert_eq!(select_panels(&w3, 2, false).unwrap().size(), [1, 4, 5]);
    assert_eq!(select_panels(&w3, 0, true).unwrap().size(), [3, 4, 5]);
    assert!(select_panels(&w3, 3, false).is_err());
    assert!(select_panels(&w4, 0, true).is_err());
}

#[test]
fn a_long_title_does_not_stretch_the_figure() {
    let w = Tensor::rand([4, 4], (Kind::Float, Device::Cpu));
    let plain = Heatmap::new(&w).unwrap().render();
    let long = "word ".repeat(400);
    let titled = Heatmap::new(&w)
        .unwrap()
        .with_title(long.clone())
        .with_subtitle(long)
        .render();
    // Cut to at most 64 title characters at 16 px (plus margins), not 2000 characters.
    assert!(
        titled.width <= plain.width.max(64 * 16 + 40),
        "{}",
        titled.width
    );
}
