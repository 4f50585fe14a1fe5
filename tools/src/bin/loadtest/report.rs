//! Turns measurements into the report: a markdown table per run (medians of the repeats, with
//! the edgewarden / peer ratio measured in the same run) and an SVG bar chart (plotters) of
//! requests/s and p99 per scenario, edgewarden beside its peers (HAProxy, `wasmtime serve`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use crate::oha::Measured;
use crate::run::Sample;
use crate::scenarios::Scenario;

/// One target's medians in one scenario.
#[derive(Debug, Clone)]
pub struct Cell {
    pub target: &'static str,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub cpu_us: f64,
    pub peak_rss_mib: f64,
    pub accepted: u64,
    pub origin_hits: u64,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub what: String,
    pub cells: Vec<Cell>,
    /// The scenario without this one's policies (see `Scenario::baseline`).
    pub baseline: Option<&'static str>,
    /// Attack mix only: valid requests' success and p99 against the no-attack p99.
    pub attack: Option<Attack>,
}

#[derive(Debug, Clone)]
pub struct Attack {
    pub valid_ok: u64,
    pub valid_sent: u64,
    pub p99_alone_ms: f64,
    pub p99_attacked_ms: f64,
    pub bad_rps: f64,
}

pub struct Versions {
    pub haproxy: Option<String>,
    pub wasmtime: Option<String>,
    pub oha: String,
}

/// Each scenario's runs on each target, in the order they were first measured, and every wrong
/// answer seen.
pub struct Samples<S> {
    pub runs: Vec<(&'static str, &'static str, Vec<S>)>,
    pub failures: Vec<String>,
}

/// What one run measured, as its progress line shows it.
pub struct Figures {
    pub rps: f64,
    pub p99_ms: f64,
    pub cpu_us: f64,
}

