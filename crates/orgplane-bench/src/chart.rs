//! `chart`: PNG charts drawn from the JSON reports the other modes write, so measuring and
//! drawing stay apart (a chart can be redrawn from an old report without running anything).
//!
//! Two shapes, chosen by what the report holds:
//! - a report with `runs` (`run`, `region`, `router-overhead`): throughput and p99 latency
//!   against the client count, one line per run name;
//! - a `growth` report (it has `checkpoints`): p50 and p99 latency of each measured operation
//!   against the number of orgs in the region.
//!
//! Text is drawn with plotters' `ab_glyph` feature from a font bundled in the binary
//! (`assets/DejaVuSans.ttf`), so drawing needs no system font library and works in the static
//! release build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{bail, Context};
use clap::Args;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::Deserialize;

/// Width of every chart, in pixels.
pub const WIDTH: u32 = 1200;
/// Height of every chart, in pixels.
pub const HEIGHT: u32 = 480;

/// The font family name the bundled font is registered under.
const FONT: &str = "sans-serif";

/// DejaVu Sans (Bitstream Vera license, see `assets/DejaVuSans.LICENSE`).
const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Line colors, in the order series are drawn.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// `chart`: draw a report as a PNG.
#[derive(Debug, Args)]
pub struct ChartArgs {
    /// A JSON report written by `--json` (or `--output json`) of any mode.
    #[arg(long)]
    pub report: PathBuf,
    /// The PNG file to write.
    #[arg(long)]
    pub output: PathBuf,
}

/// The fields of a run in a JSON report that the charts use; other fields are ignored.
#[derive(Debug, Clone, Deserialize)]
struct RunView {
    name: String,
    clients: usize,
    ok_per_s: f64,
    latency: LatencyView,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct LatencyView {
    p50_ms: f64,
    p99_ms: f64,
}

/// One growth checkpoint as the chart sees it.
#[derive(Debug, Clone, Deserialize)]
struct CheckpointView {
    orgs: u64,
    runs: Vec<RunView>,
}

/// A JSON report as the chart sees it.
#[derive(Debug, Clone, Deserialize)]
struct ReportView {
    mode: String,
    #[serde(default)]
    runs: Vec<RunView>,
    #[serde(default)]
    checkpoints: Vec<CheckpointView>,
}

/// Reads `args.report` and draws it into `args.output`.
pub fn run(args: &ChartArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.report).with_context(|| format!("cannot read {}", args.report.display()))?;
    draw_report(&text, &args.output)?;
    eprintln!("chart: wrote {} ({WIDTH}x{HEIGHT})", args.output.display());
    Ok(())
}

/// Draws the JSON report `json` into the PNG file `output`.
pub fn draw_report(json: &str, output: &Path) -> anyhow::Result<()> {
    let report: ReportView = serde_json::from_str(json).context("the report is not an orgplane-bench JSON report")?;
    if !report.checkpoints.is_empty() {
        draw_growth(&report, output)
    } else if !report.runs.is_empty() {
        draw_runs(&report, output)
    } else {
        bail!("the {} report has no runs and no checkpoints to draw", report.mode)
    }
}

/// One line of a panel: a label and its points.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

/// Throughput and p99 latency against clients, one line per run name.
fn draw_runs(report: &ReportView, output: &Path) -> anyhow::Result<()> {
    let mut by_name: BTreeMap<&str, Vec<&RunView>> = BTreeMap::new();
    for run in &report.runs {
        by_name.entry(&run.name).or_default().push(run);
    }
    let series = |value: fn(&RunView) -> f64| -> Vec<Series> {
        by_name
            .iter()
            .map(|(name, runs)| {
                let mut points: Vec<(f64, f64)> = runs.iter().map(|r| (r.clients as f64, value(r))).collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series { label: name.to_string(), points }
            })
            .collect()
    };
    let throughput = series(|r| r.ok_per_s);
    let p99 = series(|r| r.latency.p99_ms);
    draw_two_panels(
        output,
        Panel {
            title: format!("{}: throughput", report.mode),
            x_label: "clients",
            y_label: "ok/s",
            series: throughput,
        },
        Panel { title: format!("{}: p99 latency", report.mode), x_label: "clients", y_label: "ms", series: p99 },
    )
}

/// p50 and p99 of each operation against the orgs in the region at each checkpoint.
fn draw_growth(report: &ReportView, output: &Path) -> anyhow::Result<()> {
    let mut p50: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    let mut p99: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for checkpoint in &report.checkpoints {
        for run in &checkpoint.runs {
            p50.entry(&run.name).or_default().push((checkpoint.orgs as f64, run.latency.p50_ms));
            p99.entry(&run.name).or_default().push((checkpoint.orgs as f64, run.latency.p99_ms));
        }
    }
    let series = |map: BTreeMap<&str, Vec<(f64, f64)>>| -> Vec<Series> {
        map.into_iter()
            .map(|(name, mut points)| {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series { label: name.to_string(), points }
            })
            .collect()
    };
    draw_two_panels(
        output,
        Panel {
            title: "growth: p50 latency".into(),
            x_label: "orgs in the region",
            y_label: "ms",
            series: series(p50),
        },
        Panel {
            title: "growth: p99 latency".into(),
            x_label: "orgs in the region",
            y_label: "ms",
            series: series(p99),
        },
    )
}

