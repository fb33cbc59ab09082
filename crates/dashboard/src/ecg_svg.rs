//! The 12-lead ECG as on paper: 3 rows of 4 columns (I, II, III | aVR,
//! aVL, aVF | V1-V3 | V4-V6), 2.5 s each, and a 10 s lead II rhythm strip,
//! at 25 mm/s and 10 mm/mV on a millimetre grid, with a 1 mV calibration
//! pulse at the start of every row. SVG user units are millimetres, and the
//! `width`/`height` attributes say `mm`, so at 100 % zoom it prints true to
//! scale.

use std::collections::HashSet;
use std::fmt::Write as _;

/// Paper speed.
pub const MM_PER_S: f64 = 25.0;
/// Amplitude scale.
pub const MM_PER_MV: f64 = 10.0;

const LEFT_MM: f64 = 5.0;
/// Room for the calibration pulse before the traces.
const CAL_MM: f64 = 7.0;
const TOP_MM: f64 = 5.0;
const ROW_MM: f64 = 30.0;
const STRIP_S: f64 = 10.0;
const CELL_S: f64 = 2.5;

/// The standard layout: rows of (column -> lead).
pub const LAYOUT: [[&str; 4]; 3] = [
    ["I", "aVR", "V1", "V4"],
    ["II", "aVL", "V2", "V5"],
    ["III", "aVF", "V3", "V6"],
];
/// The rhythm strip's lead.
pub const RHYTHM_LEAD: &str = "II";

/// The samples of one visit, as the renderer needs them.
#[derive(Debug, Clone)]
pub struct Tracing {
    pub fs_hz: u32,
    pub gain_uv_per_lsb: f64,
    /// Lead names, in the order of `samples`.
    pub leads: Vec<String>,
    pub samples: Vec<Vec<i16>>,
}

impl Tracing {
    fn lead(&self, name: &str) -> Option<&[i16]> {
        self.leads
            .iter()
            .position(|l| l == name)
            .map(|i| self.samples[i].as_slice())
    }
}

/// Width and height of the paper, in millimetres.
pub fn paper_mm() -> (f64, f64) {
    (
        LEFT_MM + CAL_MM + STRIP_S * MM_PER_S + 5.0,
        TOP_MM + 4.0 * ROW_MM + 8.0,
    )
}

/// The lead's baseline: its median, so that wander or a DC offset of the
/// device does not push the trace off its row.
fn baseline(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut v = samples.to_vec();
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable(mid);
    f64::from(*m)
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws one lead from `t0_s` for `dur_s` with its left edge at `x0` and
/// its baseline at `y0` (millimetres).
#[allow(clippy::too_many_arguments)]
fn trace(
    out: &mut String,
    tr: &Tracing,
    lead: &str,
    t0_s: f64,
    dur_s: f64,
    x0: f64,
    y0: f64,
    criteria: bool,
    label: &str,
) {
    let class = if criteria { "lead criteria" } else { "lead" };
    let _ = write!(
        out,
        r#"<g class="{class}" data-lead="{l}" data-criteria="{criteria}">"#,
        l = escape(lead)
    );
    if criteria {
        let _ = write!(
            out,
            r##"<rect x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="#fff3c4" fill-opacity="0.55" stroke="#d00000" stroke-width="0.4"/>"##,
            x = x0,
            y = y0 - ROW_MM / 2.0,
            w = dur_s * MM_PER_S,
            h = ROW_MM
        );
    }
    let colour = if criteria { "#c00000" } else { "#000000" };
    let weight = if criteria { "bold" } else { "normal" };
    let _ = write!(
        out,
        r#"<text x="{x:.2}" y="{y:.2}" font-size="3.5" font-family="sans-serif" font-weight="{weight}" fill="{colour}">{t}</text>"#,
        x = x0 + 1.0,
        y = y0 - ROW_MM / 2.0 + 4.0,
        t = escape(label)
    );
    match tr.lead(lead) {
        Some(samples) if !samples.is_empty() && tr.fs_hz > 0 => {
            let fs = f64::from(tr.fs_hz);
            let base = baseline(samples);
            let first = (t0_s * fs).round() as usize;
            let last = (((t0_s + dur_s) * fs).round() as usize).min(samples.len());
            let mut d = String::with_capacity((last.saturating_sub(first)) * 14);
            for (k, &s) in samples[first.min(last)..last].iter().enumerate() {
                let x = x0 + (k as f64 / fs) * MM_PER_S;
                let mv = (f64::from(s) - base) * tr.gain_uv_per_lsb / 1000.0;
                let y = y0 - mv * MM_PER_MV;
                let _ = write!(d, "{}{x:.2},{y:.2}", if k == 0 { "M" } else { " L" });
            }
            let _ = write!(
                out,
                r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="{w}" stroke-linejoin="round"/>"#,
                w = if criteria { 0.4 } else { 0.3 }
            );
        }
        _ => {
            let _ = write!(
                out,
                r##"<text x="{x:.2}" y="{y:.2}" font-size="3" font-family="sans-serif" fill="#666">not recorded</text>"##,
                x = x0 + 8.0,
                y = y0
            );
        }
    }
    out.push_str("</g>");
}

/// Renders the standard 12-lead layout; leads in `criteria` (the leads that
/// meet the ST-elevation criteria) are drawn and framed in red. `caption`
/// goes under the paper.
pub fn render(tr: &Tracing, criteria: &HashSet<String>, caption: &str) -> String {
    let (w, h) = paper_mm();
    let mut out = String::with_capacity(400_000);
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="ecg12" width="{w}mm" height="{h}mm" viewBox="0 0 {w} {h}" data-mm-per-s="{MM_PER_S}" data-mm-per-mv="{MM_PER_MV}">"##
    );
    render_paper(&mut out, tr, criteria, caption);
    out.push_str("</svg>");
    out
}