impl<S> Samples<S> {
    pub fn new() -> Self {
        Samples {
            runs: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Keep one run's sample and its wrong answers, and show its figures on standard error.
    pub fn record(
        &mut self,
        (scenario, target, repeat): (&'static str, &'static str, usize),
        figures: Figures,
        sample: S,
        problems: Vec<String>,
    ) {
        eprintln!(
            "{scenario:<22} {target:<14} run {}: {:>9.0} req/s  p99 {:>7.3} ms  {:>7.1} µs CPU/req",
            repeat + 1,
            figures.rps,
            figures.p99_ms,
            figures.cpu_us
        );
        self.failures.extend(
            problems
                .into_iter()
                .map(|p| format!("{scenario} on {target}: {p}")),
        );
        match self
            .runs
            .iter_mut()
            .find(|(s, t, _)| *s == scenario && *t == target)
        {
            Some((_, _, list)) => list.push(sample),
            None => self.runs.push((scenario, target, vec![sample])),
        }
    }

    pub fn find(&self, scenario: &str, target: &str) -> Option<&[S]> {
        self.runs
            .iter()
            .find(|(s, t, _)| *s == scenario && *t == target)
            .map(|(_, _, list)| list.as_slice())
    }

    /// Print the report (and write it to `path`); fail with every wrong answer seen.
    pub fn finish(&self, text: &str, path: Option<&Path>) -> Result<(), String> {
        println!("{text}");
        if let Some(path) = path {
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(format!("wrong answers:\n  {}", self.failures.join("\n  ")))
        }
    }
}

/// The median of the finite values (NaN when there are none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

pub fn row(scenario: &Scenario, runs: &[(&'static str, Vec<Sample>)]) -> Row {
    let cells = runs
        .iter()
        .map(|(target, samples)| {
            let of = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
            Cell {
                target,
                rps: of(&|s| s.measured[0].rps),
                p50_ms: of(&|s| s.measured[0].p50_ms),
                p99_ms: of(&|s| s.measured[0].p99_ms),
                p999_ms: of(&|s| s.measured[0].p999_ms),
                cpu_us: of(&|s| s.cpu_us_per_request()),
                peak_rss_mib: samples.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0) as f64
                    / 1024.0,
                accepted: samples.iter().map(|s| s.measured[0].count(200)).sum(),
                origin_hits: samples.iter().map(|s| s.origin_hits).sum(),
            }
        })
        .collect();
    Row {
        scenario: scenario.name.to_string(),
        what: scenario.what.to_string(),
        cells,
        baseline: scenario.baseline,
        attack: None,
    }
}

/// The attack mix over its repeats, each a run of the valid stream alone and one under attack:
/// medians, with the valid requests' answers summed over all runs.
pub fn attack_row(target: &'static str, runs: &[(Sample, Sample)]) -> Row {
    let of = |f: &dyn Fn(&Sample, &Sample) -> f64| {
        median(
            runs.iter()
                .map(|(alone, attacked)| f(alone, attacked))
                .collect(),
        )
    };
    let sum = |f: &dyn Fn(&Sample) -> u64| runs.iter().map(|(_, attacked)| f(attacked)).sum();
    let valid_ok: u64 = sum(&|a| a.measured[0].count(200));
    Row {
        scenario: "attack_mix".to_string(),
        what: "90 % bad tokens + 10 % valid at a fixed offered rate".to_string(),
        cells: vec![Cell {
            target,
            rps: of(&|_, a| a.measured.iter().map(|m| m.rps).sum()),
            p50_ms: of(&|_, a| a.measured[0].p50_ms),
            p99_ms: of(&|_, a| a.measured[0].p99_ms),
            p999_ms: of(&|_, a| a.measured[0].p999_ms),
            cpu_us: of(&|_, a| a.cpu_us_per_request()),
            peak_rss_mib: runs.iter().map(|(_, a)| a.peak_rss_kib).max().unwrap_or(0) as f64
                / 1024.0,
            accepted: valid_ok,
            origin_hits: sum(&|a| a.origin_hits),
        }],
        baseline: None,
        attack: Some(Attack {
            valid_ok,
            valid_sent: sum(&|a| a.measured[0].requests),
            p99_alone_ms: of(&|alone, _| alone.measured[0].p99_ms),
            p99_attacked_ms: of(&|_, a| a.measured[0].p99_ms),
            bad_rps: of(&|_, a| a.measured.iter().skip(1).map(|m| m.rps).sum()),
        }),
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} × {model}")
}

/// How the scenarios were driven.
pub struct Load {
    pub duration: Duration,
    pub repeats: usize,
    pub connections: usize,
    /// Offered requests/s of every scenario but the attack mix; `None`: as fast as answered.
    pub rate: Option<u32>,
    pub attack_rate: u32,
}

pub fn markdown(rows: &[Row], versions: &Versions, load: &Load) -> String {
    let mut out = String::new();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Machine: {}. {}. edgewarden {} (1 worker thread){}{}; load generator: {}. Gateways pinned to \
         CPU 0, generator and origin to CPU 1 (when there are two). {} s per run, {} connections, \
         {}, median of {} runs; attack mix offered at {} req/s.\n",
        machine(),
        date.trim(),
        env!("CARGO_PKG_VERSION"),
        versions
            .haproxy
            .as_ref()
            .map(|v| format!(", peer: {v} (nbthread 1)"))
            .unwrap_or_default(),
        versions
            .wasmtime
            .as_ref()
            .map(|v| format!(", peer: `{v} serve` (one CPU)"))
            .unwrap_or_default(),
        versions.oha,
        load.duration.as_secs_f64(),
        load.connections,
        load.rate.map_or_else(
            || "as many requests as each target answers".to_string(),
            |r| format!("{r} requests/s offered to every target")
        ),
        load.repeats,
        load.attack_rate,
    );
    let _ = writeln!(
        out,
        "| scenario | target | req/s | edgewarden ÷ target (req/s) | p50 ms | p99 ms | p99.9 ms | CPU µs/req | peak RSS MiB | accepted | origin hits |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let ours = row
            .cells
            .iter()
            .find(|c| c.target == EDGEWARDEN_NAME)
            .map(|c| c.rps);
        for cell in &row.cells {
            let ratio = match ours {
                Some(ours) if cell.target != EDGEWARDEN_NAME && cell.rps > 0.0 => {
                    format!("{:.2}", ours / cell.rps)
                }
                _ => String::from("—"),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {:.3} | {:.3} | {:.3} | {:.1} | {:.0} | {} | {} |",
                row.scenario,
                cell.target,
                cell.rps,
                ratio,
                cell.p50_ms,
                cell.p99_ms,
                cell.p999_ms,
                cell.cpu_us,
                cell.peak_rss_mib,
                cell.accepted,
                cell.origin_hits
            );
        }
    }
    let attacks: Vec<&Row> = rows.iter().filter(|r| r.attack.is_some()).collect();
    if !attacks.is_empty() {
        let _ = writeln!(
            out,
            "\n| attack mix (medians of the runs) | valid answered 200 | valid p99 alone | valid p99 under attack | ratio | bad req/s absorbed |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for row in attacks {
            if let (Some(a), Some(cell)) = (&row.attack, row.cells.first()) {
                let _ = writeln!(
                    out,
                    "| {} | {}/{} ({:.2} %) | {:.3} ms | {:.3} ms | {:.2} | {:.0} |",
                    cell.target,
                    a.valid_ok,
                    a.valid_sent,
                    100.0 * a.valid_ok as f64 / a.valid_sent.max(1) as f64,
                    a.p99_alone_ms,
                    a.p99_attacked_ms,
                    a.p99_attacked_ms / a.p99_alone_ms,
                    a.bad_rps
                );
            }
        }
    }
    added(&mut out, rows);
    let _ = writeln!(out, "\nScenarios:");
    let mut seen = Vec::new();
    for row in rows {
        if !seen.contains(&row.scenario) {
            let _ = writeln!(out, "- `{}`: {}", row.scenario, row.what);
            seen.push(row.scenario.clone());
        }
    }
    out
}

/// What each scenario's policies add to edgewarden's CPU per request over its baseline scenario,
/// both measured in this run.
fn added(out: &mut String, rows: &[Row]) {
    let ours = |name: &str| {
        rows.iter()
            .find(|r| r.scenario == name && r.attack.is_none())?
            .cells
            .iter()
            .find(|c| c.target == EDGEWARDEN_NAME)
            .map(|c| c.cpu_us)
    };
    let lines: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let base_name = row.baseline?;
            let (cpu, base) = (ours(&row.scenario)?, ours(base_name)?);
            Some(format!(
                "| {} | {:.1} | {base_name} | {:.1} | {:+.1} |",
                row.scenario,
                cpu,
                base,
                cpu - base
            ))
        })
        .collect();
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n| scenario (edgewarden) | CPU µs/req | the same without its policies or tracing | CPU µs/req | added |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}

