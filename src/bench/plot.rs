//! `--plot FILE.svg`: a grouped bar chart of median tokens/s, one panel per test, one group of bars per
//! model, prism's backends and their llama.cpp peers side by side. Drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use super::{BenchError, BenchRow};

/// Colours of the series, in order of first appearance (prism and peer of a backend alternate).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One bar: which panel, group and series it belongs to, and its height.
#[derive(Clone, Debug, PartialEq)]
struct Bar {
    panel: String,
    group: String,
    series: String,
    value: f64,
}

/// The bars of `rows`: prism's median per row, and the peer's median beside it where there is one.
fn bars(rows: &[BenchRow]) -> Vec<Bar> {
    let mut out = Vec::new();
    for r in rows {
        let panel =
            if r.n_batch > 1 { format!("{} × {} sequences", r.test, r.n_batch) } else { r.test.clone() };
        let mut push = |series: String, value: Option<f64>| {
            if let Some(value) = value.filter(|v| v.is_finite() && *v > 0.0) {
                out.push(Bar { panel: panel.clone(), group: r.model.clone(), series, value });
            }
        };
        push(format!("prism {}", r.backend), r.median_ts);
        let peer = r.peer_backends.as_deref().unwrap_or("");
        push(format!("llama.cpp {peer} (beside prism {})", r.backend), r.peer_median_ts);
    }
    out
}

fn unique<'a>(items: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut seen: Vec<&String> = Vec::new();
    for i in items {
        if !seen.contains(&i) {
            seen.push(i);
        }
    }
    seen
}

fn short(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.into()
    } else {
        name.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// Writes the chart of `rows` to `path` (an SVG file); `title` goes on top.
pub fn write_svg(rows: &[BenchRow], title: &str, path: &Path) -> Result<(), BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Plot { path: path.into(), detail: e.to_string() };
    let bars = bars(rows);
    if bars.is_empty() {
        return Err(err(&"no row has a measured median to plot"));
    }
    let panels = unique(bars.iter().map(|b| &b.panel));
    let series = unique(bars.iter().map(|b| &b.series));
    let groups = unique(bars.iter().map(|b| &b.group));
    let (width, panel_h, head_h) = (
        260 + 150 * groups.len() as u32 * series.len().max(2) as u32 / 2,
        340,
        40 + 22 * series.len() as u32,
    );
    let root =
        SVGBackend::new(path, (width.max(640), head_h + panel_h * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, body) = root.split_vertically(head_h);
    head.draw_text(title, &("sans-serif", 18).into_font().color(&BLACK), (10, 8)).map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let (x, y) = (14, 36 + 22 * i as i32);
        let color = PALETTE[i % PALETTE.len()];
        head.draw(&Rectangle::new([(x, y), (x + 14, y + 14)], color.filled())).map_err(|e| err(&e))?;
        head.draw_text(s, &("sans-serif", 14).into_font().color(&BLACK), (x + 22, y)).map_err(|e| err(&e))?;
    }
    let n_series = series.len() as f64;
    for (area, panel) in body.split_evenly((panels.len(), 1)).iter().zip(&panels) {
        let in_panel: Vec<&Bar> = bars.iter().filter(|b| &&b.panel == panel).collect();
        let top = in_panel.iter().map(|b| b.value).fold(0.0, f64::max) * 1.18;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{panel}: tokens/s (median)"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..groups.len() as f64 - 0.5, 0f64..top)
            .map_err(|e| err(&e))?;
        let label = |x: &f64| {
            let i = x.round();
            let near = (x - i).abs() < 1e-6 && i >= 0.0;
            groups.get(i as usize).filter(|_| near).map_or_else(String::new, |g| short(g, 36))
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len())
            .x_label_formatter(&label)
            .y_desc("tokens/s")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| err(&e))?;
        let width = 0.8 / n_series;
        for b in &in_panel {
            let g = groups.iter().position(|g| *g == &b.group).unwrap_or(0) as f64;
            let s = series.iter().position(|s| *s == &b.series).unwrap_or(0);
            let x0 = g - 0.4 + width * s as f64;
            let color = PALETTE[s % PALETTE.len()];
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.92, b.value)],
                    color.filled(),
                )))
                .map_err(|e| err(&e))?;
            let text = if b.value >= 100.0 { format!("{:.0}", b.value) } else { format!("{:.1}", b.value) };
            let style =
                ("sans-serif", 12).into_font().color(&BLACK).pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Bottom,
                ));
            chart
                .draw_series(std::iter::once(Text::new(text, (x0 + width * 0.46, b.value), style)))
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, backend: &str, test: &str, median: f64, peer: Option<f64>) -> BenchRow {
        BenchRow {
            model: model.into(),
            backend: backend.into(),
            test: test.into(),
            n_batch: 1,
            median_ts: Some(median),
            peer_median_ts: peer,
            peer_backends: peer.map(|_| "CPU".into()),
            ..BenchRow::default()
        }
    }

    #[test]
    fn peers_sit_beside_their_backend_and_failed_rows_have_no_bar() {
        let rows = [
            row("a.gguf", "cpu", "pp128", 100.0, Some(50.0)),
            row("a.gguf", "cpu", "tg64", 10.0, None),
            BenchRow { error: Some("x".into()), ..row("b.gguf", "cpu", "tg64", f64::NAN, None) },
        ];
        let b = bars(&rows);
        assert_eq!(b.len(), 3);
        assert_eq!(b[1].series, "llama.cpp CPU (beside prism cpu)");
        assert_eq!((b[1].panel.as_str(), b[1].value), ("pp128", 50.0));
    }

    #[test]
    fn writes_an_svg_with_every_model_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        let rows = [
            row("model-one.gguf", "cpu", "pp128", 1177.0, Some(528.0)),
            row("two", "wgpu", "pp128", 12.5, None),
        ];
        write_svg(&rows, "test chart", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        for text in ["model-one.gguf", "two", "1177", "528", "12.5", "prism wgpu", "test chart"] {
            assert!(svg.contains(text), "{text} missing");
        }
        let e = write_svg(&[], "empty", &path).unwrap_err().to_string();
        assert!(e.contains("no row has a measured median"), "{e}");
    }
}