/// The paper of [`render`] without the enclosing `<svg>`: elements in
/// millimetre user units from (0, 0) to [`paper_mm`], for a page that
/// places it (with a `translate`) among other content at true scale.
pub fn render_paper(out: &mut String, tr: &Tracing, criteria: &HashSet<String>, caption: &str) {
    let (w, h) = paper_mm();
    // The millimetre grid: thin lines every mm, heavier every 5 mm.
    out.push_str(
        r##"<defs><pattern id="mm" width="1" height="1" patternUnits="userSpaceOnUse"><path d="M1,0 L0,0 0,1" fill="none" stroke="#f6c8c8" stroke-width="0.08"/></pattern><pattern id="mm5" width="5" height="5" patternUnits="userSpaceOnUse"><rect width="5" height="5" fill="url(#mm)"/><path d="M5,0 L0,0 0,5" fill="none" stroke="#e58f8f" stroke-width="0.2"/></pattern></defs>"##,
    );
    let _ = write!(
        out,
        r##"<rect class="grid" x="0" y="0" width="{w}" height="{h}" fill="#fffafa"/><rect x="0" y="0" width="{w}" height="{h}" fill="url(#mm5)"/>"##
    );
    let x_trace = LEFT_MM + CAL_MM;
    #[allow(clippy::needless_range_loop)] // row is also the y position
    for row in 0..4 {
        let y0 = TOP_MM + ROW_MM * (row as f64 + 0.5);
        // 1 mV calibration pulse, 0.2 s wide.
        let cx = LEFT_MM;
        let _ = write!(
            out,
            r##"<path class="calibration" d="M{cx:.2},{y0:.2} L{a:.2},{y0:.2} L{a:.2},{top:.2} L{b:.2},{top:.2} L{b:.2},{y0:.2} L{c:.2},{y0:.2}" fill="none" stroke="#000" stroke-width="0.3"/>"##,
            a = cx + 1.0,
            b = cx + 1.0 + 0.2 * MM_PER_S,
            c = cx + CAL_MM,
            top = y0 - MM_PER_MV
        );
        if row < 3 {
            for (col, lead) in LAYOUT[row].iter().enumerate() {
                let t0 = CELL_S * col as f64;
                let x0 = x_trace + t0 * MM_PER_S;
                if col > 0 {
                    let _ = write!(
                        out,
                        r##"<path d="M{x0:.2},{a:.2} L{x0:.2},{b:.2}" stroke="#000" stroke-width="0.3"/>"##,
                        a = y0 - 3.0,
                        b = y0 + 3.0
                    );
                }
                trace(
                    out,
                    tr,
                    lead,
                    t0,
                    CELL_S,
                    x0,
                    y0,
                    criteria.contains(*lead),
                    lead,
                );
            }
        } else {
            trace(
                out,
                tr,
                RHYTHM_LEAD,
                0.0,
                STRIP_S,
                x_trace,
                y0,
                false,
                "II (rhythm)",
            );
        }
    }
    let _ = write!(
        out,
        r##"<text x="{LEFT_MM}" y="{y:.2}" font-size="3" font-family="sans-serif" fill="#333">25 mm/s  10 mm/mV  {fs} Hz  {c}</text>"##,
        y = h - 3.0,
        fs = tr.fs_hz,
        c = escape(caption)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracing() -> Tracing {
        let names = [
            "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
        ];
        Tracing {
            fs_hz: 500,
            gain_uv_per_lsb: 5.0,
            leads: names.iter().map(|s| s.to_string()).collect(),
            // 1 mV (200 counts at 5 uV) steps every second, 10 s.
            samples: (0..12)
                .map(|_| {
                    (0..5000)
                        .map(|i| if (i / 500) % 2 == 1 { 200 } else { 0 })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn standard_layout_scale_and_highlight() {
        let tr = tracing();
        let crit: HashSet<String> = ["V2".to_string(), "V3".to_string()].into();
        let svg = render(&tr, &crit, "test");
        assert_eq!(svg.matches(r#"<g class="lead"#).count(), 13);
        assert_eq!(svg.matches(r#"data-criteria="true""#).count(), 2);
        assert!(svg.contains(r#"data-lead="V2" data-criteria="true""#));
        assert!(svg.contains(r#"data-lead="I" data-criteria="false""#));
        // The rhythm strip is 10 s = 250 mm wide: its last point is at
        // x_trace + 249.95 mm.
        let strip = svg.split("II (rhythm)").nth(1).unwrap();
        let path = strip
            .split("d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let last = path.rsplit(" L").next().unwrap();
        let (x, _) = last.split_once(',').unwrap();
        let x: f64 = x.parse().unwrap();
        assert!((x - (LEFT_MM + CAL_MM + 249.95)).abs() < 0.01, "{x}");
        // The two levels of the 1 mV square wave are 10 mm apart.
        let ys: Vec<f64> = path
            .split(['M', 'L'])
            .filter_map(|p| p.trim().split_once(','))
            .map(|(_, y)| y.parse().unwrap())
            .collect();
        let lo = ys.iter().cloned().fold(f64::MAX, f64::min);
        let hi = ys.iter().cloned().fold(f64::MIN, f64::max);
        assert!((hi - lo - 10.0).abs() < 1e-6, "{lo} {hi}");
    }

    #[test]
    fn missing_lead_is_said_not_drawn() {
        let mut tr = tracing();
        tr.leads.truncate(2);
        tr.samples.truncate(2);
        let svg = render(&tr, &HashSet::new(), "");
        assert!(svg.contains("not recorded"));
    }
}
