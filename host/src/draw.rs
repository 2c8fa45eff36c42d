//! Draws a host as SVG: one box per NUMA node (grouped by socket), cores inside, one square per
//! hardware thread coloured by what it may be used for. People look at topologies rather than
//! read them.

use std::fmt::Write;

use crate::formats::HostJson;

const THREAD: u32 = 18;
const GAP: u32 = 4;
const CORES_PER_ROW: u32 = 8;

/// Fill colour of a thread: pinned, pinnable and shared, pinnable only, shared only, reserved.
fn colour(pinned: bool, pinnable: bool, shared: bool) -> (&'static str, &'static str) {
    match (pinned, pinnable, shared) {
        (true, _, _) => ("#d9534f", "pinned"),
        (false, true, true) => ("#5bc0a8", "shared and pinnable"),
        (false, true, false) => ("#5cb85c", "pinnable"),
        (false, false, true) => ("#5b9bd5", "shared"),
        (false, false, false) => ("#bbbbbb", "reserved for the host"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The SVG document for `host`.
pub fn svg(host: &HostJson, title: &str) -> String {
    let mut body = String::new();
    let mut y = 40u32;
    let mut width = 400u32;
    // Each socket once, in the order it first appears (nodes may list sockets interleaved).
    let mut sockets: Vec<Option<u32>> = Vec::new();
    for c in &host.cells {
        if !sockets.contains(&c.socket) {
            sockets.push(c.socket);
        }
    }
    // A thread's square is wide enough for its CPU number (8 px text, about 5 px a digit).
    let digits = host.cells.iter().flat_map(|c| c.siblings.iter().flatten()).max().map_or(1, |m| m.to_string().len() as u32);
    let thread_w = THREAD.max(digits * 5 + 4);
    for socket in sockets {
        let label = socket.map_or("socket unknown".to_string(), |s| format!("socket {s}"));
        let _ = writeln!(body, r#"<text x="10" y="{}" font-size="14" font-weight="bold">{}</text>"#, y, escape(&label));
        y += 10;
        for cell in host.cells.iter().filter(|c| c.socket == socket) {
            let widest = cell.siblings.iter().map(|g| g.len() as u32).max().unwrap_or(1);
            let core_w = widest * (thread_w + 2) + 6;
            let rows = (cell.siblings.len() as u32).div_ceil(CORES_PER_ROW).max(1);
            let box_w = CORES_PER_ROW.min(cell.siblings.len().max(1) as u32) * (core_w + GAP) + 20;
            let box_h = rows * (THREAD + 14) + 44;
            width = width.max(box_w + 40);
            let memory = format!("node {}: {} MiB, {} MiB used", cell.id, cell.memory, cell.memory_usage);
            // The label stays inside its box (12 px text, under 7 px a character).
            let box_w = box_w.max(memory.len() as u32 * 7 + 20);
            let _ = writeln!(body, r##"<rect x="20" y="{y}" width="{box_w}" height="{box_h}" rx="8" fill="#f7f7f7" stroke="#555"/>"##);
            let _ = writeln!(body, r#"<text x="30" y="{}" font-size="12">{}</text>"#, y + 16, escape(&memory));
            for (k, group) in cell.siblings.iter().enumerate() {
                let (row, col) = (k as u32 / CORES_PER_ROW, k as u32 % CORES_PER_ROW);
                let cx = 30 + col * (core_w + GAP);
                let cy = y + 26 + row * (THREAD + 14);
                let _ = writeln!(
                    body,
                    r##"<rect x="{cx}" y="{cy}" width="{core_w}" height="{}" rx="4" fill="none" stroke="#999"/>"##,
                    THREAD + 8
                );
                for (t, cpu) in group.iter().enumerate() {
                    let (fill, what) = colour(cell.pinned_cpus.contains(cpu), cell.pcpuset.contains(cpu), cell.cpuset.contains(cpu));
                    let tx = cx + 4 + t as u32 * (thread_w + 2);
                    let _ = writeln!(
                        body,
                        r#"<rect x="{tx}" y="{}" width="{thread_w}" height="{THREAD}" fill="{fill}"><title>CPU {cpu}: {what}</title></rect><text x="{}" y="{}" font-size="8" text-anchor="middle">{cpu}</text>"#,
                        cy + 4,
                        tx + thread_w / 2,
                        cy + 4 + THREAD / 2 + 3
                    );
                }
            }
            y += box_h + 12;
        }
        y += 10;
    }
    let mut legend = String::new();
    for (i, (p, pi, s)) in [(true, true, false), (false, true, true), (false, true, false), (false, false, true), (false, false, false)]
        .into_iter()
        .enumerate()
    {
        let (fill, what) = colour(p, pi, s);
        let x = 20 + i as u32 * 150;
        let _ = writeln!(
            legend,
            r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{fill}"/><text x="{}" y="{}" font-size="11">{what}</text>"#,
            x + 16,
            y + 10
        );
    }
    width = width.max(20 + 5 * 150).max(escape(title).len() as u32 * 9 + 20);
    let height = y + 30;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\">\n<text x=\"10\" y=\"22\" font-size=\"16\">{}</text>\n{body}{legend}</svg>\n",
        escape(title)
    )
}

/// Utilisation over time, one line per run (CPU solid, memory dashed): `series` is each run's
/// label and samples (time, CPU share, memory share).
pub fn utilisation_svg(series: &[(String, &[crate::simulate::Sample])], title: &str) -> String {
    const W: f64 = 720.0;
    const H: f64 = 360.0;
    const LEFT: f64 = 56.0;
    const TOP: f64 = 40.0;
    const RIGHT: f64 = 200.0;
    const BOTTOM: f64 = 40.0;
    const COLOURS: &[&str] = &["#d9534f", "#337ab7", "#5cb85c", "#f0ad4e", "#5bc0de", "#777777"];
    let end = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.t)).fold(0.0f64, f64::max).max(1.0);
    let x = |t: f64| LEFT + t / end * W;
    let y = |share: f64| TOP + (1.0 - share.clamp(0.0, 1.0)) * H;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">"#,
        LEFT + W + RIGHT,
        TOP + H + BOTTOM
    );
    let _ = write!(svg, r#"<text x="{LEFT}" y="20" font-size="14">Utilisation over time: {}</text>"#, escape(title));
    for tick in 0..=4 {
        let share = tick as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#dddddd"/><text x="{2}" y="{3}" text-anchor="end">{4:.0}%</text>"##,
            y(share),
            LEFT + W,
            LEFT - 6.0,
            y(share) + 4.0,
            share * 100.0
        );
    }
    let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="middle">time (s, to {end:.0})</text>"#, LEFT + W / 2.0, TOP + H + 28.0);
    for (k, (label, samples)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        for (what, dash, share) in [("CPU", "", 0usize), ("memory", r#" stroke-dasharray="6 4""#, 1)] {
            let points: Vec<String> =
                samples.iter().map(|p| format!("{:.1},{:.1}", x(p.t), y(if share == 0 { p.cpu } else { p.memory }))).collect();
            let _ = write!(svg, r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#, points.join(" "));
            let row = TOP + 16.0 + (k * 2 + share) as f64 * 18.0;
            let _ = write!(
                svg,
                r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{3}" y="{4}">{5} {what}</text>"#,
                LEFT + W + 12.0,
                row,
                LEFT + W + 36.0,
                LEFT + W + 42.0,
                row + 4.0,
                escape(label)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}
