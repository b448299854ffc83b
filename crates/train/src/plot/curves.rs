//! `curves.png`: loss, top-1 accuracy and learning rate against the epoch, in three panels under
//! a title.
use super::canvas::{Canvas, Rect, GRID, INK, MUTED, WHITE};
use super::font::{self, CAP_H};
use super::ticks::{epoch_ticks, nice_ticks, tick_label};
use crate::metrics::{EpochMetrics, StepMetrics};
use anyhow::Result;
use image::Rgb;

/// Width of `curves.png` in pixels.
pub const W: u32 = 1560;
/// Height of `curves.png` in pixels.
pub const H: u32 = 560;
/// Top of the panels (the title sits above).
const PANELS_TOP: i64 = 70;
/// The training figures (per epoch).
pub const TRAIN: Rgb<u8> = Rgb([31, 119, 180]);
/// The per-step training loss: light, so the noisy line stays behind the epoch means.
pub const TRAIN_STEPS: Rgb<u8> = Rgb([170, 199, 228]);
/// The test figures.
pub const TEST: Rgb<u8> = Rgb([214, 39, 40]);
/// The learning rate.
pub const LR: Rgb<u8> = Rgb([44, 160, 44]);

/// One line of a panel. Points with a non-finite coordinate are gaps: not drawn, not joined.
struct Series {
    /// The legend's words; an empty name keeps the line out of the legend.
    name: String,
    color: Rgb<u8>,
    width: f64,
    /// A dot on every point: for per-epoch lines, whose points are few and meaningful.
    markers: bool,
    points: Vec<(f64, f64)>,
}

impl Series {
    fn finite(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    }
}

struct Panel {
    title: &'static str,
    series: Vec<Series>,
}

/// Where data coordinates land in the picture: `x` and `y` are the data ranges of `plot`.
struct Axes {
    plot: Rect,
    x: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    fn px(&self, x: f64) -> f64 {
        self.plot.x as f64 + (x - self.x.0) / (self.x.1 - self.x.0) * self.plot.w as f64
    }

    fn py(&self, y: f64) -> f64 {
        self.plot.bottom() as f64 - (y - self.y.0) / (self.y.1 - self.y.0) * self.plot.h as f64
    }

    fn at(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (self.px(x), self.py(y))
    }
}

/// The PNG bytes of the curves of `rows` (per epoch) and `steps` (per `--log-every` steps),
/// under `title`. Epoch `e` is drawn at x = e; steps at their fractional epoch.
pub fn curves_png_titled(
    rows: &[EpochMetrics],
    steps: &[StepMetrics],
    title: &str,
) -> Result<Vec<u8>> {
    let panels = panels(rows, steps);
    // All panels share one epoch axis, long enough for every point.
    let x_max = panels
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(Series::finite)
        .fold(0.0, |m: f64, (x, _)| m.max(x));
    let x_ticks = epoch_ticks(x_max);
    let mut c = Canvas::new(W, H);
    c.title(18, title);
    let panel_w = i64::from(W) / 3;
    for (i, panel) in panels.iter().enumerate() {
        let area = Rect {
            x: i as i64 * panel_w,
            y: PANELS_TOP,
            w: panel_w,
            h: i64::from(H) - PANELS_TOP,
        };
        draw_panel(&mut c, area, panel, &x_ticks);
    }
    c.png()
}

/// Line colours of [`study_png`], one per model (matplotlib's "tab10").
const PALETTE: [Rgb<u8>; 10] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([127, 127, 127]),
    Rgb([188, 189, 34]),
    Rgb([23, 190, 207]),
];

