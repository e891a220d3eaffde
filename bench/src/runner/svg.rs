//! Hand-written SVG plots (no plotting dependency): grouped bar charts with min–max
//! whiskers, and line charts for time series. Panels stack vertically in one file.

use std::fmt::Write;

use super::stats::{decimals_for, Spread};

/// Width of every plot, in pixels.
const WIDTH: f64 = 820.0;
/// Height of one panel, legend and labels included.
const PANEL_HEIGHT: f64 = 300.0;
/// Room for the file's title and subtitle.
const HEADER_HEIGHT: f64 = 56.0;
/// Plot-area margins inside a panel.
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 52.0;
const BOTTOM: f64 = 40.0;

/// A named, coloured series (one target).
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// CSS colour.
    pub colour: String,
}

/// Bars: `values[group][series]`, each a median with a min–max whisker.
#[derive(Clone, Debug)]
pub struct BarPanel {
    /// Panel title.
    pub title: String,
    /// Y axis label (with the unit).
    pub y_label: String,
    /// Group labels along the x axis.
    pub groups: Vec<String>,
    /// The series, in bar order within a group.
    pub series: Vec<Series>,
    /// `values[group][series]`; `None` draws "n/a".
    pub values: Vec<Vec<Option<Spread>>>,
}

/// Lines: one polyline of `(x, y)` points per series, plus vertical markers.
#[derive(Clone, Debug)]
pub struct LinePanel {
    /// Panel title.
    pub title: String,
    /// Y axis label (with the unit).
    pub y_label: String,
    /// X axis label (with the unit).
    pub x_label: String,
    /// Series and their points.
    pub lines: Vec<(Series, Vec<(f64, f64)>)>,
    /// Dashed vertical lines with a label (e.g. the moment a node was killed).
    pub markers: Vec<(f64, String)>,
}

/// One panel of a plot.
#[derive(Clone, Debug)]
pub enum Panel {
    /// A grouped bar chart.
    Bars(BarPanel),
    /// A line chart.
    Lines(LinePanel),
}

/// Escapes text for XML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" axis top and tick step for values up to `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if !max.is_finite() || max <= 0.0 {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

/// A tick value with as few decimals as the step needs (0.05 → 2, 2.5 → 1, 20 → 0).
fn tick_label(value: f64, step: f64) -> String {
    let decimals = (0..6)
        .find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(6) as usize;
    format!("{value:.decimals$}")
}

/// The whole SVG document.
pub fn render(title: &str, subtitle: &str, panels: &[Panel]) -> String {
    let height = HEADER_HEIGHT + PANEL_HEIGHT * panels.len() as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" font-size="17" font-weight="bold" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="44" font-size="11" fill="#555" text-anchor="middle">{}</text>"##,
        WIDTH / 2.0,
        esc(subtitle)
    );
    for (i, panel) in panels.iter().enumerate() {
        let y0 = HEADER_HEIGHT + PANEL_HEIGHT * i as f64;
        match panel {
            Panel::Bars(bars) => bar_panel(&mut out, bars, y0),
            Panel::Lines(lines) => line_panel(&mut out, lines, y0),
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Title, legend, y axis with grid lines; returns the value → y mapping's scale.
fn frame(
    out: &mut String,
    title: &str,
    y_label: &str,
    series: &[&Series],
    y0: f64,
    top: f64,
    step: f64,
) {
    let plot_top = y0 + TOP;
    let plot_bottom = y0 + PANEL_HEIGHT - BOTTOM;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
        y0 + 16.0,
        esc(title)
    );
    // Legend in one row under the title.
    let mut x = LEFT;
    for s in series {
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="11" height="11" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            y0 + 26.0,
            s.colour,
            x + 15.0,
            y0 + 36.0,
            esc(&s.name)
        );
        x += 22.0 + 6.5 * s.name.chars().count() as f64 + 8.0;
    }
    let _ = writeln!(
        out,
        r#"<text transform="translate({},{}) rotate(-90)" font-size="11" text-anchor="middle">{}</text>"#,
        16.0,
        (plot_top + plot_bottom) / 2.0,
        esc(y_label)
    );
    let mut value = 0.0;
    while value <= top + step * 1e-9 {
        let y = plot_bottom - (plot_bottom - plot_top) * value / top;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 3.5,
            tick_label(value, step)
        );
        value += step;
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{plot_bottom}" x2="{}" y2="{plot_bottom}" stroke="#333"/><line x1="{LEFT}" y1="{plot_top}" x2="{LEFT}" y2="{plot_bottom}" stroke="#333"/>"##,
        WIDTH - RIGHT
    );
}

