//! Reading a Prometheus text exposition (the admin listener's `/metrics`).

/// A Prometheus text exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the series `name` with exactly these labels, if present.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        wanted.sort();
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (series_name, rest) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.strip_suffix('}')?),
                    None => (series, ""),
                };
                let mut have: Vec<String> = if rest.is_empty() {
                    Vec::new()
                } else {
                    rest.split("\",")
                        .map(|p| p.trim_end_matches('"').to_string() + "\"")
                        .collect()
                };
                have.sort();
                (series_name == name && have == wanted).then(|| value.parse().ok())?
            })
    }

    /// The sum of every series named `name`.
    pub fn total(&self, name: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// As `value`, 0 when the series is absent.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}