/// `report.png` of `senet reproduce`: the test top-1 of every run against the epoch, in one
/// panel under `title`. `runs` are (model, points); a model's runs (its seeds) share a colour
/// and the legend names each model once.
pub fn study_png(title: &str, runs: &[(String, Vec<(f64, f64)>)]) -> Result<Vec<u8>> {
    let mut models: Vec<&str> = Vec::new();
    let series: Vec<Series> = runs
        .iter()
        .map(|(model, points)| {
            let first = !models.contains(&model.as_str());
            if first {
                models.push(model);
            }
            let i = models.iter().position(|m| m == model).unwrap_or(0);
            Series {
                name: if first { model.clone() } else { String::new() },
                color: PALETTE[i % PALETTE.len()],
                width: 2.0,
                markers: true,
                points: points.clone(),
            }
        })
        .collect();
    let x_max = series
        .iter()
        .flat_map(Series::finite)
        .fold(0.0, |m: f64, (x, _)| m.max(x));
    let (w, h) = (1000u32, 640u32);
    let mut c = Canvas::new(w, h);
    c.title(18, title);
    let panel = Panel {
        title: "test top-1 (%) of every run",
        series,
    };
    let area = Rect {
        x: 0,
        y: PANELS_TOP,
        w: i64::from(w),
        h: i64::from(h) - PANELS_TOP,
    };
    draw_panel(&mut c, area, &panel, &epoch_ticks(x_max));
    c.png()
}

/// What the three panels show. Without any epoch row yet, the loss and top-1 panels show the
/// per-step training figures instead, so a young run still has a picture.
fn panels(rows: &[EpochMetrics], steps: &[StepMetrics]) -> [Panel; 3] {
    let per_epoch = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    let per_step = |f: fn(&StepMetrics) -> f64| -> Vec<(f64, f64)> {
        steps.iter().map(|s| (s.epoch, f(s))).collect()
    };
    let epoch_line = |name: &str, color, points| Series {
        name: name.to_string(),
        color,
        width: 2.5,
        markers: true,
        points,
    };
    let step_line = |name: &str, color, width, points| Series {
        name: name.to_string(),
        color,
        width,
        markers: false,
        points,
    };
    let (loss, top1) = if rows.is_empty() {
        (
            vec![step_line(
                "train (per step)",
                TRAIN,
                2.0,
                per_step(|s| s.train_loss),
            )],
            vec![step_line(
                "train (per step)",
                TRAIN,
                2.0,
                per_step(|s| s.train_top1),
            )],
        )
    } else {
        (
            vec![
                step_line(
                    "train (per step)",
                    TRAIN_STEPS,
                    1.2,
                    per_step(|s| s.train_loss),
                ),
                epoch_line("train", TRAIN, per_epoch(|r| r.train_loss)),
                epoch_line("test", TEST, per_epoch(|r| r.test_loss)),
            ],
            vec![
                epoch_line("train", TRAIN, per_epoch(|r| r.train_top1)),
                epoch_line("test", TEST, per_epoch(|r| r.test_top1)),
            ],
        )
    };
    let lr = if steps.is_empty() {
        epoch_line("lr (per epoch)", LR, per_epoch(|r| r.lr))
    } else {
        step_line("lr (per step)", LR, 2.0, per_step(|s| s.lr))
    };
    [
        Panel {
            title: "loss",
            series: loss,
        },
        Panel {
            title: "top-1 accuracy (%)",
            series: top1,
        },
        Panel {
            title: "learning rate",
            series: vec![lr],
        },
    ]
}

/// One panel in `area`: its title, axes with round ticks, the lines and a legend.
fn draw_panel(c: &mut Canvas, area: Rect, panel: &Panel, x_ticks: &[f64]) {
    let values: Vec<f64> = panel
        .series
        .iter()
        .flat_map(Series::finite)
        .map(|(_, y)| y)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let y_ticks = if values.is_empty() {
        nice_ticks(0.0, 1.0, 6)
    } else {
        nice_ticks(lo, hi, 6)
    };
    let step = y_ticks[1] - y_ticks[0];
    let labels: Vec<String> = y_ticks.iter().map(|&v| tick_label(v, step)).collect();
    // The plot starts right of the widest y label, so labels of any length fit.
    let label_w = labels
        .iter()
        .map(|l| font::text_width(l, 2))
        .max()
        .unwrap_or(0);
    let left = area.x + 24 + i64::from(label_w);
    let plot = Rect {
        x: left,
        y: area.y + 34,
        w: area.right() - 28 - left,
        h: area.h - 34 - 70,
    };
    let axes = Axes {
        plot,
        x: (x_ticks[0], x_ticks[x_ticks.len() - 1]),
        y: (y_ticks[0], y_ticks[y_ticks.len() - 1]),
    };
    c.text_centered(plot.center_x(), area.y, panel.title, 2, INK);
    draw_axes(c, &axes, x_ticks, &y_ticks, &labels);
    for s in &panel.series {
        draw_series(c, &axes, s);
    }
    if values.is_empty() {
        let y = plot.y + plot.h / 2 - 7;
        c.text_centered(plot.center_x(), y, "no data yet", 2, MUTED);
    }
    draw_legend(c, &axes, &panel.series);
}