fn bar_panel(out: &mut String, panel: &BarPanel, y0: f64) {
    let max = panel
        .values
        .iter()
        .flatten()
        .flatten()
        .map(|s| s.max)
        .fold(0.0, f64::max);
    let (top, step) = nice_axis(max);
    let series: Vec<&Series> = panel.series.iter().collect();
    frame(out, &panel.title, &panel.y_label, &series, y0, top, step);
    let plot_top = y0 + TOP;
    let plot_bottom = y0 + PANEL_HEIGHT - BOTTOM;
    let y_of = |v: f64| plot_bottom - (plot_bottom - plot_top) * (v / top).clamp(0.0, 1.0);
    let groups = panel.groups.len().max(1) as f64;
    let group_width = (WIDTH - LEFT - RIGHT) / groups;
    let n = panel.series.len().max(1) as f64;
    let bar_width = (group_width * 0.84 / n).min(60.0);
    for (g, label) in panel.groups.iter().enumerate() {
        let group_x = LEFT + group_width * g as f64;
        let first_x = group_x + (group_width - bar_width * n) / 2.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            group_x + group_width / 2.0,
            plot_bottom + 17.0,
            esc(label)
        );
        for (s, series) in panel.series.iter().enumerate() {
            let x = first_x + bar_width * s as f64;
            let centre = x + bar_width / 2.0;
            match panel
                .values
                .get(g)
                .and_then(|row| row.get(s))
                .copied()
                .flatten()
            {
                Some(spread) => {
                    let y = y_of(spread.median);
                    let _ = writeln!(
                        out,
                        r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                        x + 1.0,
                        bar_width - 2.0,
                        plot_bottom - y,
                        series.colour,
                        esc(&series.name),
                        spread.show(decimals_for(spread.median))
                    );
                    let (y_min, y_max) = (y_of(spread.min), y_of(spread.max));
                    let _ = writeln!(
                        out,
                        r##"<path d="M{centre:.1} {y_min:.1} V{y_max:.1} M{:.1} {y_min:.1} H{:.1} M{:.1} {y_max:.1} H{:.1}" stroke="#111" stroke-width="1.2" fill="none"/>"##,
                        centre - 4.0,
                        centre + 4.0,
                        centre - 4.0,
                        centre + 4.0
                    );
                    let _ = writeln!(
                        out,
                        r#"<text x="{centre:.1}" y="{:.1}" font-size="9" text-anchor="middle">{:.d$}</text>"#,
                        y_max - 4.0,
                        spread.median,
                        d = decimals_for(spread.median)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        r##"<text x="{centre:.1}" y="{:.1}" font-size="9" fill="#888" text-anchor="middle">n/a</text>"##,
                        plot_bottom - 4.0
                    );
                }
            }
        }
    }
}

fn line_panel(out: &mut String, panel: &LinePanel, y0: f64) {
    let points = panel.lines.iter().flat_map(|(_, p)| p.iter());
    let (x_max, y_max) = points.fold((0.0f64, 0.0f64), |(xm, ym), (x, y)| {
        (xm.max(*x), ym.max(*y))
    });
    let (top, step) = nice_axis(y_max);
    let (right, x_step) = nice_axis(x_max);
    let series: Vec<&Series> = panel.lines.iter().map(|(s, _)| s).collect();
    frame(out, &panel.title, &panel.y_label, &series, y0, top, step);
    let plot_top = y0 + TOP;
    let plot_bottom = y0 + PANEL_HEIGHT - BOTTOM;
    let plot_width = WIDTH - LEFT - RIGHT;
    let x_of = |v: f64| LEFT + plot_width * (v / right).clamp(0.0, 1.0);
    let y_of = |v: f64| plot_bottom - (plot_bottom - plot_top) * (v / top).clamp(0.0, 1.0);
    let mut x = 0.0;
    while x <= right + x_step * 1e-9 {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
            x_of(x),
            plot_bottom + 14.0,
            tick_label(x, x_step)
        );
        x += x_step;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
        LEFT + plot_width / 2.0,
        plot_bottom + 32.0,
        esc(&panel.x_label)
    );
    for (at, label) in &panel.markers {
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{plot_top}" x2="{0:.1}" y2="{plot_bottom}" stroke="#000" stroke-dasharray="4 3"/><text x="{1:.1}" y="{2:.1}" font-size="10">{3}</text>"##,
            x_of(*at),
            x_of(*at) + 4.0,
            plot_top + 10.0,
            esc(label)
        );
    }
    for (series, points) in &panel.lines {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", x_of(*x), y_of(*y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.6"/>"#,
            path.join(" "),
            series.colour
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_nice() {
        assert_eq!(nice_axis(3.7), (4.0, 1.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        let (top, step) = nice_axis(0.23);
        assert!((top - 0.25).abs() < 1e-9 && (step - 0.05).abs() < 1e-9);
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(2.5, 2.5), "2.5");
        assert_eq!(tick_label(40.0, 20.0), "40");
    }

    #[test]
    fn renders_bars_whiskers_and_lines() {
        let series = vec![Series {
            name: "a<b".into(),
            colour: "#123456".into(),
        }];
        let bars = Panel::Bars(BarPanel {
            title: "t".into(),
            y_label: "GB/s".into(),
            groups: vec!["1 stream".into()],
            series: series.clone(),
            values: vec![vec![Spread::of(&[1.0, 2.0, 3.0])]],
        });
        let lines = Panel::Lines(LinePanel {
            title: "u".into(),
            y_label: "GB/s".into(),
            x_label: "s".into(),
            lines: vec![(series[0].clone(), vec![(0.0, 1.0), (1.0, 2.0)])],
            markers: vec![(0.5, "kill".into())],
        });
        let svg = render("title", "sub", &[bars, lines]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("stroke-dasharray"));
    }
}
