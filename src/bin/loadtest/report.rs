//! Turns measurements into the report: a markdown table per run (medians of the repeats, with
//! the edgewarden / HAProxy ratio measured in the same run) and an SVG bar chart of requests/s and
//! p99 per scenario, edgewarden beside HAProxy.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::oha::Measured;
use crate::run::Sample;

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
    pub oha: String,
}

fn median(mut values: Vec<f64>) -> f64 {
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

pub fn row(scenario: &str, what: &str, runs: &[(&'static str, Vec<Sample>)]) -> Row {
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
        scenario: scenario.to_string(),
        what: what.to_string(),
        cells,
        attack: None,
    }
}

pub fn attack_row(target: &'static str, alone: &Sample, attacked: &Sample) -> Row {
    let v = &attacked.measured[0];
    Row {
        scenario: "attack_mix".to_string(),
        what: "90 % bad tokens + 10 % valid at a fixed offered rate".to_string(),
        cells: vec![Cell {
            target,
            rps: attacked.measured.iter().map(|m| m.rps).sum(),
            p50_ms: v.p50_ms,
            p99_ms: v.p99_ms,
            p999_ms: v.p999_ms,
            cpu_us: attacked.cpu_us_per_request(),
            peak_rss_mib: attacked.peak_rss_kib as f64 / 1024.0,
            accepted: v.count(200),
            origin_hits: attacked.origin_hits,
        }],
        attack: Some(Attack {
            valid_ok: v.count(200),
            valid_sent: v.requests,
            p99_alone_ms: alone.measured[0].p99_ms,
            p99_attacked_ms: v.p99_ms,
            bad_rps: attacked.measured.iter().skip(1).map(|m| m.rps).sum(),
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

pub fn markdown(
    rows: &[Row],
    versions: &Versions,
    duration: Duration,
    repeats: usize,
    connections: usize,
    attack_rate: u32,
) -> String {
    let mut out = String::new();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Machine: {}. {}. edgewarden {} (1 worker thread){}; load generator: {}. Gateways pinned to \
         CPU 0, generator and origin to CPU 1 (when there are two). {} s per run, {} connections, \
         median of {} runs; attack mix offered at {} req/s.\n",
        machine(),
        date.trim(),
        env!("CARGO_PKG_VERSION"),
        versions
            .haproxy
            .as_ref()
            .map(|v| format!(", peer: {v} (nbthread 1)"))
            .unwrap_or_default(),
        versions.oha,
        duration.as_secs_f64(),
        connections,
        repeats,
        attack_rate,
    );
    let _ = writeln!(
        out,
        "| scenario | target | req/s | ratio ew/haproxy | p50 ms | p99 ms | p99.9 ms | CPU µs/req | peak RSS MiB | accepted | origin hits |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let peer = row
            .cells
            .iter()
            .find(|c| c.target == "haproxy")
            .map(|c| c.rps);
        for cell in &row.cells {
            let ratio = match (cell.target, peer) {
                ("edgewarden", Some(p)) if p > 0.0 => format!("{:.2}", cell.rps / p),
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
            "\n| attack mix | valid answered 200 | valid p99 alone | valid p99 under attack | ratio | bad req/s absorbed |"
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

pub fn target_summary(url: &str, m: &Measured) -> String {
    format!(
        "{url}\n  {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms\n  statuses {:?}, errors {}",
        m.rps, m.p50_ms, m.p99_ms, m.p999_ms, m.statuses, m.errors
    )
}

type Metric = fn(&Cell) -> f64;

/// Two panels (requests/s, p99) of grouped bars, one group per scenario.
pub fn chart(rows: &[Row], path: &Path) -> Result<(), String> {
    let groups: Vec<(&str, Vec<&Cell>)> = rows
        .iter()
        .filter(|r| r.attack.is_none())
        .map(|r| (r.scenario.as_str(), r.cells.iter().collect()))
        .collect();
    let (width, panel_height, left, top) = (960.0, 300.0, 70.0, 30.0);
    let height = 2.0 * panel_height + 3.0 * top + 40.0;
    let colour = |target: &str| {
        if target == "edgewarden" {
            "#2b7bb9"
        } else {
            "#d9822b"
        }
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let panels: [(&str, Metric); 2] = [
        ("requests/s", |c: &Cell| c.rps),
        ("p99 latency (ms)", |c: &Cell| c.p99_ms),
    ];
    for (p, (title, value)) in panels.iter().enumerate() {
        let y0 = top + p as f64 * (panel_height + top);
        let max = groups
            .iter()
            .flat_map(|(_, cells)| cells.iter().map(|c| value(c)))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(f64::MIN_POSITIVE);
        let plot_w = width - left - 20.0;
        let group_w = plot_w / groups.len().max(1) as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{left}\" y=\"{}\" font-size=\"13\">{title}</text>\n\
             <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
            y0 - 8.0,
            y0 + panel_height,
            width - 20.0,
            y0 + panel_height
        );
        for tick in 0..=4 {
            let v = max * tick as f64 / 4.0;
            let y = y0 + panel_height - panel_height * tick as f64 / 4.0;
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{}</text>\
                 <line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>",
                left - 4.0,
                if max >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                },
                width - 20.0
            );
        }
        for (g, (name, cells)) in groups.iter().enumerate() {
            let bar_w = (group_w * 0.8) / cells.len().max(1) as f64;
            for (i, cell) in cells.iter().enumerate() {
                let v = value(cell);
                let h = if v.is_finite() {
                    panel_height * v / max
                } else {
                    0.0
                };
                let x = left + g as f64 * group_w + group_w * 0.1 + i as f64 * bar_w;
                let _ = writeln!(
                    svg,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {}: {v:.3}</title></rect>",
                    y0 + panel_height - h,
                    bar_w - 2.0,
                    colour(cell.target),
                    name,
                    cell.target
                );
            }
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{name}</text>",
                left + g as f64 * group_w + group_w / 2.0,
                y0 + panel_height + 14.0
            );
        }
    }
    let legend_y = height - 14.0;
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{legend_y}\">edgewarden</text>\
         <rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{legend_y}\">HAProxy</text>\n</svg>",
        legend_y - 10.0,
        colour("edgewarden"),
        left + 16.0,
        left + 110.0,
        legend_y - 10.0,
        colour("haproxy"),
        left + 126.0
    );
    std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))
}