/// Grid lines, tick marks and labels on both axes, the axis lines and the x axis name.
fn draw_axes(c: &mut Canvas, axes: &Axes, x_ticks: &[f64], y_ticks: &[f64], y_labels: &[String]) {
    let p = axes.plot;
    // Labels are centred on their tick by the height of digits (CAP_H rows at scale 2).
    let half_cap = i64::from(CAP_H);
    for (&t, label) in y_ticks.iter().zip(y_labels) {
        let y = axes.py(t).round() as i64;
        c.fill(
            Rect {
                x: p.x,
                y,
                w: p.w,
                h: 1,
            },
            GRID,
        );
        c.fill(
            Rect {
                x: p.x - 6,
                y,
                w: 6,
                h: 1,
            },
            INK,
        );
        c.text_right(p.x - 10, y - half_cap, label, 2, INK);
    }
    let step = x_ticks[1] - x_ticks[0];
    for &t in x_ticks {
        let x = axes.px(t).round() as i64;
        c.fill(
            Rect {
                x,
                y: p.y,
                w: 1,
                h: p.h,
            },
            GRID,
        );
        c.fill(
            Rect {
                x,
                y: p.bottom(),
                w: 1,
                h: 6,
            },
            INK,
        );
        c.text_centered(x, p.bottom() + 12, &tick_label(t, step), 2, INK);
    }
    c.fill(
        Rect {
            x: p.x,
            y: p.bottom(),
            w: p.w + 1,
            h: 1,
        },
        INK,
    );
    c.fill(
        Rect {
            x: p.x,
            y: p.y,
            w: 1,
            h: p.h + 1,
        },
        INK,
    );
    c.text_centered(p.center_x(), p.bottom() + 40, "epoch", 2, MUTED);
}

/// A polyline through the finite points (broken where a value is missing), plus markers.
fn draw_series(c: &mut Canvas, axes: &Axes, s: &Series) {
    let mut prev: Option<(f64, f64)> = None;
    for &(x, y) in &s.points {
        if !(x.is_finite() && y.is_finite()) {
            prev = None;
            continue;
        }
        let here = axes.at((x, y));
        if let Some(before) = prev {
            c.line(before, here, s.width, s.color);
        }
        prev = Some(here);
    }
    // A lone point has no segment to show it: give it a dot.
    if s.markers || s.finite().nth(1).is_none() {
        for point in s.finite() {
            c.dot(axes.at(point), s.width + 1.5, s.color);
        }
    }
}

/// Points along every line of `series`, in pixels: what a legend should not cover.
fn samples(axes: &Axes, series: &[Series]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for s in series {
        let points: Vec<(f64, f64)> = s.finite().map(|p| axes.at(p)).collect();
        out.extend(points.iter().copied());
        for w in points.windows(2) {
            out.extend((1..8).map(|k| {
                let t = f64::from(k) / 8.0;
                (
                    w[0].0 + (w[1].0 - w[0].0) * t,
                    w[0].1 + (w[1].1 - w[0].1) * t,
                )
            }));
        }
    }
    out
}