pub fn target_summary(url: &str, m: &Measured) -> String {
    format!(
        "{url}\n  {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms\n  statuses {:?}, errors {}",
        m.rps, m.p50_ms, m.p99_ms, m.p999_ms, m.statuses, m.errors
    )
}

type Metric = fn(&Cell) -> f64;

const EDGEWARDEN_NAME: &str = "edgewarden";

/// Each target's colour and legend name, edgewarden first.
const TARGETS: [(&str, &str, RGBColor); 4] = [
    (EDGEWARDEN_NAME, "edgewarden", RGBColor(0x2b, 0x7b, 0xb9)),
    ("haproxy", "HAProxy", RGBColor(0xd9, 0x82, 0x2b)),
    (
        "wasmtime-serve-reuse",
        "wasmtime serve, reuse",
        RGBColor(0x3a, 0x9a, 0x4a),
    ),
    (
        "wasmtime-serve-fresh",
        "wasmtime serve, fresh",
        RGBColor(0x8c, 0x8c, 0x8c),
    ),
];

fn colour(target: &str) -> RGBColor {
    TARGETS
        .iter()
        .find(|(name, _, _)| *name == target)
        .map_or(BLACK, |(_, _, c)| *c)
}

/// Two panels of grouped bars, one group per scenario, edgewarden beside its peers (plotters, SVG
/// backend): requests/s on a linear axis, and p99 on a logarithmic one, since a fresh-instance
/// peer's p99 is hundreds of times a rejection's.
pub fn chart(rows: &[Row], path: &Path) -> Result<(), String> {
    let groups: Vec<(&str, Vec<&Cell>)> = rows
        .iter()
        .filter(|r| r.attack.is_none())
        .map(|r| (r.scenario.as_str(), r.cells.iter().collect()))
        .collect();
    let fail = |e: &dyn std::fmt::Display| format!("{}: chart: {e}", path.display());
    let root = SVGBackend::new(path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (body, legend) = root.split_vertically(720);
    let panels: [(&str, Metric, bool); 2] = [
        ("requests/s (higher is better)", |c: &Cell| c.rps, false),
        (
            "p99 latency, ms, log scale (lower is better)",
            |c: &Cell| c.p99_ms,
            true,
        ),
    ];
    for ((title, metric, log), area) in panels.iter().zip(body.split_evenly((2, 1)).iter()) {
        let values = || {
            groups
                .iter()
                .flat_map(|(_, cells)| cells.iter().map(|c| metric(c)))
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        let max = values().fold(f64::MIN_POSITIVE, f64::max);
        // On the log panel bars are drawn in decades (log10) from the decade below the smallest.
        let (low, high, plot): (f64, f64, fn(f64) -> f64) = if *log {
            let min = values().fold(f64::INFINITY, f64::min);
            let low = if min.is_finite() {
                min.log10().floor()
            } else {
                -1.0
            };
            (low, max.log10().ceil().max(low + 1.0), f64::log10)
        } else {
            (0.0, max * 1.08, |v| v)
        };
        let count = groups.len().max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(*title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..count as f64 - 0.5, low..high)
            .map_err(|e| fail(&e))?;
        let names: Vec<&str> = groups.iter().map(|(name, _)| *name).collect();
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names
                    .get(i as usize)
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        let y_label = |v: &f64| {
            if *log {
                let ms = 10f64.powf(*v);
                if ms >= 1.0 {
                    format!("{ms:.0}")
                } else {
                    format!("{ms}")
                }
            } else if max >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        };
        let decades = (high - low).round() as usize + 1;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(count)
            .x_label_formatter(&label)
            .y_labels(if *log { decades } else { 5 })
            .y_label_formatter(&y_label)
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| fail(&e))?;
        let bars = groups.iter().enumerate().flat_map(|(g, (_, cells))| {
            let width = 0.8 / cells.len().max(1) as f64;
            cells.iter().enumerate().filter_map(move |(i, cell)| {
                let v = metric(cell);
                let x = g as f64 - 0.4 + i as f64 * width;
                (v.is_finite() && v > 0.0).then(|| {
                    Rectangle::new(
                        [(x, low), (x + width * 0.92, plot(v))],
                        colour(cell.target).filled(),
                    )
                })
            })
        });
        chart.draw_series(bars).map_err(|e| fail(&e))?;
    }
    let present = TARGETS.iter().filter(|(name, _, _)| {
        groups
            .iter()
            .any(|(_, cells)| cells.iter().any(|c| c.target == *name))
    });
    for (i, (_, shown, colour)) in present.enumerate() {
        let x = 80 + i as i32 * 200;
        legend
            .draw(&Rectangle::new([(x, 10), (x + 12, 22)], colour.filled()))
            .map_err(|e| fail(&e))?;
        legend
            .draw(&Text::new(*shown, (x + 18, 10), ("sans-serif", 13)))
            .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(target: &'static str, rps: f64, p99_ms: f64) -> Cell {
        Cell {
            target,
            rps,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            p999_ms: p99_ms * 1.5,
            cpu_us: 10.0,
            peak_rss_mib: 20.0,
            accepted: 0,
            origin_hits: 0,
        }
    }

    fn row(scenario: &str, cells: Vec<Cell>) -> Row {
        Row {
            scenario: scenario.to_string(),
            what: String::new(),
            cells,
            baseline: None,
            attack: None,
        }
    }

    #[test]
    fn the_report_shows_what_policies_add_over_their_baseline_in_the_same_run() {
        let with_cpu = |target, cpu_us| Cell {
            cpu_us,
            ..cell(target, 1000.0, 1.0)
        };
        let mut one = row(
            "geo_warm",
            vec![with_cpu("edgewarden", 41.5), with_cpu("haproxy", 5.0)],
        );
        one.baseline = Some("valid_cached");
        let mut orphan = row("plugins_fresh", vec![with_cpu("edgewarden", 90.0)]);
        orphan.baseline = Some("not_measured");
        let rows = vec![
            row(
                "valid_cached",
                vec![with_cpu("haproxy", 30.0), with_cpu("edgewarden", 23.0)],
            ),
            one,
            orphan,
        ];
        let load = Load {
            duration: Duration::from_secs(5),
            repeats: 3,
            connections: 64,
            rate: Some(8000),
            attack_rate: 4000,
        };
        let versions = Versions {
            haproxy: None,
            wasmtime: None,
            oha: "oha".into(),
        };
        let text = markdown(&rows, &versions, &load);
        assert!(
            text.contains("| geo_warm | 41.5 | valid_cached | 23.0 | +18.5 |"),
            "{text}"
        );
        assert!(!text.contains("| plugins_fresh | 90.0"), "{text}");
        assert!(
            text.contains("8000 requests/s offered to every target"),
            "{text}"
        );
    }

    #[test]
    fn the_chart_has_a_bar_per_target_and_scenario_in_each_panel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chart.svg");
        let rows = vec![
            row(
                "no_token",
                vec![
                    cell("edgewarden", 30000.0, 2.0),
                    cell("haproxy", 40000.0, 1.5),
                ],
            ),
            row("plugins_warm", vec![cell("edgewarden", 2000.0, 40.0)]),
            row(
                "seed_geo_fresh",
                vec![
                    cell("edgewarden", 900.0, 80.0),
                    cell("wasmtime-serve-fresh", 450.0, 250.0),
                ],
            ),
            row(
                "auth_off",
                vec![
                    cell("edgewarden", 20000.0, 3.0),
                    cell("haproxy", 25000.0, f64::NAN),
                ],
            ),
        ];
        chart(&rows, &path).expect("chart");
        let svg = std::fs::read_to_string(&path).expect("svg");
        for name in [
            "no_token",
            "plugins_warm",
            "auth_off",
            "seed_geo_fresh",
            "edgewarden",
            "HAProxy",
            "wasmtime serve, fresh",
        ] {
            assert!(svg.contains(name), "{name} missing");
        }
        let fill = |t: &str| {
            let c = colour(t);
            format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2)
        };
        // Two panels; one bar per finite value, plus one legend swatch per target present.
        assert_eq!(svg.matches(&fill("edgewarden")).count(), 2 * 4 + 1);
        assert_eq!(svg.matches(&fill("haproxy")).count(), 2 + 1 + 1);
        assert_eq!(svg.matches(&fill("wasmtime-serve-fresh")).count(), 2 + 1);
        assert!(!svg.contains(&fill("wasmtime-serve-reuse")));
    }
}