/// One half of a chart.
struct Panel {
    title: String,
    x_label: &'static str,
    y_label: &'static str,
    series: Vec<Series>,
}

/// Two panels side by side in one PNG of [`WIDTH`] x [`HEIGHT`].
fn draw_two_panels(output: &Path, left: Panel, right: Panel) -> anyhow::Result<()> {
    register_font()?;
    let root = BitMapBackend::new(output, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (left_area, right_area) = root.split_horizontally(WIDTH / 2);
    draw_panel(&left_area, &left)?;
    draw_panel(&right_area, &right)?;
    root.present().map_err(plot_error).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}

/// A panel's lines with points, a log-scale x axis (client counts and org counts both span
/// decades), a linear y axis from zero, and a legend.
fn draw_panel(area: &DrawingArea<BitMapBackend<'_>, Shift>, panel: &Panel) -> anyhow::Result<()> {
    let points = panel.series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::INFINITY, 0.0f64, 0.0f64);
    for (x, y) in points {
        x_min = x_min.min(*x);
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
    }
    if !x_min.is_finite() || x_min <= 0.0 {
        bail!("{}: nothing to draw (no point with a positive x)", panel.title);
    }
    // Some room around the points, and a range that is never empty.
    let (x_min, x_max) = (x_min / 1.5, x_max * 1.5);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label)
        .y_desc(panel.y_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        // A few labels: a log axis over decades would otherwise label every integer step.
        .x_labels(6)
        .x_label_formatter(&|x| format_count(*x))
        .y_label_formatter(&|y| if y_max >= 20.0 { format!("{y:.0}") } else { format!("{y:.1}") })
        .draw()
        .map_err(plot_error)?;
    for (index, series) in panel.series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(series.points.iter().copied(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(series.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(series.points.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// `1`, `16`, `1k`, `100k`, `1M`: axis labels for counts.
fn format_count(value: f64) -> String {
    let value = value.round();
    if value >= 1e6 && (value / 1e6).fract() == 0.0 {
        format!("{}M", value / 1e6)
    } else if value >= 1e3 && (value / 1e3).fract() == 0.0 {
        format!("{}k", value / 1e3)
    } else {
        format!("{value}")
    }
}

/// Registers the bundled font once per process.
fn register_font() -> anyhow::Result<()> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        result = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| anyhow::anyhow!("the bundled chart font is not a valid TrueType font"));
    });
    result
}

fn plot_error<E: std::error::Error + Send + Sync>(error: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart failed: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The width and height in a PNG's IHDR chunk, after checking the PNG signature.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    fn draw(json: &str) -> anyhow::Result<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        draw_report(json, &path)?;
        Ok(std::fs::read(&path).unwrap())
    }

    fn run(name: &str, clients: usize, ok_per_s: f64, p99_ms: f64) -> serde_json::Value {
        serde_json::json!({
            "name": name, "target": "t", "clients": clients, "conns": 1, "measured_s": 1.0, "ok": 1,
            "ok_per_s": ok_per_s, "errors": {},
            "latency": { "p50_ms": p99_ms / 2.0, "p90_ms": p99_ms, "p99_ms": p99_ms, "p999_ms": p99_ms,
                         "max_ms": p99_ms, "mean_ms": p99_ms }
        })
    }

    #[test]
    fn draws_a_run_report_against_clients() {
        let report = serde_json::json!({
            "mode": "run", "warmup_s": 1.0, "duration_s": 5.0,
            "runs": [run("get-org", 1, 900.0, 2.0), run("get-org", 16, 9000.0, 3.5),
                     run("get-org", 64, 15000.0, 9.0), run("get-org", 256, 16000.0, 40.0)]
        });
        let png = draw(&report.to_string()).unwrap();
        assert_eq!(png_size(&png), (WIDTH, HEIGHT));
    }

    #[test]
    fn draws_a_growth_report_against_orgs() {
        let checkpoint = |orgs: u64, scale: f64| {
            serde_json::json!({ "orgs": orgs, "members": orgs * 10,
                "runs": [run("get-org", 16, 5000.0, scale), run("list-orgs", 16, 900.0, 4.0 * scale)] })
        };
        let report = serde_json::json!({
            "mode": "growth", "checkpoints": [checkpoint(1_000, 2.0), checkpoint(100_000, 2.5)]
        });
        let png = draw(&report.to_string()).unwrap();
        assert_eq!(png_size(&png), (WIDTH, HEIGHT));
    }

    #[test]
    fn refuses_what_it_cannot_draw() {
        assert!(draw("not json").is_err());
        assert!(draw(r#"{"mode": "run", "runs": []}"#).is_err());
        // A client count of zero cannot sit on a log axis: an error, not a panic.
        let report = serde_json::json!({ "mode": "run", "runs": [run("x", 0, 1.0, 1.0)] });
        assert!(draw(&report.to_string()).is_err());
    }

    #[test]
    fn counts_are_short() {
        for (value, text) in
            [(1.0, "1"), (16.0, "16"), (1000.0, "1k"), (100_000.0, "100k"), (1e6, "1M"), (1500.0, "1500")]
        {
            assert_eq!(format_count(value), text);
        }
    }
}