/// The names of the lines with data, in a box in whichever corner of the plot covers the
/// fewest of their points.
fn draw_legend(c: &mut Canvas, axes: &Axes, series: &[Series]) {
    let shown: Vec<&Series> = series
        .iter()
        .filter(|s| !s.name.is_empty() && s.finite().next().is_some())
        .collect();
    let Some(text_w) = shown.iter().map(|s| font::text_width(&s.name, 2)).max() else {
        return;
    };
    let (w, h) = (i64::from(text_w) + 60, shown.len() as i64 * 24 + 12);
    let p = axes.plot;
    let (left, right, top, bottom) = (p.x + 12, p.right() - w - 10, p.y + 10, p.bottom() - h - 10);
    let samples = samples(axes, series);
    let covered = |&(x, y): &(i64, i64)| {
        let around = Rect {
            x: x - 6,
            y: y - 6,
            w: w + 12,
            h: h + 12,
        };
        samples
            .iter()
            .filter(|&&(sx, sy)| around.contains(sx, sy))
            .count()
    };
    let corners = [(right, top), (left, top), (right, bottom), (left, bottom)];
    let (x, y) = corners
        .into_iter()
        .min_by_key(covered)
        .unwrap_or((right, top));
    let r = Rect { x, y, w, h };
    c.fill(r, WHITE);
    c.frame(r, GRID);
    for (i, s) in shown.iter().enumerate() {
        let cy = (y + 18 + i as i64 * 24) as f64;
        let x = x as f64;
        c.line((x + 10.0, cy), (x + 40.0, cy), s.width.max(1.5), s.color);
        if s.markers {
            c.dot((x + 25.0, cy), s.width + 1.5, s.color);
        }
        c.text(x as i64 + 50, cy as i64 - 7, &s.name, 2, INK);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::plot::curves_png;
    use image::RgbImage;

    /// 15-epoch-like rows: falling losses, rising accuracies, a cosine learning rate.
    pub(crate) fn sample_rows(epochs: usize) -> Vec<EpochMetrics> {
        (1..=epochs)
            .map(|e| {
                let t = e as f64;
                EpochMetrics {
                    epoch: e,
                    steps: 391 * e as u64,
                    train_loss: 0.25 + 1.6 * (-0.22 * t).exp(),
                    train_top1: 95.0 - 62.0 * (-0.25 * t).exp(),
                    test_loss: 0.42 + 1.3 * (-0.25 * t).exp() + 0.03 * (t * 1.7).sin(),
                    test_top1: 89.0 - 55.0 * (-0.28 * t).exp() + 0.8 * (t * 2.3).sin(),
                    test_top5: 99.0 - 20.0 * (-0.3 * t).exp(),
                    lr: 0.05 * (1.0 + (std::f64::consts::PI * t / epochs as f64).cos()),
                    images_per_s: 850.0,
                    seconds: 60.0,
                }
            })
            .collect()
    }

    /// A row every 50 of 391 steps per epoch, noisy like real mini-batch figures.
    pub(crate) fn sample_steps(epochs: usize) -> Vec<StepMetrics> {
        let total = 391 * epochs as u64;
        (1..=total / 50)
            .map(|k| {
                let step = k * 50;
                let e = step as f64 / 391.0;
                let noise = ((step as f64) * 12.9898).sin() * 43_758.545;
                let noise = noise - noise.floor() - 0.5;
                StepMetrics {
                    step,
                    epoch: e,
                    train_loss: 0.25 + 1.9 * (-0.22 * e).exp() + 0.25 * noise,
                    train_top1: 95.0 - 70.0 * (-0.25 * e).exp() + 8.0 * noise,
                    lr: 0.05 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos()),
                    time: 1.7e9 + step as f64 * 0.15,
                }
            })
            .collect()
    }

    fn decode(bytes: &[u8]) -> RgbImage {
        image::load_from_memory(bytes).unwrap().to_rgb8()
    }

    /// Whether `colour` appears in panel `panel` (0 = loss, 1 = top-1, 2 = learning rate).
    fn in_panel(img: &RgbImage, panel: u32, colour: Rgb<u8>) -> bool {
        let w = img.width() / 3;
        img.enumerate_pixels()
            .any(|(x, _, p)| x / w == panel && *p == colour)
    }

    #[test]
    fn three_panels_show_their_lines() {
        let png = curves_png_titled(&sample_rows(15), &sample_steps(15), "senetv2 test").unwrap();
        let img = decode(&png);
        assert_eq!(img.dimensions(), (W, H));
        assert!(in_panel(&img, 0, TRAIN_STEPS), "per-step loss");
        assert!(
            in_panel(&img, 0, TRAIN) && in_panel(&img, 0, TEST),
            "epoch losses"
        );
        assert!(
            in_panel(&img, 1, TRAIN) && in_panel(&img, 1, TEST),
            "top-1 lines"
        );
        // More than the legend's sample of the colour: the line itself is there.
        let w = img.width() / 3;
        let test_pixels = img
            .enumerate_pixels()
            .filter(|(x, _, p)| x / w == 1 && **p == TEST);
        assert!(test_pixels.count() > 600, "the test top-1 line is missing");
        assert!(
            !in_panel(&img, 1, TRAIN_STEPS),
            "no per-step top-1 next to epoch rows"
        );
        assert!(
            in_panel(&img, 2, LR) && !in_panel(&img, 0, LR),
            "learning rate"
        );
    }

    #[test]
    fn the_study_picture_colours_each_model_once() {
        let line = |top: f64| {
            (1..=5)
                .map(|e| (e as f64, top + e as f64))
                .collect::<Vec<_>>()
        };
        let runs = vec![
            ("resnet".to_string(), line(60.0)),
            ("resnet".to_string(), line(61.0)),
            ("senetv2".to_string(), line(70.0)),
        ];
        let img = decode(&study_png("study", &runs).unwrap());
        assert_eq!(img.dimensions(), (1000, 640));
        let count = |c: Rgb<u8>| img.pixels().filter(|p| **p == c).count();
        // Both models' lines (more than a legend sample each); no third colour.
        assert!(count(PALETTE[0]) > 300, "resnet: {}", count(PALETTE[0]));
        assert!(count(PALETTE[1]) > 150, "senetv2: {}", count(PALETTE[1]));
        assert_eq!(count(PALETTE[2]), 0);
        // One legend entry per model: the seeds' series after the first have no name.
        let empty: &[(String, Vec<(f64, f64)>)] = &[];
        assert!(study_png("nothing yet", empty).is_ok());
    }

    #[test]
    fn epochs_are_plotted_from_one_and_steps_at_their_fraction() {
        let [loss, top1, lr] = panels(&sample_rows(4), &sample_steps(4));
        assert_eq!(loss.series[1].points[0].0, 1.0);
        assert_eq!(top1.series[1].points[3].0, 4.0);
        assert!((lr.series[0].points[0].0 - 50.0 / 391.0).abs() < 1e-12);
        assert_eq!(lr.series[0].name, "lr (per step)");
        let [_, _, lr] = panels(&sample_rows(4), &[]);
        assert_eq!(lr.series[0].points.len(), 4);
    }

    #[test]
    fn without_epoch_rows_the_steps_are_shown() {
        let img = decode(&curves_png_titled(&[], &sample_steps(1), "young run").unwrap());
        assert!(in_panel(&img, 0, TRAIN) && in_panel(&img, 1, TRAIN));
        assert!(in_panel(&img, 2, LR));
        assert!(
            !img.pixels().any(|p| *p == TEST),
            "no test line without epochs"
        );
        // And with nothing at all, still a picture.
        let img = decode(&curves_png_titled(&[], &[], "nothing yet").unwrap());
        assert_eq!(img.dimensions(), (W, H));
    }

    #[test]
    fn non_finite_values_are_not_drawn() {
        let mut rows = sample_rows(5);
        for r in &mut rows {
            r.test_loss = f64::NAN;
            r.test_top1 = f64::INFINITY;
        }
        rows[2].train_loss = f64::NEG_INFINITY;
        let img = decode(&curves_png(&rows).unwrap());
        assert!(
            !img.pixels().any(|p| *p == TEST),
            "a test line from NaN and inf"
        );
        assert!(in_panel(&img, 0, TRAIN));
    }

    #[test]
    fn the_legacy_entry_points_still_work() {
        let img = decode(&curves_png(&sample_rows(3)).unwrap());
        assert_eq!(img.dimensions(), (W, H));
        assert!(in_panel(&img, 1, TEST) && in_panel(&img, 2, LR));
    }
}
